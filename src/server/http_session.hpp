// HttpSession: a plain HTTP connection; answers requests and hands WebSocket upgrades to rooms.
#pragma once

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <memory>
#include <optional>
#include <string>

#include "admission.hpp"
#include "protocol/deflate.hpp"

namespace stateroom::server {

struct Worker;
struct OpenedFile;

/// Reads requests off one connection (keep-alive) and answers them: `/status`, static files,
/// errors. A WebSocket upgrade to `/ws...` moves the socket to the room's worker, where a
/// WebSocketSession takes over. Static files are read on the server's file thread (FileReader).
class HttpSession final : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(Worker& worker, boost::asio::ip::tcp::socket socket, ConnectionTicket ticket);
  void start();

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;

  void read_next();
  /// Reads the rest of a request whose first bytes are in the buffer, within the request timeout.
  void read_request();
  void on_read(boost::beast::error_code ec);
  void handle(Request&& request);
  void upgrade(Request&& request, std::string room_id);
  /// permessage-deflate for this upgrade: the client's first acceptable offer, if any.
  std::optional<protocol::DeflateAgreement> negotiate_compression(const Request& request) const;
  template <class Response>
  void respond(Response&& response);
  void reply(const Request& request, boost::beast::http::status status, std::string_view body,
             std::string_view content_type = "text/plain; charset=utf-8");
  /// Serves `path` (the URL path below `mount`, the prefix the directory `root` is served at).
  void serve_file(Request&& request, std::string_view mount, std::string_view path, const std::string& root);
  /// Answers the request in `file_request_` once the file thread has opened `file`.
  void on_file_opened(std::string mount, std::shared_ptr<OpenedFile> file);
  void redirect(const Request& request, std::string_view mount, std::string_view to);

  /// A file too large for one piece, written as the file thread reads it.
  struct Download {
    explicit Download(boost::beast::http::response<boost::beast::http::buffer_body> r) : response(std::move(r)) {}
    boost::beast::http::response<boost::beast::http::buffer_body> response;
    boost::beast::http::response_serializer<boost::beast::http::buffer_body> serializer{response};
    std::shared_ptr<OpenedFile> file;
    std::string piece;          ///< being written
    std::uint64_t offset = 0;   ///< of the next piece
  };
  void write_piece(std::shared_ptr<Download> download);

  Worker& worker_;
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  Request file_request_;  ///< the request for a static file, while the file thread opens it
  ConnectionTicket ticket_;  ///< its place in the connection budget, handed to the WebSocket session
};

}  // namespace stateroom::server
