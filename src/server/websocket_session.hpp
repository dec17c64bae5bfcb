// WebSocketSession: one client's WebSocket connection, on its room's worker thread.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "stateroom/client_id.hpp"
#include "stateroom/message_payload.hpp"

namespace stateroom::server {

struct Worker;
class Room;

using Request = boost::beast::http::request<boost::beast::http::string_body>;

/// One client: completes the WebSocket handshake, joins its room, reads messages into the room
/// and writes the room's messages out through a bounded queue. Pings an idle client and closes
/// one that stays silent. All of it on the room's worker thread.
class WebSocketSession final : public std::enable_shared_from_this<WebSocketSession> {
 public:
  WebSocketSession(Worker& worker, boost::asio::ip::tcp::socket socket, Request request, std::string room_id);
  ~WebSocketSession();

  /// Starts the handshake; the session keeps itself alive from here on.
  void start();

  /// Queues one message from the room. Returns false when the queue overflowed: the session is
  /// then closing with 1008 and the caller must remove it from the room.
  bool enqueue(std::shared_ptr<const MessagePayload> message);

  /// Closes the connection on the room's behalf, after the queued messages. The session no
  /// longer belongs to the room (no `disconnect` is delivered from here on).
  void close_from_room(boost::beast::websocket::close_code code, std::string_view reason);

  /// Set by the room when the session joins it.
  void attach(std::shared_ptr<Room> room, ClientId id);

 private:
  enum class Flush { queued, drop };

  void on_accept(boost::beast::error_code ec);
  void read_next();
  void on_read(boost::beast::error_code ec);
  void write_next();
  void on_write(boost::beast::error_code ec);
  void arm_keepalive();
  void on_keepalive();
  /// Starts the close handshake (once) and a deadline after which the socket is dropped.
  void begin_close(boost::beast::websocket::close_code code, std::string_view reason, Flush flush);
  void send_close();
  /// Leaves the room (delivering `disconnect`) if still in one.
  void leave_room();
  void log_closed(boost::beast::error_code ec);

  Worker& worker_;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  Request request_;
  const std::string room_id_;
  std::string remote_;
  std::string read_buffer_;
  std::optional<boost::asio::dynamic_string_buffer<char, std::char_traits<char>, std::allocator<char>>>
      read_target_;

  std::shared_ptr<Room> room_;
  ClientId id_{};

  std::deque<std::shared_ptr<const MessagePayload>> queue_;
  std::size_t queued_bytes_ = 0;
  bool writing_ = false;

  bool closing_ = false;     ///< a close was decided; nothing more is queued
  bool close_sent_ = false;  ///< async_close was issued
  boost::beast::websocket::close_reason close_reason_;
  boost::asio::steady_timer close_deadline_;

  std::chrono::steady_clock::time_point last_heard_;
  boost::asio::steady_timer keepalive_;
  bool ping_in_flight_ = false;
};

}  // namespace stateroom::server
