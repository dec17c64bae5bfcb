#include "websocket_session.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <array>

#include "room.hpp"
#include "worker.hpp"

namespace stateroom::server {

namespace asio = boost::asio;
using protocol::CloseCode;
using protocol::Opcode;

namespace {

/// What one queued frame costs beyond its bytes: its entry in the queue's bookkeeping. Counting it
/// bounds a flood of empty messages as well as a flood of large ones.
constexpr std::size_t frame_overhead = 16;
/// Buffers in one gathered write.
constexpr std::size_t max_write_buffers = 16;
/// Reads in a row from one socket before the others get their turn.
constexpr int reads_per_turn = 4;
/// Output buffer kept by an active connection between passes.
constexpr std::size_t max_kept_buffer = 64 * 1024;

std::string describe_remote(const asio::ip::tcp::socket& socket) {
  boost::system::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  if (ec) return "an unknown address";
  const std::string address = remote.address().to_string();
  return (remote.address().is_v6() ? "[" + address + "]" : address) + ":" + std::to_string(remote.port());
}

}  // namespace

void Worker::cork(std::shared_ptr<WebSocketSession> session) {
  if (corked.empty()) {
    asio::post(ioc, [this] {
      flushing.swap(corked);
      for (auto& s : flushing) s->flush();
      flushing.clear();
    });
  }
  corked.push_back(std::move(session));
}

WebSocketSession::WebSocketSession(Worker& worker, asio::ip::tcp::socket socket, std::string accept_key,
                                   std::string room_id)
    : worker_(worker),
      socket_(std::move(socket)),
      timer_(worker.ioc),
      parser_({.max_message_size = worker.shared.options.max_message_bytes}),
      room_id_(std::move(room_id)),
      accept_key_(std::move(accept_key)),
      remote_(describe_remote(socket_)) {
  ++worker_.websocket_sessions;
}

WebSocketSession::~WebSocketSession() {
  --worker_.websocket_sessions;
}

void WebSocketSession::start() {
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);
  if (ec) {
    spdlog::debug("room '{}': cannot use the connection from {}: {}", room_id_, remote_, ec.message());
    return;
  }
  const std::string response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
      accept_key_ + "\r\nServer: stateroom\r\n\r\n";
  out_.append({reinterpret_cast<const std::uint8_t*>(response.data()), response.size()});
  out_.end_frame();
  accept_key_ = {};
  last_heard_ = Clock::now();
  cork();
  wait_readable();  // also carries the close handshake, whatever happens next
  if (worker_.shutting_down) {
    begin_close(CloseCode::going_away, "server shutting down", Drop::none);
    return;
  }
  auto room = worker_.find_or_create_room(room_id_);
  if (!room) {
    begin_close(CloseCode::internal_error, "room failed", Drop::none);
    return;
  }
  room_ = room;  // a member from here: the room's `connect` may already send to us
  const auto id = room->join(*this);
  if (!id) return;  // the room failed in `connect` and closed us
  id_ = *id;
  if (room_) spdlog::info("room '{}' client {} connected from {}", room_id_, id_.value, remote_);
  arm_timer();
}

// --- reading --------------------------------------------------------------------------------------

void WebSocketSession::wait_readable() {
  if (read_waiting_ || done_ || reading_paused_) return;
  read_waiting_ = true;
  socket_.async_wait(asio::ip::tcp::socket::wait_read, [self = shared_from_this()](boost::system::error_code ec) {
    self->read_waiting_ = false;
    if (ec || self->done_) return;
    self->on_readable();
  });
}

void WebSocketSession::on_readable() {
  auto* buffer = worker_.read_buffer.get();
  for (int turn = 0; turn < reads_per_turn; ++turn) {
    if (done_ || reading_paused_) return;
    boost::system::error_code ec;
    const std::size_t n = socket_.read_some(asio::buffer(buffer, Worker::read_buffer_size), ec);
    if (ec == asio::error::would_block) break;
    if (ec == asio::error::eof) {
      on_peer_gone("closed without a close frame (1006)");
      return;
    }
    if (ec) {
      on_peer_gone(ec.message());
      return;
    }
    on_bytes({buffer, n});
    if (n < Worker::read_buffer_size) break;  // drained for now: the next edge wakes us
    if (turn + 1 == reads_per_turn) {
      // More is waiting: continue after the other ready work.
      asio::post(worker_.ioc, [self = shared_from_this()] {
        if (!self->done_ && !self->reading_paused_) self->on_readable();
      });
      return;
    }
  }
  wait_readable();
}

void WebSocketSession::on_bytes(std::span<std::uint8_t> data) {
  last_heard_ = Clock::now();
  pinged_ = false;
  if (lingering_) return;  // failed: what still comes is read and discarded
  // The messages of this read reach the room together (one call of a WebAssembly guest for all of
  // them), handed over in place: the room copies them only if it must queue them. A message the
  // parser gathered from fragments lives in its buffer, which the next message reuses: it goes at
  // once, with those before it.
  const std::uint8_t* const read_begin = data.data();
  const std::uint8_t* const read_end = read_begin + data.size();
  std::vector<MessagePayload>& batch = worker_.inbound;
  batch.clear();
  auto hand_over = [&] {
    if (batch.empty()) return;
    if (room_ && !room_->messages(id_, batch, *this)) reading_paused_ = true;
    batch.clear();
  };
  for (;;) {
    const protocol::Event e = parser_.next(data);
    switch (e.kind) {
      case protocol::Event::Kind::need_more:
        hand_over();
        return;
      case protocol::Event::Kind::message:
        if (room_) {
          const auto kind = e.opcode == Opcode::text ? PayloadKind::text : PayloadKind::binary;
          batch.push_back(MessagePayload::view(kind, e.payload));
          const bool in_place = e.payload.empty() || (e.payload.data() >= read_begin && e.payload.data() < read_end);
          if (!in_place) hand_over();
        }
        break;
      case protocol::Event::Kind::ping:
        if (!closing_) queue_control(Opcode::pong, e.payload);
        break;
      case protocol::Event::Kind::pong:
        break;
      case protocol::Event::Kind::close:
        hand_over();
        if (!done_) on_peer_close(e.close_code, e.reason);
        return;
      case protocol::Event::Kind::error:
        hand_over();
        if (!done_) fail_connection(static_cast<CloseCode>(e.close_code), e.reason);
        return;
    }
    if (done_) return;
  }
}

void WebSocketSession::on_peer_close(std::uint16_t code, std::string_view reason) {
  peer_closed_ = true;
  if (closing_) {
    // The answer to our close: the handshake is complete.
    if (id_.value)
      spdlog::info("room '{}' client {} disconnected (closed by the server, code {})", room_id_, id_.value,
                   close_code_);
    if (out_.empty()) finish();
    return;
  }
  if (id_.value) {
    if (reason.empty()) {
      spdlog::info("room '{}' client {} disconnected (closed by the client, code {})", room_id_, id_.value, code);
    } else {
      spdlog::info("room '{}' client {} disconnected (closed by the client, code {} '{}')", room_id_, id_.value,
                   code, reason);
    }
  }
  leave_room();
  // Echo the code (none for a close frame that had none).
  const auto echoed = code == static_cast<std::uint16_t>(CloseCode::no_status) ? CloseCode::none
                                                                                 : static_cast<CloseCode>(code);
  begin_close(echoed, {}, Drop::unstarted);
}

void WebSocketSession::on_peer_gone(std::string_view how) {
  if (id_.value && room_) spdlog::info("room '{}' client {} disconnected ({})", room_id_, id_.value, how);
  leave_room();
  finish();
}

void WebSocketSession::fail_connection(CloseCode code, std::string_view reason) {
  if (id_.value)
    spdlog::info("room '{}' client {} disconnected (closed by the server, code {}: {})", room_id_, id_.value,
                 static_cast<int>(code), reason);
  leave_room();
  lingering_ = true;
  // What the room answered before the bad frame still goes out, ahead of the close frame.
  begin_close(code, reason, Drop::none);
}

void WebSocketSession::resume_reading() {
  if (!reading_paused_) return;
  reading_paused_ = false;
  // Bytes may be waiting already, with no new edge to announce them: read after this pass.
  asio::post(worker_.ioc, [self = shared_from_this()] {
    if (!self->done_ && !self->reading_paused_ && !self->read_waiting_) self->on_readable();
  });
}

// --- writing --------------------------------------------------------------------------------------

std::size_t WebSocketSession::queued_charge() const noexcept {
  return out_.size() + out_.frames() * frame_overhead;
}

SendResult WebSocketSession::send(const OutgoingMessage& message) {
  if (closing_ || done_) return SendResult::sent;  // no longer a member: nothing more is queued
  const std::size_t limit = worker_.shared.options.max_queued_bytes;
  const std::size_t charge = message.wire_size() + frame_overhead;
  if (queued_charge() + charge > limit) {
    spdlog::warn("room '{}' client {} reads too slowly ({} bytes queued, {} more, limit {}): closing with 1008",
                 room_id_, id_.value, queued_charge(), charge, limit);
    room_.reset();  // the room removes us and delivers `disconnect`
    begin_close(CloseCode::policy_violation, "send queue full", Drop::unstarted);
    return SendResult::dropped;
  }
  out_.append(message);
  cork();
  return queued_charge() > limit / 2 ? SendResult::backpressure : SendResult::sent;
}

void WebSocketSession::queue_control(Opcode opcode, std::span<const std::uint8_t> payload) {
  std::uint8_t header[protocol::max_server_header_size];
  out_.append({header, protocol::write_header(header, {.opcode = opcode, .payload_size = payload.size()})});
  out_.append(payload);
  out_.end_frame();
  cork();
}

void WebSocketSession::cork() {
  if (corked_ || done_) return;
  corked_ = true;
  worker_.cork(shared_from_this());
}

void WebSocketSession::flush() {
  corked_ = false;
  if (write_waiting_ || done_) return;
  while (!out_.empty()) {
    std::array<std::span<const std::uint8_t>, max_write_buffers> pieces;
    const std::size_t count = out_.gather(pieces);
    std::array<asio::const_buffer, max_write_buffers> buffers;
    std::size_t total = 0;
    for (std::size_t i = 0; i < count; ++i) {
      buffers[i] = asio::const_buffer(pieces[i].data(), pieces[i].size());
      total += pieces[i].size();
    }
    boost::system::error_code ec;
    const std::size_t written = socket_.write_some(std::span(buffers.data(), count), ec);
    if (ec == asio::error::would_block) {
      wait_writable();
      return;
    }
    if (ec) {
      // The connection is gone; the read side reports it and leaves the room.
      spdlog::debug("room '{}' client {}: write failed: {}", room_id_, id_.value, ec.message());
      on_peer_gone(ec.message());
      return;
    }
    out_.consume(written);
    if (written < total) {
      wait_writable();
      return;
    }
  }
  // An active connection keeps its buffer from pass to pass; a large one goes at once, and a small
  // one when the connection falls silent (on_timer).
  if (out_.memory() > max_kept_buffer) out_.release_memory();
  if (!closing_) return;
  if (peer_closed_) {
    finish();  // our close frame answered theirs, or theirs answered ours
  } else if (lingering_ && !shut_down_send_) {
    // Failed: the close frame is out; half-close and read what still comes until EOF.
    shut_down_send_ = true;
    boost::system::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  }
}

void WebSocketSession::wait_writable() {
  write_waiting_ = true;
  stalled_since_ = Clock::now();
  arm_timer();
  socket_.async_wait(asio::ip::tcp::socket::wait_write, [self = shared_from_this()](boost::system::error_code ec) {
    self->write_waiting_ = false;
    if (ec || self->done_) return;
    self->flush();
  });
}

// --- closing --------------------------------------------------------------------------------------

void WebSocketSession::close(CloseCode code, std::string_view reason) {
  room_.reset();
  begin_close(code, reason, Drop::none);
  resume_reading();  // no longer held back by the room: the client's close frame must be read
}

void WebSocketSession::begin_close(CloseCode code, std::string_view reason, Drop drop) {
  if (closing_ || done_) return;
  closing_ = true;
  close_code_ = static_cast<std::uint16_t>(code);
  if (drop == Drop::unstarted) out_.drop_unstarted();
  std::uint8_t payload[protocol::max_control_payload];
  const std::size_t size = protocol::write_close_payload(payload, close_code_, reason);
  queue_control(Opcode::close, {payload, size});
  close_deadline_ = Clock::now() + worker_.shared.options.close_timeout;
  arm_timer();
}

void WebSocketSession::finish() {
  if (done_) return;
  done_ = true;
  leave_room();
  boost::system::error_code ignored;
  timer_.cancel();
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

void WebSocketSession::leave_room() {
  if (!room_) return;
  auto room = std::move(room_);
  room->leave(id_);
}

// --- deadlines ------------------------------------------------------------------------------------

void WebSocketSession::arm_timer() {
  if (done_) return;
  const auto& options = worker_.shared.options;
  auto deadline = Clock::time_point::max();
  if (closing_) {
    deadline = close_deadline_;
  } else if (id_.value) {
    deadline = last_heard_ + (pinged_ ? options.idle_timeout : options.ping_interval);
  }
  if (write_waiting_) deadline = std::min(deadline, stalled_since_ + options.write_timeout);
  if (deadline == Clock::time_point::max()) return;
  if (timer_armed_ && timer_expiry_ <= deadline) return;  // the armed wait comes first and re-arms
  timer_armed_ = true;
  timer_expiry_ = deadline;
  timer_.expires_at(deadline);
  timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec) return;  // replaced by an earlier deadline, or the session ended
    self->timer_armed_ = false;
    self->on_timer();
  });
}

void WebSocketSession::on_timer() {
  if (done_) return;
  const auto& options = worker_.shared.options;
  const auto now = Clock::now();
  if (closing_ && now >= close_deadline_) {
    spdlog::debug("room '{}' client {}: close handshake timed out; dropping the connection", room_id_, id_.value);
    finish();
    return;
  }
  if (write_waiting_ && now - stalled_since_ >= options.write_timeout) {
    spdlog::info("room '{}' client {}: no write progress for {} ms; dropping the connection", room_id_, id_.value,
                 options.write_timeout.count());
    leave_room();
    finish();
    return;
  }
  if (!closing_ && id_.value) {
    const auto silent = now - last_heard_;
    if (silent >= options.idle_timeout) {
      spdlog::info("room '{}' client {}: silent for {} ms, closing", room_id_, id_.value,
                   std::chrono::duration_cast<std::chrono::milliseconds>(silent).count());
      leave_room();
      begin_close(CloseCode::going_away, "idle timeout", Drop::unstarted);
    } else if (silent >= options.ping_interval && !pinged_) {
      // Silent: give back the buffers an active connection keeps, then ask whether it is there.
      out_.release_memory();
      if (!parser_.in_progress()) parser_.release_memory();
      pinged_ = true;
      queue_control(Opcode::ping, {});
    }
  }
  arm_timer();
}

}  // namespace stateroom::server
