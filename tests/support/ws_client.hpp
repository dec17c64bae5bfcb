// A real WebSocket client for tests (Boost.Beast), with timeouts on every step.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace stateroom::test {

using namespace std::chrono_literals;

/// What one read saw.
struct Received {
  enum class Kind { text, binary, closed, error } kind = Kind::error;
  std::string data;              ///< the message (text, binary) or the close reason / error (closed, error)
  std::uint16_t close_code = 0;  ///< Kind::closed: the code of the server's close frame

  bool is_text(std::string_view expected) const { return kind == Kind::text && data == expected; }
};

class WsClient {
 public:
  /// Connects to ws://host:port{target}. `receive_buffer` > 0 shrinks the socket's receive buffer
  /// (a slow reader fills up sooner). Returns null after `timeout` or on failure (see `error`).
  static std::unique_ptr<WsClient> connect(std::uint16_t port, const std::string& target,
                                           std::chrono::milliseconds timeout = 5s, int receive_buffer = 0,
                                           const std::string& host = "127.0.0.1",
                                           std::string* error = nullptr);

  /// connect, offering permessage-deflate with Beast's `deflate` settings (its own implementation:
  /// the server's is checked against another). extensions() then holds the server's answer.
  static std::unique_ptr<WsClient> connect_compressed(std::uint16_t port, const std::string& target,
                                                      const boost::beast::websocket::permessage_deflate& deflate,
                                                      std::string* error = nullptr);
  /// The Sec-WebSocket-Extensions of the server's 101 (empty when it agreed to none).
  const std::string& extensions() const { return extensions_; }

  void send_text(const std::string& text, std::chrono::milliseconds timeout = 5s);
  void send_binary(const std::string& bytes, std::chrono::milliseconds timeout = 5s);
  /// The next message, the close, or nothing when `timeout` passes first (the read then stays
  /// pending and the next call continues it).
  std::optional<Received> read(std::chrono::milliseconds timeout = 5s);
  /// Reads until a text message equal to `text` arrives; false on timeout or close.
  bool read_until(const std::string& text, std::chrono::milliseconds timeout = 5s);
  /// Reads (discarding messages) until the close; its code, or nothing on timeout.
  std::optional<std::uint16_t> read_until_closed(std::chrono::milliseconds timeout = 5s);
  /// Sends a close frame with `code` and waits for the server's.
  void close(std::uint16_t code = 1000, std::chrono::milliseconds timeout = 5s);
  /// Drops the TCP connection without a close handshake.
  void drop();

 private:
  WsClient() = default;
  static std::unique_ptr<WsClient> open(std::uint16_t port, const std::string& target, std::chrono::milliseconds timeout,
                                        int receive_buffer, const std::string& host, std::string* error,
                                        const boost::beast::websocket::permessage_deflate* deflate);
  bool run_until(bool& done, std::chrono::milliseconds timeout);
  void write(const std::string& data, bool binary, std::chrono::milliseconds timeout);

  boost::asio::io_context ioc_;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_{ioc_};
  boost::beast::flat_buffer buffer_;
  bool reading_ = false;
  bool read_done_ = false;
  boost::beast::error_code read_error_;
  std::string extensions_;
};

/// A plain HTTP/1.1 GET (or HEAD) with a raw target; returns status, headers and body.
struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string location;
  std::string www_authenticate;
  std::string body;
  std::size_t content_length = 0;
};
HttpResponse http_request(std::uint16_t port, const std::string& target, const std::string& method = "GET",
                          const std::string& upgrade_header = "");

/// HTTP header fields to add to a request: name, value.
using Headers = std::vector<std::pair<std::string, std::string>>;
/// A valid WebSocket upgrade request for `target`, with `headers` added (Origin, Authorization...):
/// the server's answer (101 when it accepts the upgrade; the connection is then dropped).
HttpResponse upgrade_request(std::uint16_t port, const std::string& target, const Headers& headers = {});

}  // namespace stateroom::test
