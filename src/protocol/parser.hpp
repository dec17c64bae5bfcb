// Parser: WebSocket frames in, messages and control frames out (RFC 6455), with no I/O.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "frame.hpp"
#include "stateroom/utf8.hpp"

namespace stateroom::protocol {

/// What the parser is told about its connection.
struct ParserOptions {
  /// Largest message (all of its fragments) accepted; a larger one fails with 1009 as soon as a
  /// frame header announces it, before its payload arrives.
  std::uint64_t max_message_size = 1 << 20;
  /// Server side: every frame from the client must be masked (§5.1). Client side: none may be.
  bool expect_masked = true;
  /// RSV1 marks a compressed message (permessage-deflate was negotiated, RFC 7692). Without it
  /// any RSV bit fails the connection.
  bool allow_rsv1 = false;
};

/// One thing the parser found.
struct Event {
  enum class Kind : std::uint8_t {
    need_more,  ///< every byte given was consumed; feed more
    message,    ///< a complete text or binary message (all its fragments)
    ping,
    pong,
    close,      ///< the peer's close frame: `close_code`, `reason`. Nothing after it is parsed.
    error,      ///< the peer broke the protocol: fail the connection with `close_code`, `reason`
  };
  Kind kind = Kind::need_more;
  Opcode opcode = Opcode::text;  ///< message: text or binary
  bool compressed = false;       ///< message: RSV1 was set on its first frame (permessage-deflate)
  /// message, ping, pong: the unmasked payload. It points into the caller's input (unmasked in
  /// place) or into the parser's own buffer, and stays valid until the next call to `next` while
  /// the input bytes are kept.
  std::span<const std::uint8_t> payload{};
  std::uint16_t close_code = 0;  ///< close: the peer's code (1005 when it gave none); error: ours
  std::string_view reason{};     ///< close: the peer's reason (valid UTF-8); error: what went wrong
};

/// An incremental frame parser for one connection. Bytes may arrive split anywhere (inside a
/// header, a mask, a UTF-8 character); a message that arrives whole in one input is handed out
/// without a copy, and only messages split across inputs or fragments are gathered in the
/// parser's buffer (reused from message to message). Text is checked for UTF-8 as it arrives, so
/// an invalid byte fails the connection at once (1007).
class Parser {
 public:
  explicit Parser(ParserOptions options = {}) noexcept : options_(options) {}

  /// Parses from the front of `input`, unmasking it in place, and returns the next event;
  /// `input` is advanced past what was consumed. Call again while the event is not `need_more`.
  /// After `close` or `error` the parser stays in that state and returns it again.
  Event next(std::span<std::uint8_t>& input) noexcept;

  /// Bytes held for a message in progress.
  std::size_t buffered() const noexcept { return message_.size(); }
  /// Returns the message buffer's memory when no message is in progress (an idle connection).
  void release_memory() noexcept;
  /// Whether a message or frame is partly received.
  bool in_progress() const noexcept { return in_frame_ || header_have_ > 0 || message_kind_ != 0; }
  const ParserOptions& options() const noexcept { return options_; }

 private:
  /// Enters the error state; returns its event.
  Event fail(CloseCode code, std::string_view reason) noexcept;
  bool reject(CloseCode code, std::string_view reason) noexcept;
  /// The event of the close or error state.
  Event terminal() const noexcept;
  /// Validates a complete header at `h` and starts its frame. False on error (now terminal).
  bool accept_header(const std::uint8_t* h) noexcept;
  Event control_event(std::span<const std::uint8_t> payload) noexcept;
  /// Checks and appends a piece of a data frame's payload; false on invalid UTF-8.
  bool take_data(std::span<std::uint8_t> piece) noexcept;

  ParserOptions options_;

  // The header being gathered when it arrives split.
  std::array<std::uint8_t, max_header_size> header_{};
  std::uint8_t header_have_ = 0;

  // The frame whose payload is being read.
  bool in_frame_ = false;
  bool fin_ = false;
  Opcode opcode_ = Opcode::text;
  std::array<std::uint8_t, 4> mask_{};
  bool masked_ = false;
  std::uint8_t mask_offset_ = 0;
  std::uint64_t remaining_ = 0;
  std::uint64_t frame_taken_ = 0;  ///< payload bytes of this frame consumed by earlier calls

  // The data message in progress: 0 = none, else its first frame's opcode.
  std::uint8_t message_kind_ = 0;
  bool message_compressed_ = false;
  bool clear_message_ = false;  ///< the last event viewed message_: empty it on the next call
  Utf8Validator utf8_{};
  std::string message_;

  // A control frame split across inputs.
  std::array<std::uint8_t, max_control_payload> control_{};
  std::uint8_t control_have_ = 0;

  // Terminal state: after a close frame or an error.
  Event::Kind done_ = Event::Kind::need_more;
  std::uint16_t done_code_ = 0;
  std::array<char, max_control_payload> done_reason_{};
  std::uint8_t done_reason_size_ = 0;
  std::string_view done_reason_static_{};
};

}  // namespace stateroom::protocol
