// OutputQueue: the bytes waiting to leave one connection, as few buffers as possible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "client.hpp"

namespace stateroom::server {

/// A connection's outgoing byte stream, made of frames. Small pieces are copied into one buffer
/// (a broadcast's header and a short payload cost a memcpy per recipient); large payloads are
/// referenced, shared by every recipient, and leave in the same gathered write as the bytes
/// around them. Frame boundaries are remembered so that the frames not yet begun can be dropped
/// without cutting one in half. Not thread-safe; no I/O.
class OutputQueue {
 public:
  /// Appends a copy of `bytes`.
  void append(std::span<const std::uint8_t> bytes);
  /// Appends `payload` by reference; it is kept alive until written or dropped.
  void append_shared(std::shared_ptr<const std::string> payload);
  /// Marks the end of a frame (or of any other unit that must not be cut, such as the HTTP
  /// response before the first frame) at the current end of the stream.
  void end_frame();
  /// Appends one frame of a room's message: its header, then its payload, copied when small and
  /// shared with the message's other recipients when at least `shared_payload_threshold` bytes.
  void append(const OutgoingMessage& message);
  /// Appends one compressed frame, its payload copied or shared by the same rule.
  void append(const DeflatedFrame& frame);
  static constexpr std::size_t shared_payload_threshold = 16 * 1024;

  /// Bytes not yet written.
  std::size_t size() const noexcept { return static_cast<std::size_t>(appended_ - written_); }
  /// Frames not yet completely written.
  std::size_t frames() const noexcept { return ends_.size() - ends_head_; }
  bool empty() const noexcept { return appended_ == written_; }
  /// Bytes of memory the queue itself holds (its buffers' capacity, not the shared payloads).
  std::size_t memory() const noexcept {
    return bytes_.capacity() + refs_.capacity() * sizeof(Ref) + ends_.capacity() * sizeof(std::uint64_t);
  }

  /// Fills `out` with the next buffers to write, in order; returns how many (at most out.size()).
  std::size_t gather(std::span<std::span<const std::uint8_t>> out) const noexcept;
  /// Removes the first `n` bytes after a write took them.
  void consume(std::size_t n) noexcept;
  /// Drops every frame that has not begun to leave; a frame partly written stays whole, and so do
  /// the frames that end at or before stream offset `keep_through` (the HTTP response, say).
  void drop_unstarted(std::uint64_t keep_through = 0);
  /// Stream offset of the end: the bytes appended so far.
  std::uint64_t appended() const noexcept { return appended_; }
  /// Returns the memory of an empty queue.
  void release_memory() noexcept;

 private:
  struct Ref {
    std::size_t at;  ///< the payload goes before bytes_[at]
    std::shared_ptr<const std::string> payload;
    std::size_t done = 0;  ///< bytes of it written
  };
  void compact();

  std::string bytes_;      ///< copied pieces; bytes_[0, head_) are written
  std::size_t head_ = 0;
  std::vector<Ref> refs_;  ///< referenced payloads, by position in bytes_ (few: large ones only)
  std::vector<std::uint64_t> ends_;  ///< stream offsets where frames end; ends_[0, ends_head_) are written
  std::size_t ends_head_ = 0;
  std::uint64_t appended_ = 0;     ///< stream offset of the end
  std::uint64_t written_ = 0;      ///< stream offset of the first unwritten byte
  std::uint64_t frame_start_ = 0;  ///< stream offset where the first unwritten frame begins
};

}  // namespace stateroom::server
