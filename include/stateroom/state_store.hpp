// StateStore: where rooms' snapshots are kept between their lives (ServerOptions::state_dir).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace stateroom {

class MemoryBudget;  // stateroom/memory_budget.hpp

/// What StateStore::load found for a room.
struct LoadedState {
  enum class Status : std::uint8_t {
    none,         ///< nothing is kept for the room: it starts with `init`
    found,        ///< `snapshot` is what was saved last
    unavailable,  ///< a snapshot is kept but cannot be read now (an I/O error, out of descriptors
                  ///< or memory, larger than the limits allow now): the room must not start
                  ///< (it would overwrite it); `error` says why. Asked again at its next connect.
  };
  Status status = Status::none;
  std::vector<std::byte> snapshot;
  std::string error;

  static LoadedState none() { return {}; }
  static LoadedState found(std::vector<std::byte> snapshot) { return {Status::found, std::move(snapshot), {}}; }
  static LoadedState unavailable(std::string error) { return {Status::unavailable, {}, std::move(error)}; }
  bool is_found() const noexcept { return status == Status::found; }
};

/// Keeps one snapshot per room id: what a room was when it hibernated, when the server stopped or
/// at its last periodic snapshot. Rooms save and load on their worker threads, so the methods may
/// be called from several threads at once; save() should not wait for the disk.
class StateStore {
 public:
  virtual ~StateStore() = default;
  /// The snapshot last saved for `room_id`. One that can never be read (damaged, another room's,
  /// not a regular file) counts as none, after a warning in the log, and is set aside; one that
  /// cannot be read *now* is `unavailable` and stays as it is.
  virtual LoadedState load(std::string_view room_id) = 0;
  /// Keeps `snapshot` for `room_id` in place of the one before. It may return before the snapshot
  /// is durable; load() sees it at once all the same.
  virtual void save(std::string_view room_id, std::vector<std::byte> snapshot) = 0;
  /// Forgets `room_id`'s snapshot.
  virtual void remove(std::string_view room_id) = 0;
  /// `room_id` ended with the snapshot last saved (it hibernated, or the server stops): from now
  /// on until it is loaded again, its snapshot may go when the store is over its bounds (the least
  /// recently used first). A room that is alive is never evicted. This default keeps everything.
  virtual void asleep(std::string_view /*room_id*/) {}
  /// `room_id`'s snapshot was read but cannot be used (its service refused it, another module
  /// made it): it is kept aside for a look, not overwritten by the room's next snapshot, and
  /// load() finds nothing from now on. `why` goes to the log.
  virtual void set_aside(std::string_view room_id, std::string_view why) = 0;
  /// Returns once everything saved before is durable (or its failure was reported).
  virtual void flush() = 0;
  /// Saves whose writing is not over yet (the one being written included). While it is at
  /// `max_writes_in_flight` or more, the server begins no periodic snapshot: a store that falls
  /// behind then writes each room's freshest state, instead of being handed copies that later
  /// ones replace unwritten. Any thread may call it. This default: never behind.
  virtual std::size_t writes_in_flight() const { return 0; }
  /// One being written and one ready to follow it.
  static constexpr std::size_t max_writes_in_flight = 2;
  /// What survey() hands over: a room id and its snapshot's first bytes (uncompressed).
  using SurveyVisit = std::function<bool(std::string_view room_id, std::span<const std::byte> head)>;
  /// Calls `visit` for each room asleep (not loaded or saved since it last went to sleep, or since
  /// the start) whose snapshot it keeps, with the snapshot's first `head_bytes` (fewer when it is
  /// shorter), until `visit` returns false. For a look over what is kept, such as the server's at
  /// start: a snapshot that cannot be read is skipped (its room's load() says why), and nothing
  /// is checked beyond what the head needs. Any thread; rooms load and save meanwhile. This
  /// default keeps nothing to show.
  virtual void survey(std::size_t /*head_bytes*/, const SurveyVisit& /*visit*/) {}
};

/// How a directory store reads, and how much it keeps.
struct DirectoryStoreOptions {
  /// The largest snapshot (uncompressed) a file may hold: a file that claims more is not read
  /// (nothing is allocated for it), its room is refused with `unavailable` and the file kept, as
  /// for a room that no longer fits the limits of this run. Default: a 4 GiB WebAssembly memory
  /// and what a room keeps beside it.
  std::uint64_t max_snapshot_bytes = (std::uint64_t{4} << 30) + (std::uint64_t{64} << 20);
  /// The bytes the files may take together (as stored: compressed). Past it, the snapshots of the
  /// rooms asleep (StateStore::asleep) and unused for longest are removed until the files are
  /// within it again; a room alive is never evicted, nor a file a pending write replaces.
  /// Default 4 GiB: sized to a small deployment.
  std::uint64_t max_bytes = std::uint64_t{4} << 30;
  /// The files (rooms) the directory may hold; past it, the same. Default 100,000.
  std::size_t max_rooms = 100000;
  /// A room asleep and unused (not loaded, saved or put to sleep) for longer than this is removed;
  /// checked every tenth of it, at least once a minute. 0 (the default): kept however old.
  std::chrono::seconds ttl{0};
  /// The budget the snapshots held in memory (saved, not yet written, or kept because the
  /// directory cannot be written) are charged to; none: not counted.
  std::shared_ptr<MemoryBudget> memory{};
};

/// The store of `--state-dir`: one file per room in `dir` (created if missing), written atomically
/// (a temporary file, fsync, rename, fsync of the directory) by a thread of its own, compressed
/// with zstd in chunks cut by content (those the room's last file holds are copied from it, not
/// compressed again), with a format version, the room id and checksums. Only regular files are read (a
/// symbolic link, a FIFO or a device in a file's place is refused), their sizes checked against
/// the options before anything is allocated. A file that is corrupt, truncated or another room's
/// is refused with one warning and set aside (`.unreadable`). A directory that cannot be written
/// makes each save fail with an error in the log, the room's state staying in memory meanwhile.
/// The store keeps an index of its files (their sizes and when their rooms were last used: at
/// start, the files' modification times) and holds them within `max_bytes`, `max_rooms` and `ttl`
/// by removing the least recently used rooms asleep, one line in the log (info) each; an evicted
/// room starts afresh. Throws std::runtime_error when `dir` cannot be made or read.
std::shared_ptr<StateStore> make_directory_store(const std::filesystem::path& dir,
                                                 const DirectoryStoreOptions& options = {});

/// How much an in-memory store keeps.
struct MemoryStoreOptions {
  /// The bytes of snapshots it holds; past it the rooms asleep and unused for longest are dropped
  /// (a snapshot of a room alive is kept, even one that alone passes it). Default 256 MiB.
  std::uint64_t max_bytes = std::uint64_t{256} << 20;
  /// The budget its snapshots are charged to; none: not counted.
  std::shared_ptr<MemoryBudget> memory{};
};

/// A store in this process's memory: rooms outlive their hibernation and Server::replace_factory,
/// not the process (`stateroom dev` without --state-dir).
std::shared_ptr<StateStore> make_memory_store(const MemoryStoreOptions& options = {});

/// The file name the directory store gives `room_id`: its bytes as they are when they are ASCII
/// letters, digits, `-` or `_`, else `%XX`, after `r-` and before `.snapshot`; past 200
/// characters, `h-` and the SHA-256 of the id in hex instead. No two room ids share a name, and
/// no name leaves the directory.
std::string state_file_name(std::string_view room_id);

}  // namespace stateroom
