// Client: what a room knows of one of its clients, and the message it hands them.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "protocol/deflate.hpp"
#include "protocol/frame.hpp"
#include "stateroom/message_payload.hpp"

namespace stateroom::server {

/// What one queued frame costs a client's send queue beyond its bytes: its entry in the queue's
/// bookkeeping. Counting it bounds a flood of empty messages as well as a flood of large ones.
inline constexpr std::size_t queued_frame_overhead = 16;

/// The largest payload an empty send queue of `max_queued` bytes takes in one frame.
constexpr std::size_t largest_queueable(std::size_t max_queued) noexcept {
  constexpr std::size_t frame_cost = protocol::max_server_header_size + queued_frame_overhead;
  return max_queued > frame_cost ? max_queued - frame_cost : 0;
}

/// A message's frame compressed with permessage-deflate: header (RSV1 set) and payload.
struct DeflatedFrame {
  int window_bits = 0;  ///< the server window it was compressed for
  std::array<std::uint8_t, protocol::max_server_header_size> header{};
  std::uint8_t header_size = 0;
  /// Empty when the message goes uncompressed (too short, or compression would not shrink it).
  std::shared_ptr<const std::string> payload;

  std::span<const std::uint8_t> frame_header() const noexcept { return {header.data(), header_size}; }
  std::size_t wire_size() const noexcept { return header_size + payload->size(); }
  /// The same message for another window size (recipients may have negotiated several).
  std::unique_ptr<DeflatedFrame> next;
};

/// One message a room sends, as every recipient sees it: the payload (borrowed from the sender for
/// the duration of the send), its WebSocket frame header encoded once however many recipients
/// there are, and, for a recipient that must keep a large payload past the send, one shared copy
/// made for all of them on first need. For recipients that negotiated compression, the message is
/// compressed once, on first need, and that frame is shared by all of them.
class OutgoingMessage {
 public:
  explicit OutgoingMessage(const MessagePayload& payload) noexcept : payload_(payload) {}
  OutgoingMessage(const OutgoingMessage&) = delete;
  OutgoingMessage& operator=(const OutgoingMessage&) = delete;

  const MessagePayload& payload() const noexcept { return payload_; }
  /// The unmasked frame header (FIN, text or binary, the length).
  std::span<const std::uint8_t> frame_header() const noexcept {
    if (header_size_ == 0) {
      header_size_ = static_cast<std::uint8_t>(protocol::write_header(
          header_.data(), {.opcode = payload_.is_text() ? protocol::Opcode::text : protocol::Opcode::binary,
                           .payload_size = payload_.size()}));
    }
    return {header_.data(), header_size_};
  }
  /// Header plus payload: what the message costs a client's queue.
  std::size_t wire_size() const noexcept { return frame_header().size() + payload_.size(); }
  /// The payload's bytes in one shared, immutable buffer (copied on the first call only).
  const std::shared_ptr<const std::string>& shared_payload() const {
    if (!shared_) shared_ = std::make_shared<const std::string>(payload_.view());
    return shared_;
  }
  /// The message compressed for a server window of `window_bits`, with `deflaters` (those of the
  /// room's thread); null when it goes as it is: shorter than `threshold`, not made smaller by
  /// compressing, or zlib failed. Computed for the first recipient that asks, reused by the others
  /// (once for each window size the recipients negotiated, whatever their order).
  const DeflatedFrame* deflated(protocol::MessageDeflaters& deflaters, int window_bits,
                                std::size_t threshold) const;

 private:
  const MessagePayload& payload_;
  mutable std::array<std::uint8_t, protocol::max_server_header_size> header_{};
  mutable std::uint8_t header_size_ = 0;
  mutable std::shared_ptr<const std::string> shared_;
  mutable std::unique_ptr<DeflatedFrame> deflated_;  ///< one for each window size asked for so far
};

/// What became of a message handed to a client.
enum class SendResult : std::uint8_t {
  sent,          ///< queued; the client keeps up
  backpressure,  ///< queued, but the client's queue is past its watermark: it reads slowly
  dropped,       ///< not queued: the client's queue bound is exceeded, it is closing (1008) and has
                 ///< left the room, which must now deliver its `disconnect`
};

/// A room's view of one client: a WebSocket session, or anything else that takes messages (a
/// test double; a client forwarded from another node or resumed after a reconnect). Called only
/// on the room's thread. A client stays valid while it is a member: it calls Room::leave (or is
/// closed by the room) before it goes away.
class Client {
 public:
  /// Queues `message`. It leaves with the room's other sends of this pass of the event loop.
  virtual SendResult send(const OutgoingMessage& message) = 0;
  /// The room lets the client go (the room failed, the server shuts down): it is closed with
  /// `code` after what is already queued, and the room calls it no more.
  virtual void close(protocol::CloseCode code, std::string_view reason) = 0;
  /// The room's inbound queue went back under its bound: a client that stopped reading because
  /// of it may read again.
  virtual void resume_reading() = 0;

 protected:
  Client() = default;
  Client(const Client&) = default;
  Client& operator=(const Client&) = default;
  ~Client() = default;
};

}  // namespace stateroom::server
