// The directory store of rooms' snapshots (include/stateroom/state_store.hpp).
#include "stateroom/state_store.hpp"

#include "stateroom/memory_budget.hpp"

#include "../common/little_endian.hpp"
#include "../common/text.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>
#include <zstd_errors.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
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
#include <unordered_map>
#include <utility>
#include <vector>

namespace stateroom {

namespace {

namespace fs = std::filesystem;

// A file: "STATEROOM-SNAPSHOT\n" | u32 format (3) | u32 room id length | room id | u64 snapshot
// size | u32 chunks | each chunk's u32 size, u32 stored size and u64 XXH3-64 of its bytes | u32
// CRC-32 of everything before it | each chunk as a zstd frame with its size and content checksum
// (XXH64, which zstd checks as it decompresses), one after the other. Little-endian. The chunks are
// cut by content (content_chunks), so that a snapshot that changed in a few places shares most of
// its chunks with the room's last file, even where bytes were inserted before them: those are
// copied from that file as they are stored, not compressed again. Still read: format 2, ... | u64
// snapshot size | u32 CRC-32 of everything before it | the snapshot as one zstd frame; and format
// 1, ... | u64 snapshot size | u64 stored size | the zstd frame | u32 CRC-32 of everything before
// it (a checksum of the whole file cost more than compressing it).
constexpr std::string_view magic = "STATEROOM-SNAPSHOT\n";
constexpr std::uint32_t format = 3;
/// Fast: a snapshot of incompressible memory goes through at gigabytes a second, and zeros and
/// repeats still shrink.
constexpr int zstd_level = 1;
/// A chunk's size: at least min_chunk (but the last), at most max_chunk, about min_chunk plus 64
/// KiB on average. The bytes of the first min_chunk are not hashed: the cutting costs a fifth of
/// a byte-at-a-time hash.
constexpr std::size_t min_chunk = 256 * 1024;
constexpr std::size_t max_chunk = 1024 * 1024;
/// Bytes of a chunk's entry in the table.
constexpr std::size_t chunk_entry = 16;

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

/// Writes all of `bytes` to `fd`; errno's text when it cannot.
std::optional<std::string> write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::string(n < 0 ? std::strerror(errno) : "nothing written");
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return std::nullopt;
}

/// A "gear" hash's table (FastCDC): a fixed random number for each byte value.
constexpr std::array<std::uint64_t, 256> gear = [] {
  std::array<std::uint64_t, 256> table{};
  std::uint64_t x = 0x5354415445524f4fULL;  // splitmix64
  for (auto& v : table) {
    x += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    v = z ^ (z >> 31);
  }
  return table;
}();

/// Where `bytes` is cut into chunks, by content: after min_chunk bytes of a chunk, a cut follows
/// the first byte where the gear hash of the 64 bytes up to it has its top 16 bits clear (or at
/// max_chunk). The ends of the chunks, the last one bytes.size().
std::vector<std::size_t> content_chunks(std::span<const std::byte> bytes) {
  constexpr int bits = 16;
  constexpr std::uint64_t mask = ~std::uint64_t{0} << (64 - bits);
  std::vector<std::size_t> ends;
  ends.reserve(bytes.size() / (min_chunk + (std::size_t{1} << bits)) + 1);
  const auto* data = reinterpret_cast<const std::uint8_t*>(bytes.data());
  std::size_t at = 0;
  while (at < bytes.size()) {
    const std::size_t left = bytes.size() - at;
    std::size_t cut = std::min(left, max_chunk);
    if (left > min_chunk) {
      std::uint64_t hash = 0;
      for (std::size_t i = min_chunk - 64; i < cut; ++i) {
        hash = (hash << 1) + gear[data[at + i]];
        if (i >= min_chunk && !(hash & mask)) {
          cut = i + 1;
          break;
        }
      }
    }
    at += cut;
    ends.push_back(at);
  }
  return ends;
}

/// One chunk of a file: its size, what it takes in the file, and the hash of its bytes.
struct Chunk {
  std::uint32_t size = 0;
  std::uint32_t stored = 0;
  std::uint64_t hash = 0;
};

/// A file's chunks with where each is stored; nothing when `bytes` (its first bytes) do not hold a
/// whole, intact header of format 3.
struct ChunkTable {
  std::vector<Chunk> chunks;
  std::vector<std::uint64_t> offsets;  ///< in the file
};

/// Writes `bytes` to `fd` at `offset`; errno's text when it cannot.
std::optional<std::string> pwrite_all(int fd, std::string_view bytes, off_t offset) {
  while (!bytes.empty()) {
    const ssize_t n = ::pwrite(fd, bytes.data(), bytes.size(), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::string(n < 0 ? std::strerror(errno) : "nothing written");
    bytes.remove_prefix(static_cast<std::size_t>(n));
    offset += n;
  }
  return std::nullopt;
}

/// Compresses snapshots into files a chunk at a time, and copies the chunks a room's last file
/// holds already: no copy of a whole snapshot is made.
class FileEncoder {
 public:
  FileEncoder() : context_(ZSTD_createCCtx(), &ZSTD_freeCCtx), piece_(ZSTD_CStreamOutSize(), '\0') {
    if (!context_) throw std::bad_alloc();
  }
  /// Writes the file of `room_id` holding `snapshot` to `fd` (empty, at its start); `previous`,
  /// the room's last file (-1: none), lends the chunks it has. What went wrong, when it did.
  std::optional<std::string> write(int fd, std::string_view room_id, std::span<const std::byte> snapshot,
                                   int previous) {
    const std::vector<std::size_t> ends = content_chunks(snapshot);
    std::vector<Chunk> chunks(ends.size());
    std::unordered_map<std::uint64_t, std::size_t> old;  // hash -> index in the previous file's table
    ChunkTable lent;
    if (previous >= 0) {
      if (auto table = read_table(previous)) lent = std::move(*table);
      for (std::size_t i = 0; i < lent.chunks.size(); ++i) old.emplace(lent.chunks[i].hash, i);
    }
    // The header with its table, the stored sizes filled in once the chunks are written.
    std::string header(magic);
    put(header, format, 4);
    put(header, room_id.size(), 4);
    header += room_id;
    put(header, snapshot.size(), 8);
    put(header, chunks.size(), 4);
    const std::size_t table_at = header.size();
    header.resize(header.size() + chunks.size() * chunk_entry + 4);
    if (auto error = write_all(fd, header)) return error;
    reused_ = 0;
    std::size_t from = 0;
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      const auto bytes = snapshot.subspan(from, ends[i] - from);
      from = ends[i];
      Chunk& chunk = chunks[i];
      chunk.size = static_cast<std::uint32_t>(bytes.size());
      chunk.hash = XXH3_64bits(bytes.data(), bytes.size());
      const auto same = old.find(chunk.hash);
      if (same != old.end() && lent.chunks[same->second].size == chunk.size) {
        const Chunk& had = lent.chunks[same->second];
        if (auto error = copy(previous, lent.offsets[same->second], had.stored, fd)) return error;
        chunk.stored = had.stored;
        reused_ += chunk.size;
        continue;
      }
      std::uint64_t stored = 0;
      if (auto error = compress(bytes, fd, stored)) return error;
      if (stored > UINT32_MAX) return std::string("a chunk compressed to more than 4 GiB");
      chunk.stored = static_cast<std::uint32_t>(stored);
    }
    std::string table;
    table.reserve(chunks.size() * chunk_entry + 4);
    for (const Chunk& chunk : chunks) {
      put(table, chunk.size, 4);
      put(table, chunk.stored, 4);
      put(table, chunk.hash, 8);
    }
    std::copy(table.begin(), table.end(), header.begin() + static_cast<std::ptrdiff_t>(table_at));
    header.resize(header.size() - 4);
    put(table, checksum(header), 4);
    return pwrite_all(fd, table, static_cast<off_t>(table_at));
  }
  /// Bytes of the last snapshot written that were copied from the room's last file.
  std::uint64_t reused() const noexcept { return reused_; }

  /// The chunk table of the file open as `fd` (format 3, its header intact); nothing otherwise.
  static std::optional<ChunkTable> read_table(int fd) {
    std::string head(64 * 1024, '\0');
    ssize_t got = 0;
    do got = ::pread(fd, head.data(), head.size(), 0);
    while (got < 0 && errno == EINTR);
    if (got <= 0) return std::nullopt;
    head.resize(static_cast<std::size_t>(got));
    if (!head.starts_with(magic)) return std::nullopt;
    Reader in{std::string_view(head).substr(magic.size())};
    if (in.get(4) != 3) return std::nullopt;
    const auto id_size = in.get(4);
    if (!in.ok || in.in.size() < id_size) return std::nullopt;
    in.in = in.in.subspan(id_size);
    in.get(8);
    const auto count = in.get(4);
    // A real table has a chunk for every min_chunk bytes at most: 2^17 of them is a 32 GiB snapshot.
    if (!in.ok || count > (std::uint64_t{1} << 17)) return std::nullopt;
    const std::size_t header_size = head.size() - in.in.size() + count * chunk_entry + 4;
    if (header_size > head.size()) {
      head.resize(header_size);
      do got = ::pread(fd, head.data(), head.size(), 0);
      while (got < 0 && errno == EINTR);
      if (got < 0 || static_cast<std::size_t>(got) < header_size) return std::nullopt;
      in.in = std::span<const char>(head).subspan(header_size - count * chunk_entry - 4);
    }
    ChunkTable table;
    table.chunks.resize(count);
    std::uint64_t offset = header_size;
    for (Chunk& chunk : table.chunks) {
      chunk.size = static_cast<std::uint32_t>(in.get(4));
      chunk.stored = static_cast<std::uint32_t>(in.get(4));
      chunk.hash = in.get(8);
      table.offsets.push_back(offset);
      offset += chunk.stored;
    }
    const auto stored_crc = static_cast<std::uint32_t>(in.get(4));
    if (!in.ok || checksum(std::string_view(head).substr(0, header_size - 4)) != stored_crc) return std::nullopt;
    return table;
  }

 private:
  /// Writes `bytes` to `fd` as one zstd frame; `stored`, its size.
  std::optional<std::string> compress(std::span<const std::byte> bytes, int fd, std::uint64_t& stored) {
    ZSTD_CCtx* cctx = context_.get();
    ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, zstd_level);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setPledgedSrcSize(cctx, bytes.size());
    // ZSTD_c_stableInBuffer (zstd 1.4.5 on; its name needs ZSTD_STATIC_LINKING_ONLY): the snapshot
    // stays where it is until the frame ends, so zstd reads it there instead of copying it into a
    // window of its own (a quarter of the writer's time). A library without it copies.
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_experimentalParam9, 1);
    ZSTD_inBuffer in{bytes.data(), bytes.size(), 0};
    for (;;) {
      ZSTD_outBuffer out{piece_.data(), piece_.size(), 0};
      const std::size_t left = ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end);
      if (ZSTD_isError(left)) return std::string("zstd: ") + ZSTD_getErrorName(left);
      if (auto error = write_all(fd, {piece_.data(), out.pos})) return error;
      stored += out.pos;
      if (left == 0) return std::nullopt;
    }
  }
  /// Copies `size` bytes at `offset` of `from` to the end of `to`: in the kernel where it can.
  std::optional<std::string> copy(int from, std::uint64_t offset, std::uint64_t size, int to) {
    while (size > 0) {
      auto at = static_cast<off_t>(offset);
      const ssize_t n = ::copy_file_range(from, &at, to, nullptr, static_cast<std::size_t>(size), 0);
      if (n > 0) {
        offset += static_cast<std::uint64_t>(n);
        size -= static_cast<std::uint64_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      break;  // not here (another file system, an old kernel) or cut short: through a buffer
    }
    while (size > 0) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(size, piece_.size()));
      ssize_t got = 0;
      do got = ::pread(from, piece_.data(), n, static_cast<off_t>(offset));
      while (got < 0 && errno == EINTR);
      if (got <= 0) return fmt::format("reading the room's last file: {}", got < 0 ? std::strerror(errno) : "cut short");
      if (auto error = write_all(to, {piece_.data(), static_cast<std::size_t>(got)})) return error;
      offset += static_cast<std::uint64_t>(got);
      size -= static_cast<std::uint64_t>(got);
    }
    return std::nullopt;
  }

  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> context_;
  std::string piece_;
  std::uint64_t reused_ = 0;
};

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
  const auto version = Reader{bytes.substr(magic.size(), 4)}.get(4);
  if (version < 1 || version > format) return damaged(fmt::format("format {}, not 1 to {}", version, format));
  std::string_view rest = bytes.substr(magic.size() + 4);
  if (version == 1) {  // a checksum of the whole file at its end
    if (rest.size() < 4) return damaged("truncated");
    const auto stored_crc = static_cast<std::uint32_t>(Reader{bytes.substr(bytes.size() - 4)}.get(4));
    if (checksum(bytes.substr(0, bytes.size() - 4)) != stored_crc)
      return damaged("its checksum does not match (a truncated or damaged file)");
    rest.remove_suffix(4);
  }
  Reader in{rest};
  const auto id_size = in.get(4);
  if (!in.ok || in.in.size() < id_size) return damaged("truncated");
  const std::string_view id(in.in.data(), id_size);
  in.in = in.in.subspan(id_size);
  const auto size = in.get(8);
  std::vector<std::uint64_t> frame_ends;  // format 3: where each chunk ends in the snapshot
  std::uint64_t chunks_stored = 0;
  if (version == 1) {
    const auto stored = in.get(8);
    if (!in.ok || stored != in.in.size()) return damaged("its sizes do not match");
  } else {
    if (version == 3) {
      const auto count = in.get(4);
      if (!in.ok || in.in.size() / chunk_entry < count) return damaged("truncated");
      std::uint64_t raw = 0;
      frame_ends.reserve(static_cast<std::size_t>(count));
      for (std::uint64_t i = 0; i < count; ++i) {
        raw += in.get(4);
        chunks_stored += in.get(4);
        in.get(8);
        frame_ends.push_back(raw);
      }
    }
    const std::size_t header = bytes.size() - in.in.size();
    const auto stored_crc = static_cast<std::uint32_t>(in.get(4));
    if (!in.ok || checksum(bytes.substr(0, header)) != stored_crc)
      return damaged("its header's checksum does not match (a truncated or damaged file)");
  }
  if (id != room_id) return damaged("it is another room's");
  if (size > max_snapshot) {
    refused = {fmt::format("it holds {} of state, more than the {} a room may have now", detail::format_bytes(size),
                           detail::format_bytes(max_snapshot)),
               true};
    return {};
  }
  if (version == 3 && ((frame_ends.empty() ? 0 : frame_ends.back()) != size || chunks_stored != in.in.size()))
    return damaged("its sizes do not match");
  // Decompressed a block at a time into a snapshot that grows with what comes out: a file that
  // claims more than its data yields costs no more than that data.
  std::unique_ptr<ZSTD_DStream, decltype(&ZSTD_freeDStream)> stream(ZSTD_createDStream(), &ZSTD_freeDStream);
  if (!stream) throw std::bad_alloc();
  std::vector<std::byte> out;
  out.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(size, 16 * in.in.size() + 4096)));
  ZSTD_inBuffer input{in.in.data(), in.in.size(), 0};
  std::byte spare{};  // where a byte past the size it says would land
  std::size_t frames_done = 0;
  if (version == 3 && frame_ends.empty()) return out;  // an empty snapshot: no chunk
  for (;;) {
    const std::size_t have = out.size();
    const std::size_t room = static_cast<std::size_t>(std::min<std::uint64_t>(size - have, 1u << 20));
    if (room > 0) out.resize(have + room);
    ZSTD_outBuffer output{room > 0 ? static_cast<void*>(out.data() + have) : &spare, room > 0 ? room : 1, 0};
    const std::size_t consumed = input.pos;
    const std::size_t left = ZSTD_decompressStream(stream.get(), &output, &input);
    if (room > 0) out.resize(have + output.pos);
    if (ZSTD_isError(left)) {
      if (ZSTD_getErrorCode(left) == ZSTD_error_memory_allocation) throw std::bad_alloc();  // for now
      return damaged(std::string("zstd: ") + ZSTD_getErrorName(left));
    }
    if (room == 0 && output.pos > 0) return damaged("it decompresses to more than it says");
    if (left == 0) {  // a frame is complete: the snapshot's (formats 1, 2), or a chunk's (3)
      if (version == 3) {
        if (frames_done == frame_ends.size() || out.size() != frame_ends[frames_done])
          return damaged("a chunk decompresses to another size");
        if (++frames_done < frame_ends.size()) continue;
      }
      if (input.pos != input.size) return damaged("bytes follow its compressed snapshot");
      break;
    }
    if (output.pos == 0 && input.pos == consumed) return damaged("its compressed snapshot is cut short");
  }
  if (out.size() != size) return damaged("it decompresses to another size");
  return out;
}

/// Writes a file at `path` atomically with `fill` (which writes its bytes to the descriptor it is
/// given): a temporary file beside it, fsync, rename, fsync of the directory. The error, when it
/// fails (the old file is then as it was).
template <class Fill>
std::optional<std::string> write_atomically(const fs::path& path, Fill&& fill) {
  const fs::path temp = fs::path(path) += ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fmt::format("cannot create {}: {}", temp.string(), std::strerror(errno));
  auto fail = [&](std::string error) {
    ::close(fd);
    ::unlink(temp.c_str());
    return error;
  };
  if (std::optional<std::string> error = fill(fd)) return fail(fmt::format("cannot write {}: {}", temp.string(), *error));
  if (::fsync(fd) != 0) return fail(fmt::format("cannot sync {}: {}", temp.string(), std::strerror(errno)));
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

/// How long ago, for people: "45 s", "12 min", "3 h", "9 d".
std::string format_age(std::chrono::nanoseconds age) {
  const auto seconds = std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::seconds>(age).count());
  if (seconds < 60) return fmt::format("{} s", seconds);
  if (seconds < 3600) return fmt::format("{} min", seconds / 60);
  if (seconds < 48 * 3600) return fmt::format("{} h", seconds / 3600);
  return fmt::format("{} d", seconds / 86400);
}

/// A duration as the options take it: "30 s", "2 h", "7 d" when exact, else in seconds.
std::string format_ttl(std::chrono::seconds ttl) {
  const auto s = ttl.count();
  if (s % 86400 == 0) return fmt::format("{} d", s / 86400);
  if (s % 3600 == 0) return fmt::format("{} h", s / 3600);
  if (s % 60 == 0) return fmt::format("{} min", s / 60);
  return fmt::format("{} s", s);
}

/// `bytes` taken from `budget` (none: nothing counted), given back when the charge goes.
MemoryCharge charge(const std::shared_ptr<MemoryBudget>& budget, std::uint64_t bytes) {
  if (!budget) return {};
  budget->take_anyway(bytes);
  return MemoryCharge(budget.get(), bytes);
}

/// Whether `name` is one of the store's files: `r-*.snapshot` or `h-*.snapshot`.
bool is_state_file_name(std::string_view name) {
  return (name.starts_with("r-") || name.starts_with("h-")) && name.ends_with(".snapshot") &&
         name.size() > 2 + std::string_view(".snapshot").size();
}

/// The room id an `r-` file name spells (see state_file_name); nothing for another name.
std::optional<std::string> room_of_name(std::string_view name) {
  if (!name.starts_with("r-") || !name.ends_with(".snapshot")) return std::nullopt;
  name = name.substr(2, name.size() - 2 - std::string_view(".snapshot").size());
  std::string id;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (name[i] != '%') {
      id.push_back(name[i]);
      continue;
    }
    unsigned value = 0;
    if (i + 2 >= name.size()) return std::nullopt;
    const auto [end, ec] = std::from_chars(name.data() + i + 1, name.data() + i + 3, value, 16);
    if (ec != std::errc{} || end != name.data() + i + 3) return std::nullopt;
    id.push_back(static_cast<char>(value));
    i += 2;
  }
  return id;
}

/// What a file's header says, unchecked (its checksum is not verified).
struct FileHead {
  std::string room_id;
  std::uint64_t size = 0;         ///< of the snapshot, uncompressed
  std::size_t compressed_at = 0;  ///< where the compressed snapshot begins
};

/// The header at the front of `bytes`; nothing when they do not begin with a whole one.
std::optional<FileHead> read_file_head(std::string_view bytes) {
  if (!bytes.starts_with(magic)) return std::nullopt;
  Reader in{bytes.substr(magic.size())};
  const auto version = in.get(4);
  const auto id_size = in.get(4);
  if (!in.ok || in.in.size() < id_size) return std::nullopt;
  FileHead head{.room_id = std::string(in.in.data(), id_size)};
  in.in = in.in.subspan(id_size);
  head.size = in.get(8);
  if (version == 3) {  // the chunks' table
    const auto count = in.get(4);
    if (!in.ok || in.in.size() / chunk_entry < count) {
      head.compressed_at = bytes.size() - in.in.size() + count * chunk_entry + 4;  // what it needs
      return in.ok ? std::optional(head) : std::nullopt;
    }
    in.in = in.in.subspan(count * chunk_entry);
  }
  in.get(version == 1 ? 8 : 4);  // format 1: the compressed size; 2 and 3: the header's checksum
  if (!in.ok) return std::nullopt;
  head.compressed_at = bytes.size() - in.in.size();
  return head;
}

/// The header of the file at `path` and the first `head_bytes` of its snapshot (uncompressed, as
/// many as there are); nothing when it cannot be read. Only a regular file is read, at most 1 MiB
/// of it.
std::optional<std::pair<FileHead, std::vector<std::byte>>> file_head(const fs::path& path, std::size_t head_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return std::nullopt;
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  std::string bytes;
  auto read_more = [&](std::size_t n) {
    const std::size_t have = bytes.size();
    bytes.resize(have + n);
    ssize_t got = 0;
    do got = ::pread(fd, bytes.data() + have, n, static_cast<off_t>(have));
    while (got < 0 && errno == EINTR);
    bytes.resize(have + static_cast<std::size_t>(std::max<ssize_t>(got, 0)));
    return got > 0;
  };
  read_more(4096);
  auto head = read_file_head(bytes);
  if (head && head->compressed_at > bytes.size()) {  // a long table: the rest of the header
    if (head->compressed_at > (std::size_t{1} << 24)) return std::nullopt;
    read_more(head->compressed_at - bytes.size());
    head = read_file_head(bytes);
  }
  if (!head || head->compressed_at > bytes.size()) return std::nullopt;
  std::vector<std::byte> out(static_cast<std::size_t>(std::min<std::uint64_t>(head_bytes, head->size)));
  if (out.empty()) return std::pair{std::move(*head), std::move(out)};
  std::unique_ptr<ZSTD_DStream, decltype(&ZSTD_freeDStream)> stream(ZSTD_createDStream(), &ZSTD_freeDStream);
  if (!stream) return std::nullopt;
  ZSTD_outBuffer output{out.data(), out.size(), 0};
  std::size_t at = head->compressed_at;
  while (output.pos < output.size) {
    if (at == bytes.size() && (bytes.size() >= (1u << 20) || !read_more(64 * 1024))) return std::nullopt;
    ZSTD_inBuffer input{bytes.data() + at, bytes.size() - at, 0};
    const std::size_t left = ZSTD_decompressStream(stream.get(), &output, &input);
    at += input.pos;
    if (ZSTD_isError(left)) return std::nullopt;  // (a frame that ends: the next one goes on)
  }
  return std::pair{std::move(*head), std::move(out)};
}

/// The room id in the header of the file at `path`; nothing when it cannot be read.
std::optional<std::string> room_of_file(const fs::path& path) {
  auto head = file_head(path, 0);
  if (!head) return std::nullopt;
  return std::move(head->first.room_id);
}

/// One file per room in a directory; a thread writes them.
class DirectoryStore final : public StateStore {
 public:
  DirectoryStore(fs::path dir, const DirectoryStoreOptions& options) : dir_(std::move(dir)), options_(options) {
    scan();
    {
      std::lock_guard lock(mutex_);
      enforce_bounds();
    }
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
    const std::string name = state_file_name(room_id);
    std::uint64_t changes = 0;
    {
      std::unique_lock lock(mutex_);
      if (auto it = pending_.find(room_id); it != pending_.end()) {
        if (!it->second.snapshot) return LoadedState::none();  // removed or set aside
        wake(files_[name]);
        // Copied outside the lock: the workers save and sleep meanwhile.
        const Snapshot pending = it->second.snapshot;
        lock.unlock();
        return LoadedState::found(pending->bytes);
      }
      FileEntry& file = files_[name];
      ++file.loading;  // not evicted while it is read
      changes = file.changes;
    }
    const fs::path path = dir_ / name;
    std::uint64_t file_size = 0;
    LoadedState loaded;
    try {
      loaded = read(room_id, path, file_size);
    } catch (const std::bad_alloc&) {
      loaded = LoadedState::unavailable(fmt::format("its snapshot {} cannot be read: out of memory", path.string()));
    }
    std::lock_guard lock(mutex_);
    const auto it = files_.find(name);  // still there: `loading` keeps it
    FileEntry& file = it->second;
    --file.loading;
    if (loaded.is_found()) wake(file);
    // What the read saw of the file, unless the writer changed it meanwhile (it knows better).
    if (file.changes == changes) {
      if (loaded.is_found() && !file.on_disk) {  // a file put there since the start
        on_disk(file, file_size);
      } else if (loaded.status == LoadedState::Status::none) {  // gone, or set aside
        off_disk(file);
      }
    }
    forget_if_idle(it);
    return loaded;
  }

  void set_aside(std::string_view room_id, std::string_view why) override {
    spdlog::warn("room '{}': its snapshot cannot be used ({}); it is set aside as {}.unreadable and the room starts "
                 "afresh",
                 room_id, why, (dir_ / state_file_name(room_id)).string());
    enqueue(room_id, nullptr, Op::set_aside);
  }

  void save(std::string_view room_id, std::vector<std::byte> snapshot) override {
    const std::uint64_t size = snapshot.size();
    enqueue(room_id, std::make_shared<const Held>(Held{std::move(snapshot), charge(options_.memory, size)}), Op::write);
  }

  void remove(std::string_view room_id) override { enqueue(room_id, nullptr, Op::remove); }

  void asleep(std::string_view room_id) override {
    const std::string name = state_file_name(room_id);
    {
      std::lock_guard lock(mutex_);
      const auto it = files_.find(name);
      if (it == files_.end()) return;
      it->second.awake = false;
      it->second.used = Clock::now();
      forget_if_idle(it);
      if (!over_bounds()) return;
      recheck_ = true;  // the writer evicts what it can now
    }
    wake_.notify_one();
  }

  std::size_t writes_in_flight() const override {
    const std::uint64_t done = written_.load(std::memory_order_relaxed);
    const std::uint64_t queued = queued_.load(std::memory_order_relaxed);
    return static_cast<std::size_t>(queued - std::min(queued, done));
  }

  void survey(std::size_t head_bytes, const SurveyVisit& visit) override {
    std::vector<std::string> names;
    {
      std::lock_guard lock(mutex_);
      for (const auto& [name, file] : files_)
        if (file.on_disk && !file.awake && !file.pending) names.push_back(name);
    }
    for (const std::string& name : names) {
      auto found = file_head(dir_ / name, head_bytes);
      if (found && !visit(found->first.room_id, found->second)) return;
    }
  }

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
  using Clock = std::chrono::system_clock;  // the files' modification times are on it
  /// A snapshot held in memory until it is written, charged to the memory budget meanwhile.
  struct Held {
    std::vector<std::byte> bytes;
    MemoryCharge charge;
  };
  using Snapshot = std::shared_ptr<const Held>;
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
  /// What the index knows of a room's file (by file name), and of its room.
  struct FileEntry {
    bool on_disk = false;      ///< the file is there, `size` bytes
    std::uint64_t size = 0;
    bool awake = false;        ///< loaded or saved since it was last put to sleep: never evicted
    bool pending = false;      ///< a write, removal or set-aside waits for the writer: not evicted
    unsigned loading = 0;      ///< load()s reading it now: not evicted
    bool stuck = false;        ///< it could not be removed: not tried again
    std::uint64_t changes = 0; ///< how often the writer or an eviction changed it
    Clock::time_point used{};  ///< the last load, save or sleep (at start: the file's mtime)
  };
  using Files = std::map<std::string, FileEntry, std::less<>>;

  /// Indexes the store's files (regular files named r-*.snapshot and h-*.snapshot), and removes the
  /// temporary files of writes that a crash cut short (the snapshot before each is still there,
  /// whole).
  void scan() {
    std::error_code ec;
    std::size_t removed = 0;
    for (auto it = fs::directory_iterator(dir_, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.ends_with(".snapshot.tmp")) {
        std::error_code regular;
        if (it->is_regular_file(regular) && ::unlink(it->path().c_str()) == 0) ++removed;
        continue;
      }
      if (!is_state_file_name(name)) continue;
      struct stat st{};
      if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      FileEntry& file = files_[name];
      on_disk(file, static_cast<std::uint64_t>(st.st_size));
      file.used = Clock::time_point(std::chrono::duration_cast<Clock::duration>(
          std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
    }
    if (removed) spdlog::info("state directory: removed {} temporary file(s) of writes cut short", removed);
  }

  void on_disk(FileEntry& file, std::uint64_t size) {
    off_disk(file);
    file.on_disk = true;
    file.size = size;
    bytes_ += size;
    ++count_;
  }
  void off_disk(FileEntry& file) {
    if (!file.on_disk) return;
    bytes_ -= file.size;
    --count_;
    file.on_disk = false;
    file.size = 0;
    file.stuck = false;
  }
  /// `file`'s room is alive and used now.
  static void wake(FileEntry& file) {
    file.awake = true;
    file.used = Clock::now();
  }
  /// Drops an entry that says nothing any more.
  void forget_if_idle(Files::iterator it) {
    const FileEntry& file = it->second;
    if (!file.on_disk && !file.awake && !file.pending && file.loading == 0) files_.erase(it);
  }
  /// The file's size and presence as they are on disk (after a write that failed part-way).
  void refresh(FileEntry& file, const std::string& name) {
    struct stat st{};
    if (::lstat((dir_ / name).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      on_disk(file, static_cast<std::uint64_t>(st.st_size));
    } else {
      off_disk(file);
    }
  }

  bool over_bounds() const noexcept { return bytes_ > options_.max_bytes || count_ > options_.max_rooms; }

  /// The files that may go, the least recently used first.
  std::vector<Files::iterator> evictable() {
    std::vector<Files::iterator> out;
    for (auto it = files_.begin(); it != files_.end(); ++it) {
      const FileEntry& file = it->second;
      if (file.on_disk && !file.awake && !file.pending && file.loading == 0 && !file.stuck) out.push_back(it);
    }
    std::sort(out.begin(), out.end(), [](Files::iterator a, Files::iterator b) {
      return std::tie(a->second.used, a->first) < std::tie(b->second.used, b->first);
    });
    return out;
  }

  /// Removes the least recently used rooms asleep until the files are within both bounds.
  void enforce_bounds() {
    if (!over_bounds()) return;
    for (const auto it : evictable()) {
      if (!over_bounds()) break;
      evict(it, bytes_ > options_.max_bytes
                    ? fmt::format("--state-max-bytes {} reached", detail::format_bytes(options_.max_bytes))
                    : fmt::format("--state-max-rooms {} reached", options_.max_rooms));
    }
  }

  /// Removes the rooms asleep that were not used for longer than the TTL.
  void expire() {
    const auto now = Clock::now();
    for (const auto it : evictable()) {
      if (now - it->second.used <= options_.ttl) break;
      evict(it, fmt::format("--state-ttl {} passed", format_ttl(options_.ttl)));
    }
  }

  /// Removes the file of `it` (under the lock: a load() of its room either sees it whole before,
  /// or finds none after), with a line in the log saying why.
  void evict(Files::iterator it, const std::string& why) {
    FileEntry& file = it->second;
    const fs::path path = dir_ / it->first;
    std::optional<std::string> room = room_of_name(it->first);
    if (!room) room = room_of_file(path);
    if (::unlink(path.c_str()) != 0) {
      if (errno != ENOENT) {
        spdlog::warn("state directory: cannot remove {} ({}): {}", path.string(), why, std::strerror(errno));
        file.stuck = true;
        return;
      }
      off_disk(file);  // gone already
      ++file.changes;
      forget_if_idle(it);
      return;
    }
    ++evicted_;
    spdlog::info("state directory: {} ({}, unused for {}) removed: {} ({} evicted so far)",
                 room ? fmt::format("room '{}'", *room) : fmt::format("file {}", it->first),
                 detail::format_bytes(file.size), format_age(Clock::now() - file.used), why, evicted_);
    off_disk(file);
    ++file.changes;
    forget_if_idle(it);
  }

  /// How long reading one file may take before its room is refused for now.
  static constexpr auto read_deadline = std::chrono::seconds(10);

  /// Reads `room_id`'s file at `path` (see load()); `file_size` is its size when it is found.
  LoadedState read(std::string_view room_id, const fs::path& path, std::uint64_t& file_size) {
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
    file_size = static_cast<std::uint64_t>(st.st_size);
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
    const std::string name = state_file_name(room_id);
    Snapshot replaced;  // dropped (and its charge given back) outside the lock
    {
      std::lock_guard lock(mutex_);
      auto [it, fresh] = pending_.try_emplace(std::string(room_id));
      const bool set_aside_first = !fresh && (it->second.op == Op::set_aside || it->second.set_aside_first);
      replaced = std::move(it->second.snapshot);
      it->second = Pending{std::move(snapshot), op, ++queued_, set_aside_first && op != Op::set_aside};
      order_.push_back(it->first);
      FileEntry& file = files_[name];
      file.pending = true;
      if (op == Op::write) wake(file);
      if (op == Op::remove) file.awake = false;  // nothing of it is kept: nothing to keep alive
    }
    wake_.notify_one();
  }

  void write_loop() {
    // At the workers' priority: below them (nice 10), a machine kept busy by its rooms starves the
    // writer, and what a crash loses grows past --snapshot-interval (e2e.crash_loss_wasm).
    // Rooms past the TTL are looked for every tenth of it, at least once a minute.
    const auto ttl_period = std::min<std::chrono::steady_clock::duration>(
        std::chrono::duration_cast<std::chrono::milliseconds>(options_.ttl) / 10, std::chrono::seconds(60));
    auto next_expiry = std::chrono::steady_clock::now() + ttl_period;
    std::unique_lock lock(mutex_);
    for (;;) {
      const auto ready = [&] { return stopping_ || !order_.empty() || recheck_; };
      if (options_.ttl.count() > 0) {
        wake_.wait_until(lock, next_expiry, ready);
        if (std::chrono::steady_clock::now() >= next_expiry) {
          expire();
          next_expiry = std::chrono::steady_clock::now() + ttl_period;
        }
      } else {
        wake_.wait(lock, ready);
      }
      if (std::exchange(recheck_, false)) enforce_bounds();
      if (order_.empty()) {
        if (stopping_) return;  // with nothing left
        continue;
      }
      std::string room_id = std::move(order_.front());
      order_.pop_front();
      auto it = pending_.find(room_id);
      if (it == pending_.end()) {  // written already, by an earlier turn for the same room
        ++written_;
        flushed_.notify_all();
        continue;
      }
      Pending entry = it->second;  // load() still finds it until the file holds it
      lock.unlock();
      std::uint64_t size = 0;
      const std::optional<std::string> error = write(room_id, entry, size);
      entry.snapshot.reset();
      const std::string name = state_file_name(room_id);
      lock.lock();
      const auto file = files_.try_emplace(name).first;
      ++file->second.changes;
      if (error) {
        refresh(file->second, name);
      } else if (entry.op == Op::write) {
        on_disk(file->second, size);
      } else {
        off_disk(file->second);
      }
      it = pending_.find(room_id);
      // Done with it unless it was saved again meanwhile (a later turn writes that) or failed.
      if (!error && it != pending_.end() && it->second.sequence == entry.sequence) {
        pending_.erase(it);
        file->second.pending = false;
      } else if (!error && it != pending_.end() && (entry.op == Op::set_aside || entry.set_aside_first)) {
        // The set-aside is done: the later turn must not set aside what this one wrote.
        it->second.set_aside_first = false;
      }
      forget_if_idle(file);
      if (error) report(*error);
      enforce_bounds();
      ++written_;
      flushed_.notify_all();
    }
  }

  /// Does `entry`'s op on `room_id`'s file; `size` is the file's when it writes one.
  std::optional<std::string> write(const std::string& room_id, const Pending& entry, std::uint64_t& size) {
    const fs::path path = dir_ / state_file_name(room_id);
    // A set-aside first, so that neither a removal nor a write behind it touches that file.
    if (entry.op == Op::set_aside || entry.set_aside_first) {
      const fs::path aside = fs::path(path) += ".unreadable";
      if (::rename(path.c_str(), aside.c_str()) != 0 && errno != ENOENT)
        return fmt::format("cannot set aside {}: {}", path.string(), std::strerror(errno));
      if (entry.op == Op::set_aside) return std::nullopt;
    }
    if (entry.op == Op::remove) {
      if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        return fmt::format("cannot remove {}: {}", path.string(), std::strerror(errno));
      return std::nullopt;
    }
    try {
      // The room's last file lends the chunks it shares with this snapshot (a regular file only).
      int previous = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
      struct stat st {};
      if (previous >= 0 && (::fstat(previous, &st) != 0 || !S_ISREG(st.st_mode))) {
        ::close(previous);
        previous = -1;
      }
      auto error = write_atomically(
          path, [&](int fd) { return encoder_.write(fd, room_id, entry.snapshot->bytes, previous); });
      if (previous >= 0) ::close(previous);
      if (!error && ::stat(path.c_str(), &st) == 0) size = static_cast<std::uint64_t>(st.st_size);
      if (!error)
        spdlog::debug("state directory: wrote room '{}': {} in {}, {} of it copied from its last file", room_id,
                      detail::format_bytes(entry.snapshot->bytes.size()), detail::format_bytes(size),
                      detail::format_bytes(encoder_.reused()));
      return error;
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
  FileEncoder encoder_;  ///< the writer thread's
  std::mutex mutex_;
  std::condition_variable wake_, flushed_;
  std::map<std::string, Pending, std::less<>> pending_;  ///< saved, not yet in the file
  std::deque<std::string> order_;                      ///< rooms to write, in order (repeats allowed)
  std::atomic<std::uint64_t> queued_ = 0, written_ = 0;  ///< ops queued and done (read unlocked by writes_in_flight)
  bool stopping_ = false;
  Files files_;                  ///< the index: every file of the directory, every room alive
  std::uint64_t bytes_ = 0;      ///< what the files take together
  std::size_t count_ = 0;        ///< how many there are
  std::uint64_t evicted_ = 0;    ///< files removed for the bounds or the TTL since the start
  bool recheck_ = false;         ///< a room fell asleep while the files are over their bounds
  std::chrono::steady_clock::time_point last_report_{};
  std::uint64_t unreported_ = 0;
  std::thread writer_;
};

/// make_memory_store's: the snapshots in a map.
class MemoryStore final : public StateStore {
 public:
  explicit MemoryStore(const MemoryStoreOptions& options) : options_(options) {}

  LoadedState load(std::string_view room_id) override {
    std::lock_guard lock(mutex_);
    auto it = rooms_.find(room_id);
    if (it == rooms_.end()) return LoadedState::none();
    wake(it->second);
    return LoadedState::found(it->second.snapshot);
  }
  void save(std::string_view room_id, std::vector<std::byte> snapshot) override {
    MemoryCharge taken = charge(options_.memory, snapshot.size());
    std::vector<std::byte> replaced;  // freed outside the lock
    std::lock_guard lock(mutex_);
    auto it = rooms_.try_emplace(std::string(room_id)).first;
    Kept& kept = it->second;
    bytes_ -= kept.snapshot.size();
    replaced = std::exchange(kept.snapshot, std::move(snapshot));
    kept.charge = std::move(taken);
    bytes_ += kept.snapshot.size();
    wake(kept);
    enforce_bound();
  }
  void remove(std::string_view room_id) override {
    std::lock_guard lock(mutex_);
    if (auto it = rooms_.find(room_id); it != rooms_.end()) drop(it);
  }
  void asleep(std::string_view room_id) override {
    std::lock_guard lock(mutex_);
    auto it = rooms_.find(room_id);
    if (it == rooms_.end()) return;
    it->second.awake = false;
    it->second.used = Clock::now();
    enforce_bound();
  }
  void set_aside(std::string_view room_id, std::string_view why) override {
    spdlog::warn("room '{}': its state cannot be used ({}); it is dropped and the room starts afresh", room_id, why);
    remove(room_id);
  }
  void flush() override {}

 private:
  using Clock = std::chrono::steady_clock;
  struct Kept {
    std::vector<std::byte> snapshot;
    MemoryCharge charge;
    bool awake = false;  ///< loaded or saved since it last fell asleep: never dropped
    Clock::time_point used{};
  };
  using Rooms = std::map<std::string, Kept, std::less<>>;

  static void wake(Kept& kept) {
    kept.awake = true;
    kept.used = Clock::now();
  }
  void drop(Rooms::iterator it) {
    bytes_ -= it->second.snapshot.size();
    rooms_.erase(it);
  }
  /// Drops the least recently used rooms asleep until the snapshots are within the bound (a room
  /// alive keeps its snapshot however large).
  void enforce_bound() {
    if (bytes_ <= options_.max_bytes) return;
    std::vector<Rooms::iterator> asleep;
    for (auto it = rooms_.begin(); it != rooms_.end(); ++it)
      if (!it->second.awake) asleep.push_back(it);
    std::sort(asleep.begin(), asleep.end(),
              [](Rooms::iterator a, Rooms::iterator b) { return a->second.used < b->second.used; });
    const auto now = Clock::now();
    for (const auto it : asleep) {
      if (bytes_ <= options_.max_bytes) break;
      ++evicted_;
      spdlog::info("stateroom dev's in-memory store: room '{}' ({}, unused for {}) removed: its {} reached ({} "
                   "evicted so far)",
                   it->first, detail::format_bytes(it->second.snapshot.size()), format_age(now - it->second.used),
                   detail::format_bytes(options_.max_bytes), evicted_);
      drop(it);
    }
  }

  const MemoryStoreOptions options_;
  std::mutex mutex_;
  Rooms rooms_;
  std::uint64_t bytes_ = 0;    ///< the snapshots together
  std::uint64_t evicted_ = 0;  ///< rooms dropped for the bound so far
};

}  // namespace

std::shared_ptr<StateStore> make_memory_store(const MemoryStoreOptions& options) {
  return std::make_shared<MemoryStore>(options);
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
