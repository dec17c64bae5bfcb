// The directory store of rooms' snapshots (include/stateroom/state_store.hpp).
#include "stateroom/state_store.hpp"

#include "../common/little_endian.hpp"
#include "../common/text.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>

namespace stateroom {

namespace {

namespace fs = std::filesystem;

// A file: "STATEROOM-SNAPSHOT\n" | u32 format | u32 room id length | room id | u64 snapshot size |
// u64 stored size | the snapshot, zstd-compressed | u32 CRC-32 of everything before it.
// Little-endian.
constexpr std::string_view magic = "STATEROOM-SNAPSHOT\n";
constexpr std::uint32_t format = 1;
constexpr std::uint64_t max_snapshot = std::uint64_t{8} << 30;  // what a file may claim to hold
constexpr int zstd_level = 3;

constexpr auto put = ::stateroom::detail::put_le<std::string>;
using Reader = ::stateroom::detail::LittleEndianReader<char>;

std::uint32_t checksum(std::string_view bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (!bytes.empty()) {
    const auto n = static_cast<uInt>(std::min<std::size_t>(bytes.size(), 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data()), n);
    bytes.remove_prefix(n);
  }
  return static_cast<std::uint32_t>(crc);
}

/// The bytes of a file for `room_id` holding `snapshot`.
std::string encode_file(std::string_view room_id, std::span<const std::byte> snapshot) {
  std::string out(magic);
  put(out, format, 4);
  put(out, room_id.size(), 4);
  out += room_id;
  put(out, snapshot.size(), 8);
  const std::size_t size_at = out.size();
  put(out, 0, 8);
  const std::size_t bound = ZSTD_compressBound(snapshot.size());
  const std::size_t start = out.size();
  out.resize(start + bound);
  const std::size_t stored = ZSTD_compress(out.data() + start, bound, snapshot.data(), snapshot.size(), zstd_level);
  if (ZSTD_isError(stored)) throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(stored));
  out.resize(start + stored);
  for (int i = 0; i < 8; ++i) out[size_at + i] = static_cast<char>(static_cast<std::uint64_t>(stored) >> (8 * i));
  put(out, checksum(out), 4);
  return out;
}

/// The snapshot in file `bytes` for `room_id`, or why it is not one.
std::vector<std::byte> decode_file(std::string_view bytes, std::string_view room_id, std::string& why) {
  if (bytes.size() < magic.size() + 4 || !bytes.starts_with(magic)) {
    why = "not a snapshot file";
    return {};
  }
  const auto stored_crc = static_cast<std::uint32_t>(Reader{bytes.substr(bytes.size() - 4)}.get(4));
  if (checksum(bytes.substr(0, bytes.size() - 4)) != stored_crc) {
    why = "its checksum does not match (a truncated or damaged file)";
    return {};
  }
  Reader in{bytes.substr(magic.size(), bytes.size() - magic.size() - 4)};
  const auto version = in.get(4);
  if (in.ok && version != format) {
    why = fmt::format("format {}, not {}", version, format);
    return {};
  }
  const auto id_size = in.get(4);
  if (!in.ok || in.in.size() < id_size) {
    why = "truncated";
    return {};
  }
  if (std::string_view(in.in.data(), id_size) != room_id) {
    why = "it is another room's";
    return {};
  }
  in.in = in.in.subspan(id_size);
  const auto size = in.get(8);
  const auto stored = in.get(8);
  if (!in.ok || stored != in.in.size() || size > max_snapshot) {
    why = "its sizes do not match";
    return {};
  }
  std::vector<std::byte> out(size);
  const std::size_t got = ZSTD_decompress(out.data(), out.size(), in.in.data(), in.in.size());
  if (ZSTD_isError(got) || got != size) {
    why = ZSTD_isError(got) ? std::string("zstd: ") + ZSTD_getErrorName(got) : "it decompresses to another size";
    return {};
  }
  return out;
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, fsync of the
/// directory. The error, when it fails (the old file is then as it was).
std::optional<std::string> write_atomically(const fs::path& path, std::string_view bytes) {
  const fs::path temp = fs::path(path) += ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fmt::format("cannot create {}: {}", temp.string(), std::strerror(errno));
  std::string_view rest = bytes;
  while (!rest.empty()) {
    const ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string error = fmt::format("cannot write {}: {}", temp.string(), std::strerror(errno));
      ::close(fd);
      ::unlink(temp.c_str());
      return error;
    }
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  if (::fsync(fd) != 0) {
    const std::string error = fmt::format("cannot sync {}: {}", temp.string(), std::strerror(errno));
    ::close(fd);
    ::unlink(temp.c_str());
    return error;
  }
  ::close(fd);
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string error = fmt::format("cannot rename {}: {}", temp.string(), std::strerror(errno));
    ::unlink(temp.c_str());
    return error;
  }
  const int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return std::nullopt;
}

/// One file per room in a directory; a thread writes them.
class DirectoryStore final : public StateStore {
 public:
  explicit DirectoryStore(fs::path dir) : dir_(std::move(dir)) {
    writer_ = std::thread([this] { write_loop(); });
  }
  ~DirectoryStore() override {
    flush();
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      // Saves that never reached the disk are lost; removals that did not happen leave an old
      // file, which the next start restores.
      std::size_t lost = 0, stale = 0;
      std::string lost_rooms, stale_rooms;
      for (const auto& [room_id, entry] : pending_) {
        auto&& [count, rooms] = entry.snapshot ? std::tie(lost, lost_rooms) : std::tie(stale, stale_rooms);
        ++count;
        if (rooms.size() < 200) rooms += (rooms.empty() ? "'" : ", '") + room_id + "'";
        else if (!rooms.ends_with("...")) rooms += ", ...";
      }
      if (lost)
        spdlog::error("state directory: the state of {} room(s) could not be written to {} and is lost: {}", lost,
                      dir_.string(), lost_rooms);
      if (stale)
        spdlog::error("state directory: the old snapshots of {} room(s) could not be removed from {} and will be "
                      "restored at the next start: {}",
                      stale, dir_.string(), stale_rooms);
    }
    wake_.notify_all();
    writer_.join();
  }

  std::optional<std::vector<std::byte>> load(std::string_view room_id) override {
    {
      std::lock_guard lock(mutex_);
      if (auto it = pending_.find(room_id); it != pending_.end()) {
        if (!it->second.snapshot) return std::nullopt;  // removed
        return *it->second.snapshot;
      }
    }
    const fs::path path = dir_ / state_file_name(room_id);
    std::string bytes;
    {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        if (errno != ENOENT)
          spdlog::warn("room '{}': its snapshot {} cannot be read: {}; the room starts afresh", room_id,
                       path.string(), std::strerror(errno));
        return std::nullopt;
      }
      char buffer[64 * 1024];
      for (;;) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          spdlog::warn("room '{}': its snapshot {} cannot be read: {}; the room starts afresh", room_id,
                       path.string(), std::strerror(errno));
          ::close(fd);
          return std::nullopt;
        }
        if (n == 0) break;
        bytes.append(buffer, static_cast<std::size_t>(n));
      }
      ::close(fd);
    }
    std::string why;
    auto snapshot = decode_file(bytes, room_id, why);
    if (!why.empty()) {
      // Set aside, so the warning is given once and the file kept for a look.
      std::error_code ec;
      fs::path aside = path;
      aside += ".unreadable";
      fs::rename(path, aside, ec);
      spdlog::warn("room '{}': its snapshot {} is refused ({}); the room starts afresh{}", room_id, path.string(),
                   why, ec ? "" : fmt::format(" (the file is now {})", aside.string()));
      return std::nullopt;
    }
    return snapshot;
  }

  void save(std::string_view room_id, std::vector<std::byte> snapshot) override {
    enqueue(room_id, std::make_shared<const std::vector<std::byte>>(std::move(snapshot)));
  }

  void remove(std::string_view room_id) override { enqueue(room_id, nullptr); }

  void flush() override {
    std::unique_lock lock(mutex_);
    // What failed to be written before is tried again (the disk may have room now).
    const std::set<std::string_view> queued(order_.begin(), order_.end());
    bool again = false;
    for (const auto& [room_id, entry] : pending_) {
      if (queued.contains(room_id)) continue;
      order_.push_back(room_id);
      ++queued_;
      again = true;
    }
    if (again) wake_.notify_one();
    const std::uint64_t target = queued_;
    flushed_.wait(lock, [&] { return written_ >= target || stopping_; });
  }

 private:
  using Snapshot = std::shared_ptr<const std::vector<std::byte>>;  ///< null: remove the file
  struct Pending {
    Snapshot snapshot;
    std::uint64_t sequence = 0;  ///< which save it is
  };

  void enqueue(std::string_view room_id, Snapshot snapshot) {
    {
      std::lock_guard lock(mutex_);
      auto [it, fresh] = pending_.try_emplace(std::string(room_id));
      it->second = Pending{std::move(snapshot), ++queued_};
      order_.push_back(it->first);
    }
    wake_.notify_one();
  }

  void write_loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || !order_.empty(); });
      if (order_.empty()) return;  // stopping, with nothing left
      std::string room_id = std::move(order_.front());
      order_.pop_front();
      auto it = pending_.find(room_id);
      if (it == pending_.end()) {  // written already, by an earlier turn for the same room
        ++written_;
        flushed_.notify_all();
        continue;
      }
      const Pending entry = it->second;  // load() still finds it until the file holds it
      lock.unlock();
      const std::optional<std::string> error = write(room_id, entry.snapshot);
      lock.lock();
      it = pending_.find(room_id);
      // Done with it unless it was saved again meanwhile (a later turn writes that) or failed.
      if (!error && it != pending_.end() && it->second.sequence == entry.sequence) pending_.erase(it);
      if (error) report(*error);
      ++written_;
      flushed_.notify_all();
    }
  }

  std::optional<std::string> write(const std::string& room_id, const Snapshot& entry) {
    const fs::path path = dir_ / state_file_name(room_id);
    if (!entry) {
      if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        return fmt::format("cannot remove {}: {}", path.string(), std::strerror(errno));
      return std::nullopt;
    }
    try {
      return write_atomically(path, encode_file(room_id, *entry));
    } catch (const std::exception& e) {
      return fmt::format("cannot write {}: {}", path.string(), e.what());
    }
  }

  /// A failed write stays pending in memory (load() still finds it); the log says so at most once
  /// every 10 s.
  void report(const std::string& error) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_report_ < std::chrono::seconds(10)) {
      ++unreported_;
      return;
    }
    spdlog::error("state directory: {}{}; the room's state stays in memory", error,
                  unreported_ ? fmt::format(" ({} more failures)", unreported_) : "");
    unreported_ = 0;
    last_report_ = now;
  }

  const fs::path dir_;
  std::mutex mutex_;
  std::condition_variable wake_, flushed_;
  std::map<std::string, Pending, std::less<>> pending_;  ///< saved, not yet in the file
  std::deque<std::string> order_;                      ///< rooms to write, in order (repeats allowed)
  std::uint64_t queued_ = 0, written_ = 0;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point last_report_{};
  std::uint64_t unreported_ = 0;
  std::thread writer_;
};

/// make_memory_store's: the snapshots in a map.
class MemoryStore final : public StateStore {
 public:
  std::optional<std::vector<std::byte>> load(std::string_view room_id) override {
    std::lock_guard lock(mutex_);
    auto it = snapshots_.find(room_id);
    if (it == snapshots_.end()) return std::nullopt;
    return it->second;
  }
  void save(std::string_view room_id, std::vector<std::byte> snapshot) override {
    std::lock_guard lock(mutex_);
    auto it = snapshots_.find(room_id);
    if (it == snapshots_.end()) {
      snapshots_.emplace(std::string(room_id), std::move(snapshot));
    } else {
      it->second = std::move(snapshot);
    }
  }
  void remove(std::string_view room_id) override {
    std::lock_guard lock(mutex_);
    if (auto it = snapshots_.find(room_id); it != snapshots_.end()) snapshots_.erase(it);
  }
  void flush() override {}

 private:
  std::mutex mutex_;
  std::map<std::string, std::vector<std::byte>, std::less<>> snapshots_;
};

}  // namespace

std::shared_ptr<StateStore> make_memory_store() {
  return std::make_shared<MemoryStore>();
}

std::string state_file_name(std::string_view room_id) {
  std::string name = "r-";
  for (const char c : room_id) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '-' || u == '_') {
      name.push_back(c);
    } else {
      name += fmt::format("%{:02X}", u);
    }
    if (name.size() > 200) return "h-" + detail::sha256_hex(room_id) + ".snapshot";
  }
  return name + ".snapshot";
}

std::shared_ptr<StateStore> make_directory_store(const std::filesystem::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error(fmt::format("cannot make the state directory {}: {}", dir.string(), ec.message()));
  if (!fs::is_directory(dir, ec))
    throw std::runtime_error(fmt::format("the state directory {} is not a directory", dir.string()));
  if (::access(dir.c_str(), R_OK | X_OK) != 0)
    throw std::runtime_error(fmt::format("cannot read the state directory {}: {}", dir.string(), std::strerror(errno)));
  if (::access(dir.c_str(), W_OK) != 0)
    spdlog::error("the state directory {} cannot be written ({}): rooms' snapshots will stay in memory only",
                  dir.string(), std::strerror(errno));
  return std::make_shared<DirectoryStore>(fs::absolute(dir));
}

}  // namespace stateroom
