// StateStore: where rooms' snapshots are kept between their lives (ServerOptions::state_dir).
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace stateroom {

/// Keeps one snapshot per room id: what a room was when it hibernated, when the server stopped or
/// at its last periodic snapshot. Rooms save and load on their worker threads, so the methods may
/// be called from several threads at once; save() should not wait for the disk.
class StateStore {
 public:
  virtual ~StateStore() = default;
  /// The snapshot last saved for `room_id`, if any (one that cannot be read counts as none, after
  /// a warning in the log).
  virtual std::optional<std::vector<std::byte>> load(std::string_view room_id) = 0;
  /// Keeps `snapshot` for `room_id` in place of the one before. It may return before the snapshot
  /// is durable; load() sees it at once all the same.
  virtual void save(std::string_view room_id, std::vector<std::byte> snapshot) = 0;
  /// Forgets `room_id`'s snapshot.
  virtual void remove(std::string_view room_id) = 0;
  /// Returns once everything saved before is durable (or its failure was reported).
  virtual void flush() = 0;
};

/// The store of `--state-dir`: one file per room in `dir` (created if missing), written atomically
/// (a temporary file, fsync, rename, fsync of the directory) by a thread of its own, compressed
/// with zstd, with a format version, the room id and a checksum. A file that is corrupt,
/// truncated or another room's is refused with one warning and set aside (`.unreadable`). A
/// directory that cannot be written makes each save fail with an error in the log, the room's
/// state staying in memory meanwhile. Throws std::runtime_error when `dir` cannot be made or read.
std::shared_ptr<StateStore> make_directory_store(const std::filesystem::path& dir);

/// A store in this process's memory: rooms outlive their hibernation and Server::replace_factory,
/// not the process (`stateroom dev` without --state-dir).
std::shared_ptr<StateStore> make_memory_store();

/// The file name the directory store gives `room_id`: its bytes as they are when they are ASCII
/// letters, digits, `-` or `_`, else `%XX`, after `r-` and before `.snapshot`; past 200
/// characters, `h-` and the SHA-256 of the id in hex instead. No two room ids share a name, and
/// no name leaves the directory.
std::string state_file_name(std::string_view room_id);

}  // namespace stateroom
