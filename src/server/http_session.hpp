// HttpSession: a plain HTTP connection; answers requests and hands WebSocket upgrades to rooms.
#pragma once

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <memory>
#include <optional>

namespace stateroom::server {

struct Worker;

/// Reads requests off one connection (keep-alive) and answers them: `/status`, static files,
/// errors. A WebSocket upgrade to `/ws...` moves the socket to the room's worker, where a
/// WebSocketSession takes over.
class HttpSession final : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(Worker& worker, boost::asio::ip::tcp::socket socket);
  void start();

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;

  void read_next();
  void on_read(boost::beast::error_code ec);
  void handle(Request&& request);
  void upgrade(Request&& request, std::string room_id);
  template <class Response>
  void respond(Response&& response);
  void reply(const Request& request, boost::beast::http::status status, std::string_view body,
             std::string_view content_type = "text/plain; charset=utf-8");
  /// Serves `path` (the URL path below `mount`, the prefix the directory `root` is served at).
  void serve_file(const Request& request, std::string_view mount, std::string_view path, const std::string& root);

  Worker& worker_;
  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
};

}  // namespace stateroom::server
