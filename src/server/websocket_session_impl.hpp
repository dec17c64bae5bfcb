// The definitions of BasicWebSocketSession, for the translation units that instantiate it: the
// server's (websocket_session.cpp, over a TCP socket) and the tests' (over a socket that fails on
// cue). Include websocket_session.hpp everywhere else.
#pragma once

#include <spdlog/spdlog.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/socket_base.hpp>
#include <algorithm>
#include <array>
#include <utility>

#include "../common/text.hpp"
#include "room.hpp"
#include "websocket_session.hpp"
#include "worker.hpp"

namespace stateroom::server {

namespace session_detail {


/// Buffers in one gathered write.
inline constexpr std::size_t max_write_buffers = 16;
/// Reads in a row from one socket before the others get their turn.
inline constexpr int reads_per_turn = 4;
/// Output buffer kept by an active connection between passes.
inline constexpr std::size_t max_kept_buffer = 64 * 1024;

template <class Socket>
std::string describe_remote(const Socket& socket) {
  boost::system::error_code ec;
  const auto remote = socket.remote_endpoint(ec);
  if (ec) return "an unknown address";
  const std::string address = remote.address().to_string();
  return (remote.address().is_v6() ? "[" + address + "]" : address) + ":" + std::to_string(remote.port());
}

}  // namespace session_detail

template <class Socket>
BasicWebSocketSession<Socket>::BasicWebSocketSession(Worker& worker, Socket socket, Handshake handshake,
                                                     std::string room_id, ConnectionTicket ticket)
    : worker_(worker),
      socket_(std::move(socket)),
      timer_(worker.ioc),
      parser_({.max_message_size = worker.shared.options.max_message_bytes,
               .allow_rsv1 = handshake.deflate.has_value()}),
      room_id_(std::move(room_id)),
      handshake_(std::move(handshake)),
      remote_(session_detail::describe_remote(socket_)),
      ticket_(std::move(ticket)) {
  ++worker_.websocket_sessions;
}

template <class Socket>
BasicWebSocketSession<Socket>::~BasicWebSocketSession() {
  --worker_.websocket_sessions;
}

template <class Socket>
void BasicWebSocketSession<Socket>::start() {
  boost::system::error_code ec;
  socket_.non_blocking(true, ec);
  if (ec) {
    spdlog::debug("room '{}': cannot use the connection from {}: {}", room_id_, remote_, ec.message());
    return;
  }
  std::string response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
      handshake_.accept_key + "\r\n";
  if (handshake_.deflate) {
    response += "Sec-WebSocket-Extensions: " + handshake_.deflate->response + "\r\n";
    handshake_.deflate->response = {};
  }
  response += "Server: stateroom\r\n\r\n";
  out_.append({reinterpret_cast<const std::uint8_t*>(response.data()), response.size()});
  out_.end_frame();
  response_end_ = out_.appended();
  handshake_.accept_key = {};
  last_heard_ = Clock::now();
  cork();
  if (worker_.shutting_down) {
    wait_readable();  // carries the close handshake
    begin_close(protocol::CloseCode::going_away, "server shutting down", Drop::none);
    return;
  }
  // Nothing is read until the room is there (a waking room's state is read off this thread): what
  // the client sends meanwhile waits in the socket, for the room.
  reading_paused_ = true;
  worker_.with_room(room_id_, &ticket_.address(),
                    [self = this->shared_from_this()](std::shared_ptr<Room> room, std::optional<Refusal> refused) {
                      self->enter(std::move(room), refused);
                    });
}

template <class Socket>
void BasicWebSocketSession<Socket>::enter(std::shared_ptr<Room> room, std::optional<Refusal> refused) {
  if (done_) return;
  reading_paused_ = false;
  wait_readable();  // also carries the close handshake, whatever happens next
  if (closing_) return;
  if (worker_.shutting_down) {
    begin_close(protocol::CloseCode::going_away, "server shutting down", Drop::none);
    return;
  }
  if (!room || !room->alive()) {
    if (refused) {
      begin_close(protocol::CloseCode::try_again_later,
                  *refused == Refusal::rooms                   ? "too many rooms"
                  : *refused == Refusal::room_creations_per_ip ? "too many new rooms from this address"
                  : *refused == Refusal::rooms_per_ip          ? "too many rooms from this address"
                                                               : "room unavailable, try again later",
                  Drop::none);
    } else {
      begin_close(protocol::CloseCode::internal_error, "room failed", Drop::none);
    }
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

template <class Socket>
void BasicWebSocketSession<Socket>::wait_readable() {
  if (read_waiting_ || done_ || reading_paused_) return;
  wait(boost::asio::socket_base::wait_read);
}

template <class Socket>
void BasicWebSocketSession<Socket>::wait(boost::asio::socket_base::wait_type type) {
  const bool read = type == boost::asio::socket_base::wait_read;
  (read ? read_waiting_ : write_waiting_) = true;
  socket_.async_wait(type, [self = this->shared_from_this(), read](boost::system::error_code ec) {
    (read ? self->read_waiting_ : self->write_waiting_) = false;
    if (self->done_) return;
    if (ec) {
      // The wait itself failed: the socket can no longer be waited on (not a cancellation, which
      // only finish() makes, after done_ is set). Nothing more will arrive or leave.
      spdlog::debug("room '{}' client {}: waiting on the connection failed: {}", self->room_id_, self->id_.value,
                    ec.message());
      self->on_peer_gone(ec.message());
    } else if (read) {
      self->on_readable();
    } else {
      self->flush();
    }
  });
}

template <class Socket>
void BasicWebSocketSession<Socket>::on_readable() {
  auto* buffer = worker_.read_buffer.get();
  for (int turn = 0; turn < session_detail::reads_per_turn; ++turn) {
    if (done_ || reading_paused_) return;
    boost::system::error_code ec;
    const std::size_t n = socket_.read_some(boost::asio::buffer(buffer, Worker::read_buffer_size), ec);
    if (ec == boost::asio::error::would_block) break;
    if (ec == boost::asio::error::eof) {
      on_peer_gone("closed without a close frame (1006)");
      return;
    }
    if (ec) {
      on_peer_gone(ec.message());
      return;
    }
    on_bytes({buffer, n});
    if (n < Worker::read_buffer_size) break;  // drained for now: the next edge wakes us
    if (turn + 1 == session_detail::reads_per_turn) {
      // More is waiting: continue after the other ready work.
      boost::asio::post(worker_.ioc, [self = this->shared_from_this()] {
        if (!self->done_ && !self->reading_paused_) self->on_readable();
      });
      return;
    }
  }
  wait_readable();
}

template <class Socket>
void BasicWebSocketSession<Socket>::on_bytes(std::span<std::uint8_t> data) {
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
          const auto kind = e.opcode == protocol::Opcode::text ? PayloadKind::text : PayloadKind::binary;
          std::span<const std::uint8_t> payload = e.payload;
          if (e.compressed) {
            hand_over();  // what came before it reaches the room first, whatever becomes of it
            if (!inflate(e, payload)) return;
          }
          batch.push_back(MessagePayload::view(kind, payload));
          const bool in_place = payload.empty() || (payload.data() >= read_begin && payload.data() < read_end);
          if (!in_place) hand_over();
        }
        break;
      case protocol::Event::Kind::ping:
        if (closing_) break;
        if (!write_waiting_ && !pong_due_ &&
            queued_charge() + e.payload.size() + 2 + queued_frame_overhead <= worker_.shared.options.max_queued_bytes) {
          queue_control(protocol::Opcode::pong, e.payload);  // in order with what the room sends
        } else {
          // The client does not take what it is sent: only the latest ping is answered, once the
          // socket takes writes again.
          std::copy(e.payload.begin(), e.payload.end(), pong_.begin());
          pong_size_ = static_cast<std::uint8_t>(e.payload.size());
          pong_due_ = true;
          cork();
        }
        break;
      case protocol::Event::Kind::pong:
        break;
      case protocol::Event::Kind::close:
        hand_over();
        if (!done_) on_peer_close(e.close_code, e.reason);
        return;
      case protocol::Event::Kind::error:
        hand_over();
        if (!done_) fail_connection(static_cast<protocol::CloseCode>(e.close_code), e.reason);
        return;
    }
    if (done_) return;
  }
}

template <class Socket>
bool BasicWebSocketSession<Socket>::inflate_allowed() {
  // max_inflate_rate bytes a second, holding a second's worth (or one largest message); each
  // message may take it below zero by what it inflated to, and the next waits.
  const auto& options = worker_.shared.options;
  const auto rate = static_cast<double>(options.max_inflate_rate);
  inflate_.refill(rate, std::max(rate, static_cast<double>(options.max_message_bytes)), Clock::now());
  return inflate_.tokens > 0;
}

template <class Socket>
bool BasicWebSocketSession<Socket>::inflate(const protocol::Event& e, std::span<const std::uint8_t>& payload) {
  const auto& deflate = handshake_.deflate->params;
  auto& compression = worker_.compression();
  protocol::Inflater* inflater = &compression.inflater;
  if (!deflate.client_no_context_takeover) {
    if (!inflater_) inflater_ = std::make_unique<protocol::Inflater>(deflate.client_window_bits, true);
    inflater = inflater_.get();
  }
  std::string& out = compression.inflated;
  const auto& options = worker_.shared.options;
  // A remote client's address has one budget for all its connections; a local one, each its own.
  auto& admission = worker_.shared.admission;
  const bool shared = ticket_.per_address();
  if (options.max_inflate_rate && !(shared ? admission.inflate_allowed(ticket_) : inflate_allowed())) {
    spdlog::warn("room '{}' client {} inflates more than --max-inflate-rate ({} a second{}): closing with 1008",
                 room_id_, id_.value, detail::format_bytes(options.max_inflate_rate),
                 shared ? " for its address" : "");
    fail_connection(protocol::CloseCode::policy_violation, "compressed messages inflate too much");
    return false;
  }
  const auto result = inflater->inflate(e.payload, options.max_message_bytes, out);
  if (shared) {
    admission.inflated(ticket_, out.size());
  } else {
    inflate_.tokens -= static_cast<double>(out.size());
  }
  switch (result) {
    case protocol::Inflater::Result::ok:
      break;
    case protocol::Inflater::Result::too_big:
      fail_connection(protocol::CloseCode::message_too_big, "message too big once decompressed");
      return false;
    case protocol::Inflater::Result::corrupt:
      fail_connection(protocol::CloseCode::invalid_payload, "a compressed message is not valid deflate data");
      return false;
  }
  if (e.opcode == protocol::Opcode::text && !is_valid_utf8(out)) {
    fail_connection(protocol::CloseCode::invalid_payload, "a text message is not valid UTF-8");
    return false;
  }
  payload = {reinterpret_cast<const std::uint8_t*>(out.data()), out.size()};
  return true;
}

template <class Socket>
void BasicWebSocketSession<Socket>::on_peer_close(std::uint16_t code, std::string_view reason) {
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
  const auto echoed = code == static_cast<std::uint16_t>(protocol::CloseCode::no_status)
                          ? protocol::CloseCode::none
                          : static_cast<protocol::CloseCode>(code);
  begin_close(echoed, {}, Drop::unstarted);
}

template <class Socket>
void BasicWebSocketSession<Socket>::on_peer_gone(std::string_view how) {
  if (id_.value && room_) spdlog::info("room '{}' client {} disconnected ({})", room_id_, id_.value, how);
  leave_room();
  finish();
}

template <class Socket>
void BasicWebSocketSession<Socket>::fail_connection(protocol::CloseCode code, std::string_view reason) {
  if (id_.value)
    spdlog::info("room '{}' client {} disconnected (closed by the server, code {}: {})", room_id_, id_.value,
                 static_cast<int>(code), reason);
  leave_room();
  lingering_ = true;
  // What the room answered before the bad frame still goes out, ahead of the close frame.
  begin_close(code, reason, Drop::none);
}

template <class Socket>
void BasicWebSocketSession<Socket>::resume_reading() {
  if (!reading_paused_) return;
  reading_paused_ = false;
  // Bytes may be waiting already, with no new edge to announce them: read after this pass.
  boost::asio::post(worker_.ioc, [self = this->shared_from_this()] {
    if (!self->done_ && !self->reading_paused_ && !self->read_waiting_) self->on_readable();
  });
}

// --- writing --------------------------------------------------------------------------------------

template <class Socket>
std::size_t BasicWebSocketSession<Socket>::queued_charge() const noexcept {
  return out_.size() + out_.frames() * queued_frame_overhead;
}

template <class Socket>
SendResult BasicWebSocketSession<Socket>::send(const OutgoingMessage& message) {
  if (closing_ || done_) return SendResult::sent;  // no longer a member: nothing more is queued
  const auto& options = worker_.shared.options;
  const std::size_t limit = options.max_queued_bytes;
  const DeflatedFrame* deflated =
      handshake_.deflate ? message.deflated(worker_.compression().deflaters, handshake_.deflate->params.server_window_bits,
                                            options.compression_threshold)
                         : nullptr;
  const std::size_t charge = (deflated ? deflated->wire_size() : message.wire_size()) + queued_frame_overhead;
  if (queued_charge() + charge > limit) {
    spdlog::warn("room '{}' client {} reads too slowly ({} bytes queued, {} more, limit {}): closing with 1008",
                 room_id_, id_.value, queued_charge(), charge, limit);
    room_.reset();  // the room removes us and delivers `disconnect`
    begin_close(protocol::CloseCode::policy_violation, "send queue full", Drop::unstarted);
    return SendResult::dropped;
  }
  if (deflated) {
    out_.append(*deflated);
  } else {
    out_.append(message);
  }
  cork();
  return queued_charge() > limit / 2 ? SendResult::backpressure : SendResult::sent;
}

template <class Socket>
void BasicWebSocketSession<Socket>::queue_control(protocol::Opcode opcode, std::span<const std::uint8_t> payload) {
  append_control(opcode, payload);
  cork();
}

template <class Socket>
void BasicWebSocketSession<Socket>::append_control(protocol::Opcode opcode, std::span<const std::uint8_t> payload) {
  std::uint8_t header[protocol::max_server_header_size];
  out_.append({header, protocol::write_header(header, {.opcode = opcode, .payload_size = payload.size()})});
  out_.append(payload);
  out_.end_frame();
}

template <class Socket>
void BasicWebSocketSession<Socket>::cork() {
  if (corked_ || done_) return;
  corked_ = true;
  worker_.cork(this->shared_from_this());
}

template <class Socket>
void BasicWebSocketSession<Socket>::flush() {
  corked_ = false;
  if (write_waiting_ || done_) return;
  // Everything queued before has left: the pong for the latest ping goes now (none after our
  // close frame).
  if (std::exchange(pong_due_, false) && !closing_) append_control(protocol::Opcode::pong, {pong_.data(), pong_size_});
  while (!out_.empty()) {
    std::array<std::span<const std::uint8_t>, session_detail::max_write_buffers> pieces;
    const std::size_t count = out_.gather(pieces);
    std::array<boost::asio::const_buffer, session_detail::max_write_buffers> buffers;
    std::size_t total = 0;
    for (std::size_t i = 0; i < count; ++i) {
      buffers[i] = boost::asio::const_buffer(pieces[i].data(), pieces[i].size());
      total += pieces[i].size();
    }
    boost::system::error_code ec;
    const std::size_t written = socket_.write_some(std::span(buffers.data(), count), ec);
    if (ec == boost::asio::error::would_block) {
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
  if (out_.memory() > session_detail::max_kept_buffer) out_.release_memory();
  if (!closing_) return;
  if (peer_closed_) {
    finish();  // our close frame answered theirs, or theirs answered ours
  } else if (lingering_ && !shut_down_send_) {
    // Failed: the close frame is out; half-close and read what still comes until EOF.
    shut_down_send_ = true;
    boost::system::error_code ignored;
    socket_.shutdown(boost::asio::socket_base::shutdown_send, ignored);
  }
}

template <class Socket>
void BasicWebSocketSession<Socket>::wait_writable() {
  write_waiting_ = true;
  stalled_since_ = Clock::now();
  arm_timer();
  wait(boost::asio::socket_base::wait_write);
}

// --- closing --------------------------------------------------------------------------------------

template <class Socket>
void BasicWebSocketSession<Socket>::close(protocol::CloseCode code, std::string_view reason) {
  room_.reset();
  begin_close(code, reason, Drop::none);
  resume_reading();  // no longer held back by the room: the client's close frame must be read
}

template <class Socket>
void BasicWebSocketSession<Socket>::begin_close(protocol::CloseCode code, std::string_view reason, Drop drop) {
  if (closing_ || done_) return;
  closing_ = true;
  close_code_ = static_cast<std::uint16_t>(code);
  // The 101 always leaves, so that the client reads why it is closed, even from its own `connect`.
  if (drop == Drop::unstarted) out_.drop_unstarted(response_end_);
  std::uint8_t payload[protocol::max_control_payload];
  const std::size_t size = protocol::write_close_payload(payload, close_code_, reason);
  queue_control(protocol::Opcode::close, {payload, size});
  close_deadline_ = Clock::now() + worker_.shared.options.close_timeout;
  arm_timer();
}

template <class Socket>
void BasicWebSocketSession<Socket>::finish() {
  if (done_) return;
  done_ = true;
  leave_room();
  boost::system::error_code ignored;
  timer_.cancel();
  socket_.shutdown(boost::asio::socket_base::shutdown_both, ignored);
  socket_.close(ignored);
}

template <class Socket>
void BasicWebSocketSession<Socket>::leave_room() {
  if (!room_) return;
  auto room = std::move(room_);
  room->leave(id_);
}

// --- deadlines ------------------------------------------------------------------------------------

template <class Socket>
void BasicWebSocketSession<Socket>::arm_timer() {
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
  timer_.async_wait([self = this->shared_from_this()](boost::system::error_code ec) {
    if (ec) return;  // replaced by an earlier deadline, or the session ended
    self->timer_armed_ = false;
    self->on_timer();
  });
}

template <class Socket>
void BasicWebSocketSession<Socket>::on_timer() {
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
      begin_close(protocol::CloseCode::going_away, "idle timeout", Drop::unstarted);
    } else if (silent >= options.ping_interval && !pinged_) {
      // Silent: give back the buffers an active connection keeps, then ask whether it is there.
      out_.release_memory();
      if (!parser_.in_progress()) parser_.release_memory();
      pinged_ = true;
      queue_control(protocol::Opcode::ping, {});
    }
  }
  arm_timer();
}

}  // namespace stateroom::server
