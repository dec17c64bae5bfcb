#include "file_reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>
#include <utility>

namespace stateroom::server {

namespace asio = boost::asio;

namespace {

/// Reads `size` bytes at `offset` into `out`; an error message, or empty.
std::string read_at(int fd, std::uint64_t offset, std::size_t size, std::string& out) {
  out.resize(size);
  std::size_t got = 0;
  while (got < size) {
    const ssize_t n = ::pread(fd, out.data() + got, size - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::strerror(errno);
    if (n == 0) return "the file shrank while it was being served";
    got += static_cast<std::size_t>(n);
  }
  return {};
}

}  // namespace

OpenedFile::~OpenedFile() {
  if (fd >= 0) ::close(fd);
}

void FileReader::open(std::string root, std::string url_path, asio::any_io_executor answer_on,
                      OpenDone done) {
  thread_.post([root = std::move(root), url_path = std::move(url_path), answer_on = std::move(answer_on),
                    done = std::move(done)]() mutable {
    auto file = std::make_shared<OpenedFile>();
    file->lookup = resolve_static(root, url_path);
    if (file->lookup.kind == StaticLookup::Kind::file) {
      file->fd = ::open(file->lookup.path.c_str(), O_RDONLY | O_CLOEXEC);
      struct stat st {};
      if (file->fd < 0 || ::fstat(file->fd, &st) != 0) {
        file->error = std::strerror(errno);
      } else if (!S_ISREG(st.st_mode)) {
        file->error = "not a regular file";
      } else {
        file->size = static_cast<std::uint64_t>(st.st_size);
        const std::size_t first = file->size < piece_size ? static_cast<std::size_t>(file->size) : piece_size;
        file->error = read_at(file->fd, 0, first, file->piece);
      }
      if (!file->error.empty() || file->piece.size() == file->size) {
        if (file->fd >= 0) ::close(file->fd);
        file->fd = -1;
      }
    }
    asio::post(answer_on, [file = std::move(file), done = std::move(done)] { done(file); });
  });
}

void FileReader::read(std::shared_ptr<OpenedFile> file, std::uint64_t offset, asio::any_io_executor answer_on,
                      ReadDone done) {
  thread_.post([file = std::move(file), offset, answer_on = std::move(answer_on),
                    done = std::move(done)]() mutable {
    std::string piece;
    std::string error;
    if (file->fd < 0 || offset >= file->size) {
      error = "nothing more to read";
    } else {
      const std::uint64_t left = file->size - offset;
      error =
          read_at(file->fd, offset, left < piece_size ? static_cast<std::size_t>(left) : piece_size, piece);
    }
    if (!error.empty() || offset + piece.size() >= file->size) {
      if (file->fd >= 0) ::close(file->fd);
      file->fd = -1;
    }
    asio::post(answer_on, [piece = std::move(piece), error = std::move(error),
                           done = std::move(done)]() mutable { done(std::move(piece), std::move(error)); });
  });
}

}  // namespace stateroom::server
