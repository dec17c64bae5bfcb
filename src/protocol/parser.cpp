#include "parser.hpp"

#include <algorithm>
#include <cstring>

namespace stateroom::protocol {

namespace {

constexpr bool is_control(Opcode op) noexcept {
  return static_cast<std::uint8_t>(op) >= 0x8;
}

/// Header bytes implied by its first two bytes.
constexpr std::size_t header_length(std::uint8_t second) noexcept {
  const std::uint8_t len7 = second & 0x7F;
  return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((second & 0x80) ? 4 : 0);
}

}  // namespace

Event Parser::fail(CloseCode code, std::string_view reason) noexcept {
  done_ = Event::Kind::error;
  done_code_ = static_cast<std::uint16_t>(code);
  done_reason_static_ = reason;
  return terminal();
}

bool Parser::reject(CloseCode code, std::string_view reason) noexcept {
  fail(code, reason);
  return false;
}

Event Parser::terminal() const noexcept {
  Event e;
  e.kind = done_;
  e.close_code = done_code_;
  e.reason = done_ == Event::Kind::close ? std::string_view(done_reason_.data(), done_reason_size_)
                                         : done_reason_static_;
  return e;
}

void Parser::release_memory() noexcept {
  if (message_kind_ == 0) std::string().swap(message_);
}

bool Parser::accept_header(const std::uint8_t* h) noexcept {
  const std::uint8_t first = h[0], second = h[1];
  const bool fin = first & 0x80;
  const bool rsv1 = first & 0x40;
  const std::uint8_t op = first & 0x0F;
  const bool masked = second & 0x80;
  if (first & 0x30) return reject(CloseCode::protocol_error, "a reserved bit (RSV2, RSV3) is set");
  if (op > 0xA || (op > 0x2 && op < 0x8)) return reject(CloseCode::protocol_error, "reserved opcode");
  if (masked != options_.expect_masked)
    return reject(CloseCode::protocol_error, masked ? "a server frame must not be masked" : "a client frame must be masked");

  std::uint64_t length = second & 0x7F;
  std::size_t at = 2;
  if (length == 126) {
    length = (std::uint64_t{h[2]} << 8) | h[3];
    at = 4;
    if (length < 126) return reject(CloseCode::protocol_error, "frame length not minimally encoded");
  } else if (length == 127) {
    length = 0;
    for (int i = 0; i < 8; ++i) length = (length << 8) | h[2 + i];
    at = 10;
    if (length >> 63) return reject(CloseCode::protocol_error, "frame length has its top bit set");
    if (length <= 0xFFFF) return reject(CloseCode::protocol_error, "frame length not minimally encoded");
  }

  const auto opcode = static_cast<Opcode>(op);
  if (is_control(opcode)) {
    if (!fin) return reject(CloseCode::protocol_error, "a control frame must not be fragmented");
    if (length > max_control_payload)
      return reject(CloseCode::protocol_error, "a control frame's payload exceeds 125 bytes");
    if (rsv1) return reject(CloseCode::protocol_error, "RSV1 set on a control frame");
  } else {
    if (rsv1 && !options_.allow_rsv1)
      return reject(CloseCode::protocol_error, "RSV1 set without a negotiated extension");
    if (opcode == Opcode::continuation) {
      if (message_kind_ == 0) return reject(CloseCode::protocol_error, "continuation frame without a message");
      if (rsv1) return reject(CloseCode::protocol_error, "RSV1 set on a continuation frame");
    } else {
      if (message_kind_ != 0)
        return reject(CloseCode::protocol_error, "a new message began inside a fragmented one");
      message_kind_ = op;
      message_compressed_ = rsv1;
      utf8_.reset();
    }
    if (length > options_.max_message_size - std::min<std::uint64_t>(message_.size(), options_.max_message_size))
      return reject(CloseCode::message_too_big, "message too big");
  }

  masked_ = masked;
  if (masked) std::memcpy(mask_.data(), h + at, 4);
  mask_offset_ = 0;
  in_frame_ = true;
  fin_ = fin;
  opcode_ = opcode;
  remaining_ = length;
  frame_taken_ = 0;
  return true;
}

Event Parser::control_event(std::span<const std::uint8_t> payload) noexcept {
  Event e;
  e.payload = payload;
  if (opcode_ == Opcode::ping) {
    e.kind = Event::Kind::ping;
    return e;
  }
  if (opcode_ == Opcode::pong) {
    e.kind = Event::Kind::pong;
    return e;
  }
  // A close frame: a code and a UTF-8 reason, or nothing at all.
  std::uint16_t code = static_cast<std::uint16_t>(CloseCode::no_status);
  std::string_view reason;
  if (payload.size() == 1) return fail(CloseCode::protocol_error, "a close frame with a one-byte payload");
  if (payload.size() >= 2) {
    code = static_cast<std::uint16_t>((payload[0] << 8) | payload[1]);
    if (!is_valid_close_code(code)) return fail(CloseCode::protocol_error, "invalid close code");
    reason = {reinterpret_cast<const char*>(payload.data() + 2), payload.size() - 2};
    if (!is_valid_utf8(reason)) return fail(CloseCode::invalid_payload, "the close reason is not UTF-8");
  }
  if (!reason.empty()) std::memcpy(done_reason_.data(), reason.data(), reason.size());
  done_reason_size_ = static_cast<std::uint8_t>(reason.size());
  done_ = Event::Kind::close;
  done_code_ = code;
  return terminal();
}

bool Parser::take_data(std::span<std::uint8_t> piece) noexcept {
  if (message_kind_ == static_cast<std::uint8_t>(Opcode::text) && !message_compressed_ &&
      !utf8_.feed(piece.data(), piece.size()))
    return false;
  if (!piece.empty()) message_.append(reinterpret_cast<const char*>(piece.data()), piece.size());
  return true;
}

Event Parser::next(std::span<std::uint8_t>& input) noexcept {
  if (done_ != Event::Kind::need_more) return terminal();
  if (clear_message_) {
    message_.clear();
    clear_message_ = false;
  }
  for (;;) {
    if (!in_frame_) {
      if (input.empty()) return {};
      if (header_have_ == 0 && input.size() >= 2 && input.size() >= header_length(input[1])) {
        // The whole header is in the input: read it in place.
        const std::size_t size = header_length(input[1]);
        if (!accept_header(input.data())) return terminal();
        input = input.subspan(size);
      } else {
        // Gather a header split across inputs.
        while (header_have_ < 2 && !input.empty()) {
          header_[header_have_++] = input[0];
          input = input.subspan(1);
        }
        if (header_have_ < 2) return {};
        const std::size_t size = header_length(header_[1]);
        const std::size_t take = std::min(size - header_have_, input.size());
        if (take) std::memcpy(header_.data() + header_have_, input.data(), take);
        header_have_ = static_cast<std::uint8_t>(header_have_ + take);
        input = input.subspan(take);
        if (header_have_ < size) return {};
        header_have_ = 0;
        if (!accept_header(header_.data())) return terminal();
      }
    }

    const auto available = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, input.size()));
    const auto piece = input.first(available);
    if (masked_) mask_offset_ = static_cast<std::uint8_t>(apply_mask(piece, mask_.data(), mask_offset_));
    input = input.subspan(available);
    remaining_ -= available;

    if (is_control(opcode_)) {
      if (control_have_ == 0 && remaining_ == 0) {
        in_frame_ = false;
        return control_event(piece);  // whole in the input: no copy
      }
      if (!piece.empty()) std::memcpy(control_.data() + control_have_, piece.data(), piece.size());
      control_have_ = static_cast<std::uint8_t>(control_have_ + piece.size());
      if (remaining_ > 0) return {};
      in_frame_ = false;
      const std::size_t size = control_have_;
      control_have_ = 0;
      return control_event({control_.data(), size});
    }

    const bool text = message_kind_ == static_cast<std::uint8_t>(Opcode::text) && !message_compressed_;
    if (remaining_ == 0 && fin_ && frame_taken_ == 0 && opcode_ != Opcode::continuation) {
      // A whole unfragmented message in the input: handed out in place.
      in_frame_ = false;
      if (text && !(utf8_.feed(piece.data(), piece.size()) && utf8_.complete()))
        return fail(CloseCode::invalid_payload, "a text message is not valid UTF-8");
      Event e;
      e.kind = Event::Kind::message;
      e.opcode = static_cast<Opcode>(message_kind_);
      e.compressed = message_compressed_;
      e.payload = piece;
      message_kind_ = 0;
      return e;
    }
    frame_taken_ += piece.size();
    if (!take_data(piece)) return fail(CloseCode::invalid_payload, "a text message is not valid UTF-8");
    if (remaining_ > 0) return {};  // the input is used up
    in_frame_ = false;
    if (!fin_) continue;
    if (text && !utf8_.complete()) return fail(CloseCode::invalid_payload, "a text message is not valid UTF-8");
    Event e;
    e.kind = Event::Kind::message;
    e.opcode = static_cast<Opcode>(message_kind_);
    e.compressed = message_compressed_;
    e.payload = {reinterpret_cast<const std::uint8_t*>(message_.data()), message_.size()};
    message_kind_ = 0;
    clear_message_ = true;
    return e;
  }
}

}  // namespace stateroom::protocol
