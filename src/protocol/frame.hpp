// The WebSocket frame layer (RFC 6455), I/O-free: frame headers written into a caller's buffer, and
// the constants both sides of a connection agree on. The parser is in parser.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace stateroom::protocol {

/// Frame opcodes (RFC 6455 §5.2). 3–7 and 0xB–0xF are reserved and fail the connection.
enum class Opcode : std::uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

/// Close codes (RFC 6455 §7.4.1) that this server sends or reports.
enum class CloseCode : std::uint16_t {
  none = 0,                ///< no error (not sent on the wire)
  normal = 1000,           ///< the purpose of the connection is fulfilled
  going_away = 1001,       ///< server shutting down, idle timeout
  protocol_error = 1002,   ///< a frame broke RFC 6455
  unsupported_data = 1003, ///< a kind of data the endpoint cannot take
  no_status = 1005,        ///< a close frame without a code (reported, never sent)
  abnormal = 1006,         ///< the connection dropped without a close frame (reported, never sent)
  invalid_payload = 1007,  ///< text that is not UTF-8, a close reason that is not UTF-8
  policy_violation = 1008, ///< the client reads too slowly for its send queue
  message_too_big = 1009,  ///< a message over the size limit
  internal_error = 1011,   ///< the room failed
  try_again_later = 1013,  ///< a budget is exhausted; the client may retry
};

/// Largest control-frame payload (§5.5).
inline constexpr std::size_t max_control_payload = 125;
/// Largest frame header: 2 bytes, an 8-byte extended length and a 4-byte mask.
inline constexpr std::size_t max_header_size = 14;
/// Largest header of an unmasked (server-to-client) frame.
inline constexpr std::size_t max_server_header_size = 10;

/// Bytes of the header of a frame carrying `payload_size` bytes.
constexpr std::size_t header_size(std::uint64_t payload_size, bool masked) noexcept {
  const std::size_t base = payload_size < 126 ? 2 : payload_size <= 0xFFFF ? 4 : 10;
  return base + (masked ? 4 : 0);
}

/// Options of one frame header.
struct FrameHeader {
  Opcode opcode = Opcode::text;
  std::uint64_t payload_size = 0;
  bool fin = true;
  bool rsv1 = false;  ///< "compressed" under permessage-deflate (RFC 7692)
  /// The masking key of a client frame; nothing for a server frame.
  const std::uint8_t* mask = nullptr;
};

/// Writes the header of `h` to `out`, which must hold header_size(h.payload_size, h.mask) bytes
/// (max_header_size always suffices), using the minimal length encoding. Returns the bytes written.
std::size_t write_header(std::uint8_t* out, const FrameHeader& h) noexcept;

/// XORs `data` with the 4-byte `mask`, starting at byte `offset` of the mask's cycle (a payload
/// masked in pieces continues where the previous piece ended). Returns the offset to continue with.
std::size_t apply_mask(std::span<std::uint8_t> data, const std::uint8_t mask[4], std::size_t offset = 0) noexcept;

/// Writes the payload of a close frame (a big-endian code, then `reason`, cut to fit 125 bytes at
/// a UTF-8 character boundary) to `out`, which must hold max_control_payload bytes. `CloseCode::none`
/// writes an empty payload. Returns the bytes written.
std::size_t write_close_payload(std::uint8_t* out, std::uint16_t code, std::string_view reason) noexcept;

/// Whether `code` may appear in a close frame on the wire (§7.4: 1000–1003, 1007–1014, 3000–4999).
constexpr bool is_valid_close_code(std::uint16_t code) noexcept {
  if (code >= 3000 && code <= 4999) return true;
  if (code >= 1000 && code <= 1003) return true;
  return code >= 1007 && code <= 1014;
}

}  // namespace stateroom::protocol
