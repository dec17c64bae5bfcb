// FileReader: the thread that touches the disk for static files, so that no room worker waits on it.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "io_thread.hpp"
#include "static_files.hpp"

namespace stateroom::server {

/// A static file, resolved and opened on the file thread, with its first piece read.
struct OpenedFile {
  OpenedFile() = default;
  OpenedFile(const OpenedFile&) = delete;
  OpenedFile& operator=(const OpenedFile&) = delete;
  ~OpenedFile();

  StaticLookup lookup;     ///< what the URL path resolved to; the rest is set for `file` only
  int fd = -1;             ///< open for reading while more is to be read
  std::uint64_t size = 0;  ///< the file's size when it was opened: its Content-Length
  std::string piece;       ///< bytes from offset 0 (all of a small file)
  std::string error;       ///< why a file that resolved could not be opened or read
};

/// One thread, started with the server when it serves a static directory: every stat, open and
/// read of a static file runs on it, and the answer is posted back to the requesting worker. A
/// slow disk delays the files, never a room. Reads go piece by piece (`piece_size`), so a large
/// file holds one piece in memory per download.
class FileReader {
 public:
  static constexpr std::size_t piece_size = 256 * 1024;

  /// Joins the thread when destroyed; requests not yet answered are dropped (their callbacks are
  /// destroyed unrun).

  using OpenDone = std::function<void(std::shared_ptr<OpenedFile>)>;
  using ReadDone = std::function<void(std::string piece, std::string error)>;

  /// Resolves `url_path` inside `root` (resolve_static), opens a regular file and reads its first
  /// piece; then `done` runs on `answer_on`.
  void open(std::string root, std::string url_path, boost::asio::any_io_executor answer_on, OpenDone done);
  /// Reads the piece of `file` at `offset` (at most piece_size bytes, fewer only at the end of the
  /// file); then `done` runs on `answer_on`, with an error when the file shrank or cannot be read.
  void read(std::shared_ptr<OpenedFile> file, std::uint64_t offset, boost::asio::any_io_executor answer_on,
            ReadDone done);

 private:
  IoThread thread_;
};

}  // namespace stateroom::server
