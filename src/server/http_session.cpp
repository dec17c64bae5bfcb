#include "http_session.hpp"

#include <spdlog/spdlog.h>

#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/range/iterator_range.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <utility>

#include "file_reader.hpp"
#include "protocol/handshake.hpp"
#include "routes.hpp"
#include "static_files.hpp"
#include "upgrade_request.hpp"
#include "websocket_session.hpp"
#include "worker.hpp"

namespace stateroom::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {
constexpr auto http_idle_timeout = std::chrono::seconds(30);
constexpr std::size_t max_request_body = 64 * 1024;
/// What the first read of a request asks for (a request line and a few headers).
constexpr std::size_t idle_read_size = 1024;

// A socket descriptor in transit between workers: closed if the hand-over never runs (shutdown).
class OwnedFd {
 public:
  explicit OwnedFd(int fd) : fd_(fd) {}
  OwnedFd(OwnedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  OwnedFd& operator=(OwnedFd&&) = delete;
  ~OwnedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};
}  // namespace

HttpSession::HttpSession(Worker& worker, asio::ip::tcp::socket socket, ConnectionTicket ticket)
    : worker_(worker), stream_(std::move(socket)), ticket_(std::move(ticket)) {}

void HttpSession::start() {
  read_next();
}

void HttpSession::read_next() {
  if (worker_.shutting_down) {
    beast::error_code ec;
    stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    return;
  }
  parser_.emplace();
  parser_->body_limit(max_request_body);
  if (buffer_.size() != 0) {
    read_request();
    return;
  }
  // Idle between requests: the next one may take its time to begin, but once its first byte is
  // here the whole request must follow within the request timeout (a client trickling its headers
  // holds a connection that long at most).
  stream_.expires_after(http_idle_timeout);
  stream_.async_read_some(buffer_.prepare(idle_read_size),
                          [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                            self->buffer_.commit(n);
                            if (ec) {
                              self->on_read(ec);
                              return;
                            }
                            self->read_request();
                          });
}

void HttpSession::read_request() {
  stream_.expires_after(worker_.shared.options.request_timeout);
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
}

void HttpSession::on_read(beast::error_code ec) {
  if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::operation_aborted ||
      ec == beast::error::timeout) {
    beast::error_code ignored;
    stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    return;
  }
  if (ec) {
    // A request that cannot be read is answered once, and the connection closed: what is left of
    // it in the buffer would only be read as the next request.
    Request req;
    req.version(11);
    req.keep_alive(false);
    if (ec == http::error::body_limit || ec == http::error::header_limit) {
      reply(req, http::status::payload_too_large, "request too large\n");
    } else if (ec.category() == http::make_error_code(http::error::bad_method).category()) {
      spdlog::debug("HTTP request refused: {}", ec.message());
      reply(req, http::status::bad_request, "malformed request\n");
    } else {
      spdlog::debug("HTTP read failed: {}", ec.message());
    }
    return;
  }
  handle(parser_->release());
}

void HttpSession::handle(Request&& request) {
  const auto method = request.method();
  if (method != http::verb::get && method != http::verb::head) {
    http::response<http::string_body> res{http::status::method_not_allowed, request.version()};
    res.set(http::field::allow, "GET, HEAD");
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "method not allowed\n";
    res.keep_alive(request.keep_alive());
    res.prepare_payload();
    respond(std::move(res));
    return;
  }
  const auto target = std::string_view(request.target().data(), request.target().size());
  const Route r = route(target, worker_.shared.options.default_room);
  switch (r.kind) {
    case Route::Kind::status:
      reply(request, http::status::ok, "ok");
      return;
    case Route::Kind::bad_request:
      reply(request, http::status::bad_request, r.reason + "\n");
      return;
    case Route::Kind::websocket:
      if (!beast::websocket::is_upgrade(request)) {
        reply(request, http::status::upgrade_required, "this endpoint expects a WebSocket upgrade\n");
        return;
      }
      upgrade(std::move(request), r.room_id);
      return;
    case Route::Kind::other:
      break;
  }
  const auto& options = worker_.shared.options;
  const std::string_view path = path_of(target);
  constexpr std::string_view client_prefix = "/client";
  if (!options.client_dir.empty() && path.starts_with(client_prefix) &&
      (path.size() == client_prefix.size() || path[client_prefix.size()] == '/')) {
    serve_file(std::move(request), client_prefix, path.substr(client_prefix.size()), options.client_dir);
    return;
  }
  if (!options.static_dir.empty()) {
    serve_file(std::move(request), {}, path, options.static_dir);
    return;
  }
  reply(request, http::status::not_found, "not found\n");
}

void HttpSession::redirect(const Request& request, std::string_view mount, std::string_view to) {
  // A directory is served from its URL with a trailing slash (so that its page's relative links
  // resolve inside it); the redirect keeps the mount and the query.
  const std::string_view target(request.target().data(), request.target().size());
  http::response<http::string_body> res{http::status::moved_permanently, request.version()};
  res.set(http::field::location, std::string(mount) + std::string(to) + std::string(target.substr(path_of(target).size())));
  res.keep_alive(request.keep_alive());
  res.prepare_payload();
  respond(std::move(res));
}

void HttpSession::serve_file(Request&& request, std::string_view mount, std::string_view path,
                             const std::string& root) {
  if (path.empty()) {  // the mount itself, as in `/client`
    redirect(request, mount, "/");
    return;
  }
  FileReader* files = worker_.shared.files.get();
  if (!files) {  // a server with static directories has its file thread; a bare worker does not
    reply(request, http::status::not_found, "not found\n");
    return;
  }
  // The file thread resolves and opens the file; this worker goes on with its rooms meanwhile.
  file_request_ = std::move(request);
  files->open(root, std::string(path), stream_.get_executor(),
              [self = shared_from_this(), mount = std::string(mount)](std::shared_ptr<OpenedFile> file) {
                self->on_file_opened(mount, std::move(file));
              });
}

void HttpSession::on_file_opened(std::string mount, std::shared_ptr<OpenedFile> file) {
  const Request request = std::move(file_request_);
  file_request_ = {};
  switch (file->lookup.kind) {
    case StaticLookup::Kind::bad_request:
      reply(request, http::status::bad_request, "malformed path\n");
      return;
    case StaticLookup::Kind::forbidden:
      reply(request, http::status::forbidden, "forbidden\n");
      return;
    case StaticLookup::Kind::not_found:
      reply(request, http::status::not_found, "not found\n");
      return;
    case StaticLookup::Kind::redirect:
      redirect(request, mount, file->lookup.location);
      return;
    case StaticLookup::Kind::file:
      break;
  }
  if (!file->error.empty()) {
    spdlog::debug("cannot serve {}: {}", file->lookup.path.string(), file->error);
    reply(request, http::status::not_found, "not found\n");
    return;
  }
  const auto type = mime_type(file->lookup.path.filename().string());
  if (request.method() == http::verb::head) {
    http::response<http::empty_body> res{http::status::ok, request.version()};
    res.set(http::field::content_type, type);
    res.content_length(file->size);
    res.keep_alive(request.keep_alive());
    respond(std::move(res));
    return;
  }
  if (file->piece.size() == file->size) {  // all of it came with the opening
    http::response<http::string_body> res{http::status::ok, request.version()};
    res.set(http::field::content_type, type);
    res.body() = std::move(file->piece);
    res.content_length(file->size);
    res.keep_alive(request.keep_alive());
    respond(std::move(res));
    return;
  }
  http::response<http::buffer_body> res{http::status::ok, request.version()};
  res.set(http::field::server, "stateroom");
  res.set(http::field::content_type, type);
  res.content_length(file->size);
  res.keep_alive(request.keep_alive());
  auto download = std::make_shared<Download>(std::move(res));
  download->piece = std::move(file->piece);
  download->offset = download->piece.size();
  download->file = std::move(file);
  write_piece(std::move(download));
}

void HttpSession::write_piece(std::shared_ptr<Download> download) {
  auto& body = download->response.body();
  body.data = download->piece.data();
  body.size = download->piece.size();
  body.more = download->offset < download->file->size;
  stream_.expires_after(http_idle_timeout);  // a slow reader gets this long per piece
  http::async_write(stream_, download->serializer,
                    [self = shared_from_this(), download](beast::error_code ec, std::size_t) {
                      if (ec == http::error::need_buffer) ec = {};  // the piece is out; more to come
                      if (ec) return;                                // the connection is gone
                      if (!download->serializer.is_done()) {
                        self->worker_.shared.files->read(
                            download->file, download->offset, self->stream_.get_executor(),
                            [self, download](std::string piece, std::string error) {
                              if (!error.empty()) {
                                // The Content-Length can no longer be kept: end the connection.
                                spdlog::warn("stopped serving {}: {}", download->file->lookup.path.string(), error);
                                beast::error_code ignored;
                                self->stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
                                return;
                              }
                              download->offset += piece.size();
                              download->piece = std::move(piece);
                              self->write_piece(download);
                            });
                        return;
                      }
                      if (download->response.need_eof()) {
                        beast::error_code ignored;
                        self->stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
                        return;
                      }
                      self->read_next();
                    });
}

void HttpSession::reply(const Request& request, http::status status, std::string_view body,
                        std::string_view content_type) {
  http::response<http::string_body> res{status, request.version()};
  res.set(http::field::content_type, content_type);
  res.keep_alive(request.keep_alive());
  if (request.method() != http::verb::head) res.body() = std::string(body);
  res.prepare_payload();
  if (request.method() == http::verb::head) res.content_length(body.size());
  respond(std::move(res));
}

template <class Response>
void HttpSession::respond(Response&& response) {
  response.set(http::field::server, "stateroom");
  auto message = std::make_shared<std::decay_t<Response>>(std::forward<Response>(response));
  http::async_write(stream_, *message,
                    [self = shared_from_this(), message](beast::error_code ec, std::size_t) {
                      if (ec) return;
                      if (message->need_eof()) {
                        beast::error_code ignored;
                        self->stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
                        return;
                      }
                      self->read_next();
                    });
}

std::optional<protocol::DeflateAgreement> HttpSession::negotiate_compression(const Request& request) const {
  // The header may come more than once: its values form one list (RFC 9110 §5.3).
  std::string offers;
  for (const auto& field : boost::make_iterator_range(request.equal_range(http::field::sec_websocket_extensions))) {
    if (!offers.empty()) offers += ", ";
    offers.append(field.value().data(), field.value().size());
  }
  if (offers.empty()) return std::nullopt;
  return protocol::negotiate_deflate(offers, worker_.shared.options.compression_window_bits);
}

void HttpSession::upgrade(Request&& request, std::string room_id) {
  auto refuse = [&](http::status status, std::string body) {
    auto res = http::response<http::string_body>{status, request.version()};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    if (status == http::status::upgrade_required) res.set(http::field::sec_websocket_version, "13");
    if (status == http::status::unauthorized) res.set(http::field::www_authenticate, "Bearer");
    res.body() = std::move(body);
    res.keep_alive(false);
    res.prepare_payload();
    respond(std::move(res));
  };
  if (request[http::field::sec_websocket_version] != "13") {
    refuse(http::status::upgrade_required, "this server speaks WebSocket version 13\n");
    return;
  }
  const auto key = request[http::field::sec_websocket_key];
  if (!protocol::is_valid_client_key(std::string_view(key.data(), key.size()))) {
    refuse(http::status::bad_request, "Sec-WebSocket-Key must be the base64 encoding of 16 bytes\n");
    return;
  }
  if (buffer_.size() != 0) {
    // A client must wait for the handshake response before sending frames.
    refuse(http::status::bad_request, "data sent before the WebSocket handshake completed\n");
    return;
  }
  if (Verdict verdict = worker_.shared.gate.check(UpgradeRequest(request, room_id, ticket_.address()),
                                                  *worker_.shared.factory.load()->factory);
      !verdict.accepted()) {
    const bool unauthorized = verdict.kind == Verdict::Kind::unauthorized;
    refuse(unauthorized ? http::status::unauthorized : http::status::forbidden, std::move(verdict.reason) + "\n");
    return;
  }
  Handshake accept{.accept_key = protocol::accept_key(std::string_view(key.data(), key.size()))};
  if (worker_.shared.options.compression) accept.deflate = negotiate_compression(request);
  stream_.expires_never();
  Worker& target = worker_.shared.worker_for_room(room_id);
  asio::ip::tcp::socket socket = stream_.release_socket();
  if (&target != &worker_) {
    // Re-home the connection on the room's worker: its I/O then runs beside the room, and the
    // room's sends reach it without crossing threads.
    beast::error_code ec;
    const auto ip_protocol = socket.local_endpoint(ec).protocol();
    const auto fd = socket.release(ec);
    if (ec) {
      spdlog::warn("could not hand a connection to room '{}': {}", room_id, ec.message());
      return;
    }
    asio::post(target.ioc, [&target, ip_protocol, fd = OwnedFd(fd), accept = std::move(accept),
                            room_id = std::move(room_id), ticket = std::move(ticket_)]() mutable {
      asio::ip::tcp::socket moved(target.ioc);
      beast::error_code ec;
      const int raw = fd.release();
      moved.assign(ip_protocol, raw, ec);
      if (ec) {
        ::close(raw);
        return;
      }
      std::make_shared<WebSocketSession>(target, std::move(moved), std::move(accept), std::move(room_id),
                                         std::move(ticket))
          ->start();
    });
    return;
  }
  std::make_shared<WebSocketSession>(target, std::move(socket), std::move(accept), std::move(room_id),
                                     std::move(ticket_))
      ->start();
}

}  // namespace stateroom::server
