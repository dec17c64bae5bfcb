// The Stateroom WebAssembly message format (v2): one encoder/decoder for the host and the guest.
//
// bincode 1.x defaults, as the Rust `stateroom-wasm` crate uses them: fixed-width little-endian
// integers; an enum is a u32 variant index followed by its fields; a string or byte vector is a u64
// length followed by the bytes; ClientId is a bare u32. See docs/wasm-abi.md.
//
// Freestanding like service.hpp: no exceptions, no RTTI, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "client_id.hpp"
#include "message_payload.hpp"
#include "message_recipient.hpp"
#include "utf8.hpp"

namespace stateroom::codec {

using stateroom::is_valid_utf8;

/// An event for the service, host → guest.
struct MessageToProcess {
  enum class Kind : std::uint32_t { init = 0, connect = 1, disconnect = 2, message = 3, timer = 4 };
  Kind kind = Kind::init;
  ClientId client{};         ///< connect, disconnect, message (the sender)
  MessagePayload payload{};  ///< message

  friend bool operator==(const MessageToProcess&, const MessageToProcess&) = default;
};

/// Something the service does, guest → host.
struct MessageFromProcess {
  enum class Kind : std::uint32_t { message = 0, set_timer = 1 };
  Kind kind = Kind::message;
  MessageRecipient recipient{};  ///< message
  MessagePayload payload{};      ///< message
  std::uint32_t ms_delay = 0;    ///< set_timer

  friend bool operator==(const MessageFromProcess&, const MessageFromProcess&) = default;
};

/// Why a buffer could not be decoded.
enum class DecodeError : std::uint8_t {
  none = 0,
  truncated,      ///< the buffer ends inside a field
  unknown_tag,    ///< an enum variant index out of range
  invalid_utf8,   ///< a Text payload that is not UTF-8
  trailing_bytes  ///< bytes left over after the message
};

constexpr std::string_view describe(DecodeError e) noexcept {
  switch (e) {
    case DecodeError::none:
      return "no error";
    case DecodeError::truncated:
      return "truncated message";
    case DecodeError::unknown_tag:
      return "unknown enum tag";
    case DecodeError::invalid_utf8:
      return "invalid UTF-8 in a text payload";
    case DecodeError::trailing_bytes:
      return "trailing bytes after the message";
  }
  return "unknown error";
}

template <class T>
struct Decoded {
  T value{};
  DecodeError error = DecodeError::none;
  bool ok() const noexcept { return error == DecodeError::none; }
};

namespace detail {

inline void put_u32(std::uint8_t*& out, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) *out++ = static_cast<std::uint8_t>(v >> (8 * i));
}
inline void put_u64(std::uint8_t*& out, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) *out++ = static_cast<std::uint8_t>(v >> (8 * i));
}
inline std::size_t payload_size(const MessagePayload& p) noexcept {
  return 4 + 8 + p.size();
}
inline void put_payload(std::uint8_t*& out, const MessagePayload& p) noexcept {
  put_u32(out, p.is_binary() ? 0 : 1);
  put_u64(out, p.size());
  const auto bytes = p.bytes();
  for (std::size_t i = 0; i < bytes.size(); ++i) out[i] = bytes[i];
  out += bytes.size();
}

/// A bounds-checked little-endian reader.
class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> data) noexcept : data_(data) {}
  bool u32(std::uint32_t& v) noexcept {
    if (data_.size() - pos_ < 4) return fail(DecodeError::truncated);
    v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(data_[pos_ + i]) << (8 * i);
    pos_ += 4;
    return true;
  }
  bool u64(std::uint64_t& v) noexcept {
    if (data_.size() - pos_ < 8) return fail(DecodeError::truncated);
    v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(data_[pos_ + i]) << (8 * i);
    pos_ += 8;
    return true;
  }
  bool payload(MessagePayload& p) noexcept {
    std::uint32_t tag = 0;
    std::uint64_t len = 0;
    if (!u32(tag)) return false;
    if (tag > 1) return fail(DecodeError::unknown_tag);
    if (!u64(len)) return false;
    if (len > data_.size() - pos_) return fail(DecodeError::truncated);
    const std::string_view bytes(reinterpret_cast<const char*>(data_.data() + pos_), static_cast<std::size_t>(len));
    pos_ += static_cast<std::size_t>(len);
    if (tag == 1 && !is_valid_utf8(bytes)) return fail(DecodeError::invalid_utf8);
    p = MessagePayload::view(tag == 1 ? PayloadKind::text : PayloadKind::binary, bytes);
    return true;
  }
  bool fail(DecodeError e) noexcept {
    error_ = e;
    return false;
  }
  DecodeError finish() noexcept {
    if (error_ == DecodeError::none && pos_ != data_.size()) error_ = DecodeError::trailing_bytes;
    return error_;
  }

 private:
  std::span<const std::uint8_t> data_;
  std::size_t pos_ = 0;
  DecodeError error_ = DecodeError::none;
};

}  // namespace detail

/// Bytes a `Message` event from `sender` with `payload` encodes to (MessageToProcess::Kind::message,
/// without building a MessageToProcess and copying the payload into it).
inline std::size_t encoded_message_size(const MessagePayload& payload) noexcept {
  return 8 + detail::payload_size(payload);
}
/// Writes the `Message` event from `sender` with `payload` to `out`, which must have room for
/// encoded_message_size(payload) bytes.
inline void encode_message_to(ClientId sender, const MessagePayload& payload, std::uint8_t* out) noexcept {
  detail::put_u32(out, static_cast<std::uint32_t>(MessageToProcess::Kind::message));
  detail::put_u32(out, sender.value);
  detail::put_payload(out, payload);
}

/// Bytes `m` encodes to.
inline std::size_t encoded_size(const MessageToProcess& m) noexcept {
  switch (m.kind) {
    case MessageToProcess::Kind::connect:
    case MessageToProcess::Kind::disconnect:
      return 8;
    case MessageToProcess::Kind::message:
      return encoded_message_size(m.payload);
    default:
      return 4;
  }
}
inline std::size_t encoded_size(const MessageFromProcess& m) noexcept {
  if (m.kind == MessageFromProcess::Kind::set_timer) return 8;
  const std::size_t recipient = m.recipient.kind == MessageRecipient::Kind::broadcast ? 4 : 8;
  return 4 + recipient + detail::payload_size(m.payload);
}

/// Writes `m` to `out`, which must have room for encoded_size(m) bytes.
inline void encode_to(const MessageToProcess& m, std::uint8_t* out) noexcept {
  if (m.kind == MessageToProcess::Kind::message) {
    encode_message_to(m.client, m.payload, out);
    return;
  }
  detail::put_u32(out, static_cast<std::uint32_t>(m.kind));
  if (m.kind == MessageToProcess::Kind::connect || m.kind == MessageToProcess::Kind::disconnect)
    detail::put_u32(out, m.client.value);
}
inline void encode_to(const MessageFromProcess& m, std::uint8_t* out) noexcept {
  detail::put_u32(out, static_cast<std::uint32_t>(m.kind));
  if (m.kind == MessageFromProcess::Kind::set_timer) {
    detail::put_u32(out, m.ms_delay);
    return;
  }
  detail::put_u32(out, static_cast<std::uint32_t>(m.recipient.kind));
  if (m.recipient.kind != MessageRecipient::Kind::broadcast) detail::put_u32(out, m.recipient.id.value);
  detail::put_payload(out, m.payload);
}

/// `m` encoded into a new buffer.
template <class Message>
std::string encode(const Message& m) {
  std::string out(encoded_size(m), '\0');
  encode_to(m, reinterpret_cast<std::uint8_t*>(out.data()));
  return out;
}

/// Decodes one event. A decoded payload is a view of `data` (MessagePayload::view): nothing is
/// copied, and it is valid while `data` is; copy the payload to keep it.
inline Decoded<MessageToProcess> decode_to_process(std::span<const std::uint8_t> data) {
  Decoded<MessageToProcess> d;
  detail::Reader r(data);
  std::uint32_t tag = 0;
  if (r.u32(tag)) {
    if (tag > 4) {
      r.fail(DecodeError::unknown_tag);
    } else {
      d.value.kind = static_cast<MessageToProcess::Kind>(tag);
      if (tag == 1 || tag == 2 || tag == 3) {
        if (r.u32(d.value.client.value) && tag == 3) r.payload(d.value.payload);
      }
    }
  }
  d.error = r.finish();
  return d;
}

/// Decodes one action; its payload, too, is a view of `data`.
inline Decoded<MessageFromProcess> decode_from_process(std::span<const std::uint8_t> data) {
  Decoded<MessageFromProcess> d;
  detail::Reader r(data);
  std::uint32_t tag = 0;
  if (r.u32(tag)) {
    if (tag == 1) {
      d.value.kind = MessageFromProcess::Kind::set_timer;
      r.u32(d.value.ms_delay);
    } else if (tag == 0) {
      std::uint32_t recipient = 0;
      if (r.u32(recipient)) {
        if (recipient > 2) {
          r.fail(DecodeError::unknown_tag);
        } else {
          d.value.recipient.kind = static_cast<MessageRecipient::Kind>(recipient);
          if (recipient == 0 || r.u32(d.value.recipient.id.value)) r.payload(d.value.payload);
        }
      }
    } else {
      r.fail(DecodeError::unknown_tag);
    }
  }
  d.error = r.finish();
  return d;
}

}  // namespace stateroom::codec
