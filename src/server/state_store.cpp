// The directory store of rooms' snapshots (include/stateroom/state_store.hpp).
#include "stateroom/state_store.hpp"

#include "../common/little_endian.hpp"
#include "../common/text.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
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
#include <memory>
#include <mutex>
#include <optional>
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
/// The writer thread's niceness (see write_loop).
constexpr int writer_niceness = 10;

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

/// Why a file's snapshot was not taken: it can never be (set it aside) or not now (keep it).
struct Refused {
  std::string why;
  bool for_now = false;
};

/// The snapshot in file `bytes` for `room_id`; `refused` says why when there is none. Nothing is
/// allocated for a size the file claims before it is checked against `max_snapshot`, and the
/// snapshot grows only as fast as the compressed data really yields it.
std::vector<std::byte> decode_file(std::string_view bytes, std::string_view room_id, std::uint64_t max_snapshot,
                                   Refused& refused) {
  auto damaged = [&](std::string why) {
    refused = {std::move(why), false};
    return std::vector<std::byte>();
  };
  if (bytes.size() < magic.size() + 4 || !bytes.starts_with(magic)) return damaged("not a snapshot file");
  const auto stored_crc = static_cast<std::uint32_t>(Reader{bytes.substr(bytes.size() - 4)}.get(4));
  if (checksum(bytes.substr(0, bytes.size() - 4)) != stored_crc)
    return damaged("its checksum does not match (a truncated or damaged file)");
  Reader in{bytes.substr(magic.size(), bytes.size() - magic.size() - 4)};
  const auto version = in.get(4);
  if (in.ok && version != format) return damaged(fmt::format("format {}, not {}", version, format));
  const auto id_size = in.get(4);
  if (!in.ok || in.in.size() < id_size) return damaged("truncated");
  if (std::string_view(in.in.data(), id_size) != room_id) return damaged("it is another room's");
  in.in = in.in.subspan(id_size);
  const auto size = in.get(8);
  const auto stored = in.get(8);
  if (!in.ok || stored != in.in.size()) return damaged("its sizes do not match");
  if (size > max_snapshot) {
    refused = {fmt::format("it holds {} of state, more than the {} a room may have now", detail::format_bytes(size),
                           detail::format_bytes(max_snapshot)),
               true};
    return {};
  }
  // Decompressed a block at a time into a snapshot that grows with what comes out: a file that
  // claims more than its data yields costs no more than that data.
  std::unique_ptr<ZSTD_DStream, decltype(&ZSTD_freeDStream)> stream(ZSTD_createDStream(), &ZSTD_freeDStream);
  if (!stream) throw std::bad_alloc();
  std::vector<std::byte> out;
  out.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(size, 16 * stored + 4096)));
  ZSTD_inBuffer input{in.in.data(), in.in.size(), 0};
  std::byte spare{};  // where a byte past the size it says would land
  for (;;) {
    const std::size_t have = out.size();
    const std::size_t room = static_cast<std::size_t>(std::min<std::uint64_t>(size - have, 1u << 20));
    if (room > 0) out.resize(have + room);
    ZSTD_outBuffer output{room > 0 ? static_cast<void*>(out.data() + have) : &spare, room > 0 ? room : 1, 0};
    const std::size_t consumed = input.pos;
    const std::size_t left = ZSTD_decompressStream(stream.get(), &output, &input);
    if (room > 0) out.resize(have + output.pos);
    if (ZSTD_isError(left)) return damaged(std::string("zstd: ") + ZSTD_getErrorName(left));
    if (room == 0 && output.pos > 0) return damaged("it decompresses to more than it says");
    if (left == 0) {  // the frame is complete
      if (input.pos != input.size) return damaged("bytes follow its compressed snapshot");
      break;
    }
    if (output.pos == 0 && input.pos == consumed) return damaged("its compressed snapshot is cut short");
  }
  if (out.size() != size) return damaged("it decompresses to another size");
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
  DirectoryStore(fs::path dir, const DirectoryStoreOptions& options) : dir_(std::move(dir)), options_(options) {
    remove_leftovers();
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
        if (entry.op == Op::set_aside) continue;  // its file is still there, and still refused
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

  LoadedState load(std::string_view room_id) override {
    {
      std::lock_guard lock(mutex_);
      if (auto it = pending_.find(room_id); it != pending_.end()) {
        if (!it->second.snapshot) return LoadedState::none();  // removed or set aside
        return LoadedState::found(*it->second.snapshot);
      }
    }
    const fs::path path = dir_ / state_file_name(room_id);
    try {
      return read(room_id, path);
    } catch (const std::bad_alloc&) {
      return LoadedState::unavailable(fmt::format("its snapshot {} cannot be read: out of memory", path.string()));
    }
  }

  void set_aside(std::string_view room_id, std::string_view why) override {
    spdlog::warn("room '{}': its snapshot cannot be used ({}); it is set aside as {}.unreadable and the room starts "
                 "afresh",
                 room_id, why, (dir_ / state_file_name(room_id)).string());
    enqueue(room_id, nullptr, Op::set_aside);
  }

  void save(std::string_view room_id, std::vector<std::byte> snapshot) override {
    enqueue(room_id, std::make_shared<const std::vector<std::byte>>(std::move(snapshot)), Op::write);
  }

  void remove(std::string_view room_id) override { enqueue(room_id, nullptr, Op::remove); }

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
  using Snapshot = std::shared_ptr<const std::vector<std::byte>>;
  /// What happens to a room's file.
  enum class Op : std::uint8_t { write, remove, set_aside };
  struct Pending {
    Snapshot snapshot;  ///< null unless `op` is write
    Op op = Op::write;
    std::uint64_t sequence = 0;  ///< which save it is
    /// A set_aside not done yet when this op replaced it: the file is set aside first, so a
    /// snapshot set aside is never overwritten by the next one.
    bool set_aside_first = false;
  };

  /// Removes the temporary files of writes that a crash cut short (the snapshot before each is
  /// still there, whole).
  void remove_leftovers() {
    std::error_code ec;
    std::size_t removed = 0;
    for (auto it = fs::directory_iterator(dir_, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (!name.ends_with(".snapshot.tmp") || !it->is_regular_file(ec)) continue;
      if (::unlink(it->path().c_str()) == 0) ++removed;
    }
    if (removed) spdlog::info("state directory: removed {} temporary file(s) of writes cut short", removed);
  }

  /// How long reading one file may take before its room is refused for now.
  static constexpr auto read_deadline = std::chrono::seconds(10);

  /// Reads `room_id`'s file at `path` (see load()).
  LoadedState read(std::string_view room_id, const fs::path& path) {
    auto for_now = [&](std::string why) {
      return LoadedState::unavailable(fmt::format("its snapshot {} cannot be read now: {}", path.string(), why));
    };
    // Not through a symbolic link, and without blocking on a FIFO: what is there is checked first.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
      const int error = errno;
      if (error == ENOENT) return LoadedState::none();
      if (error == ELOOP) return set_aside_now(room_id, path, "it is a symbolic link, not a regular file");
      return for_now(std::strerror(error));
    }
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st{};
    if (::fstat(fd, &st) != 0) return for_now(std::strerror(errno));
    if (!S_ISREG(st.st_mode)) return set_aside_now(room_id, path, "it is not a regular file");
    const auto file_size = static_cast<std::uint64_t>(st.st_size);
    if (file_size > max_file_size())
      return for_now(fmt::format("the file's {} is more than a snapshot of at most {} can take",
                                 detail::format_bytes(file_size), detail::format_bytes(options_.max_snapshot_bytes)));
    std::string bytes;
    bytes.resize(static_cast<std::size_t>(file_size));
    std::size_t got = 0;
    const auto deadline = std::chrono::steady_clock::now() + read_deadline;
    while (got < bytes.size()) {
      const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) return for_now(std::strerror(errno));
      if (n == 0) break;  // shorter than it was a moment ago: the checksum tells
      got += static_cast<std::size_t>(n);
      if (std::chrono::steady_clock::now() > deadline)
        return for_now(fmt::format("reading it took more than {} s", read_deadline.count()));
    }
    bytes.resize(got);
    Refused refused;
    auto snapshot = decode_file(bytes, room_id, options_.max_snapshot_bytes, refused);
    if (refused.why.empty()) return LoadedState::found(std::move(snapshot));
    if (refused.for_now) return for_now(refused.why);
    return set_aside_now(room_id, path, refused.why);
  }

  /// The largest file a snapshot within the options makes.
  std::uint64_t max_file_size() const noexcept {
    return options_.max_snapshot_bytes + options_.max_snapshot_bytes / 64 + (1u << 20);
  }

  /// Sets aside a file that can never be read, so that the warning is given once and the file
  /// kept for a look; the room starts afresh.
  LoadedState set_aside_now(std::string_view room_id, const fs::path& path, std::string_view why) {
    std::error_code ec;
    fs::path aside = path;
    aside += ".unreadable";
    fs::rename(path, aside, ec);
    spdlog::warn("room '{}': its snapshot {} is refused ({}); the room starts afresh{}", room_id, path.string(), why,
                 ec ? "" : fmt::format(" (the file is now {})", aside.string()));
    return LoadedState::none();
  }

  void enqueue(std::string_view room_id, Snapshot snapshot, Op op) {
    {
      std::lock_guard lock(mutex_);
      auto [it, fresh] = pending_.try_emplace(std::string(room_id));
      const bool set_aside_first = !fresh && (it->second.op == Op::set_aside || it->second.set_aside_first);
      it->second = Pending{std::move(snapshot), op, ++queued_, set_aside_first && op != Op::set_aside};
      order_.push_back(it->first);
    }
    wake_.notify_one();
  }

  void write_loop() {
    // Below the workers: compressing and writing a large snapshot takes a core for a while, and a
    // room's events come first (the writer still gets its share of a busy machine).
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), writer_niceness);
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
      const std::optional<std::string> error = write(room_id, entry);
      lock.lock();
      it = pending_.find(room_id);
      // Done with it unless it was saved again meanwhile (a later turn writes that) or failed.
      if (!error && it != pending_.end() && it->second.sequence == entry.sequence) pending_.erase(it);
      if (error) report(*error);
      ++written_;
      flushed_.notify_all();
    }
  }

  std::optional<std::string> write(const std::string& room_id, const Pending& entry) {
    const fs::path path = dir_ / state_file_name(room_id);
    if (entry.op == Op::remove) {
      if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        return fmt::format("cannot remove {}: {}", path.string(), std::strerror(errno));
      return std::nullopt;
    }
    if (entry.op == Op::set_aside || entry.set_aside_first) {
      const fs::path aside = fs::path(path) += ".unreadable";
      if (::rename(path.c_str(), aside.c_str()) != 0 && errno != ENOENT)
        return fmt::format("cannot set aside {}: {}", path.string(), std::strerror(errno));
      if (entry.op == Op::set_aside) return std::nullopt;
    }
    try {
      return write_atomically(path, encode_file(room_id, *entry.snapshot));
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
  const DirectoryStoreOptions options_;
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
  LoadedState load(std::string_view room_id) override {
    std::lock_guard lock(mutex_);
    auto it = snapshots_.find(room_id);
    if (it == snapshots_.end()) return LoadedState::none();
    return LoadedState::found(it->second);
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
  void set_aside(std::string_view room_id, std::string_view why) override {
    spdlog::warn("room '{}': its state cannot be used ({}); it is dropped and the room starts afresh", room_id, why);
    remove(room_id);
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

std::shared_ptr<StateStore> make_directory_store(const std::filesystem::path& dir,
                                                 const DirectoryStoreOptions& options) {
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
  return std::make_shared<DirectoryStore>(fs::absolute(dir), options);
}

}  // namespace stateroom
