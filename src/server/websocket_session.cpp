#include "websocket_session.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/buffers_iterator.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/version.hpp>

#include "room.hpp"
#include "worker.hpp"

namespace stateroom::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using Clock = std::chrono::steady_clock;

WebSocketSession::WebSocketSession(Worker& worker, asio::ip::tcp::socket socket, Request request,
                                   std::string room_id)
    : worker_(worker),
      ws_(std::move(socket)),
      request_(std::move(request)),
      room_id_(std::move(room_id)),
      close_deadline_(worker.ioc),
      keepalive_(worker.ioc) {
  ++worker_.websocket_sessions;
  boost::system::error_code ec;
  const auto remote = beast::get_lowest_layer(ws_).socket().remote_endpoint(ec);
  if (!ec) {
    remote_ =
        remote.address().is_v6() ? "[" + remote.address().to_string() + "]" : remote.address().to_string();
    remote_ += ":" + std::to_string(remote.port());
  }
}

WebSocketSession::~WebSocketSession() {
  --worker_.websocket_sessions;
}

void WebSocketSession::start() {
  const auto& options = worker_.shared.options;
  websocket::stream_base::timeout timeout{};
  timeout.handshake_timeout = options.close_timeout;      // bounds the opening and closing handshakes
  timeout.idle_timeout = websocket::stream_base::none();  // keep-alive is ours (ping interval, idle timeout)
  timeout.keep_alive_pings = false;
  ws_.set_option(timeout);
  ws_.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(beast::http::field::server, "stateroom"); }));
  ws_.read_message_max(options.max_message_bytes);
  ws_.control_callback([this](websocket::frame_type, beast::string_view) { last_heard_ = Clock::now(); });
  ws_.async_accept(request_, [self = shared_from_this()](beast::error_code ec) { self->on_accept(ec); });
}

void WebSocketSession::attach(std::shared_ptr<Room> room, ClientId id) {
  room_ = std::move(room);
  id_ = id;
}

void WebSocketSession::on_accept(beast::error_code ec) {
  if (ec) {
    spdlog::debug("room '{}': WebSocket handshake with {} failed: {}", room_id_, remote_, ec.message());
    return;
  }
  request_ = {};
  last_heard_ = Clock::now();
  read_next();  // also carries the close handshake, whatever happens next
  if (worker_.shutting_down) {
    begin_close(websocket::close_code::going_away, "server shutting down", Flush::drop);
    return;
  }
  auto room = worker_.find_or_create_room(room_id_);
  if (!room) {
    begin_close(websocket::close_code::internal_error, "room failed", Flush::drop);
    return;
  }
  if (!room->join(shared_from_this())) return;  // the room failed in `connect` and closed us
  spdlog::info("room '{}' client {} connected from {}", room_id_, id_.value, remote_);
  arm_keepalive();
}

void WebSocketSession::read_next() {
  // Frames are read straight into a string that then becomes the message payload: no copy.
  read_target_.emplace(read_buffer_);
  ws_.async_read(*read_target_,
                 [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
}

void WebSocketSession::on_read(beast::error_code ec) {
  if (ec) {
    leave_room();
    log_closed(ec);
    keepalive_.cancel();
    close_deadline_.cancel();
    return;
  }
  last_heard_ = Clock::now();
  const auto kind = ws_.got_text() ? PayloadKind::text : PayloadKind::binary;
  MessagePayload payload = MessagePayload::of_kind(kind, std::move(read_buffer_));
  read_buffer_.clear();
  if (room_ && !closing_) room_->message(id_, std::move(payload));
  read_next();
}

bool WebSocketSession::enqueue(std::shared_ptr<const MessagePayload> message) {
  if (closing_) return true;
  const auto limit = worker_.shared.options.max_queued_bytes;
  if (!queue_.empty() && queued_bytes_ + message->size() > limit) {
    spdlog::warn("room '{}' client {} reads too slowly ({} bytes queued, limit {}): closing with 1008",
                 room_id_, id_.value, queued_bytes_, limit);
    room_.reset();  // the room removes us and delivers `disconnect`
    begin_close(websocket::close_code::policy_error, "send queue full", Flush::drop);
    return false;
  }
  queued_bytes_ += message->size();
  queue_.push_back(std::move(message));
  if (!writing_) write_next();
  return true;
}

void WebSocketSession::write_next() {
  if (queue_.empty()) {
    if (closing_ && !close_sent_) send_close();
    return;
  }
  writing_ = true;
  const auto& front = *queue_.front();
  ws_.text(front.is_text());
  ws_.async_write(asio::buffer(front.view()),
                  [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_write(ec); });
}

void WebSocketSession::on_write(beast::error_code ec) {
  writing_ = false;
  queued_bytes_ -= queue_.front()->size();
  queue_.pop_front();
  if (ec) {
    // The connection is gone; the pending read reports it and leaves the room.
    queue_.clear();
    queued_bytes_ = 0;
    return;
  }
  write_next();
}

void WebSocketSession::close_from_room(websocket::close_code code, std::string_view reason) {
  room_.reset();
  begin_close(code, reason, Flush::queued);
}

void WebSocketSession::begin_close(websocket::close_code code, std::string_view reason, Flush flush) {
  if (closing_) return;
  closing_ = true;
  close_reason_ = websocket::close_reason(code, beast::string_view(reason.data(), reason.size()));
  keepalive_.cancel();
  if (flush == Flush::drop) {
    // Keep only the message being written: a frame cannot be cut short.
    const std::size_t keep = writing_ ? 1 : 0;
    while (queue_.size() > keep) {
      queued_bytes_ -= queue_.back()->size();
      queue_.pop_back();
    }
  }
  close_deadline_.expires_after(worker_.shared.options.close_timeout);
  close_deadline_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec) return;
    spdlog::debug("room '{}' client {}: close handshake timed out; dropping the connection", self->room_id_,
                  self->id_.value);
    beast::get_lowest_layer(self->ws_).close();
  });
  if (!writing_) write_next();
}

void WebSocketSession::send_close() {
  close_sent_ = true;
  ws_.async_close(close_reason_, [self = shared_from_this()](beast::error_code ec) {
    if (ec)
      spdlog::debug("room '{}' client {}: close failed: {}", self->room_id_, self->id_.value, ec.message());
  });
}

void WebSocketSession::leave_room() {
  if (!room_) return;
  auto room = std::move(room_);
  room->leave(id_);
}

void WebSocketSession::arm_keepalive() {
  if (closing_) return;
  const auto& options = worker_.shared.options;
  const auto silent = Clock::now() - last_heard_;
  const bool pinged = ping_in_flight_ || silent >= options.ping_interval;
  keepalive_.expires_at(last_heard_ + (pinged ? options.idle_timeout : options.ping_interval));
  keepalive_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec) self->on_keepalive();
  });
}

void WebSocketSession::on_keepalive() {
  if (closing_) return;
  const auto& options = worker_.shared.options;
  const auto silent = Clock::now() - last_heard_;
  if (silent >= options.idle_timeout) {
    spdlog::info("room '{}' client {}: silent for {} ms, closing", room_id_, id_.value,
                 std::chrono::duration_cast<std::chrono::milliseconds>(silent).count());
    leave_room();
    begin_close(websocket::close_code::going_away, "idle timeout", Flush::drop);
    return;
  }
  if (silent >= options.ping_interval && !ping_in_flight_) {
    ping_in_flight_ = true;
    ws_.async_ping({}, [self = shared_from_this()](beast::error_code) { self->ping_in_flight_ = false; });
  }
  arm_keepalive();
}

void WebSocketSession::log_closed(beast::error_code ec) {
  if (id_.value == 0) return;  // never joined a room
  std::string how;
  if (ec == websocket::error::closed) {
    const auto& reason = ws_.reason();
    how = close_sent_ ? "closed by the server" : "closed by the client";
    how += ", code " + std::to_string(reason.code);
    if (!reason.reason.empty()) how += " '" + std::string(reason.reason.data(), reason.reason.size()) + "'";
  } else if (close_reason_.code != websocket::close_code::none) {
    how = "closed by the server, code " + std::to_string(close_reason_.code);
  } else {
    how = ec.message();
  }
  spdlog::info("room '{}' client {} disconnected ({})", room_id_, id_.value, how);
}

}  // namespace stateroom::server
