// MessagePayload: one WebSocket message, text or binary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stateroom {

/// The kind of a message; it is kept end to end (a text frame in, a text frame out).
enum class PayloadKind : std::uint8_t {
  binary = 0,  ///< a WebSocket binary frame (`Bytes` in the wire format)
  text = 1,    ///< a WebSocket text frame, UTF-8 (`Text` in the wire format)
};

/// One message, text or binary. Strings convert to text and byte vectors / spans to binary, so
/// `ctx.send(id, "hi")` sends a text frame and `ctx.send(id, std::vector<std::uint8_t>{1, 2})` a
/// binary one. Moving a payload moves its buffer; copying copies it.
class MessagePayload {
 public:
  /// An empty text message.
  MessagePayload() = default;

  MessagePayload(std::string text) : data_(std::move(text)), kind_(PayloadKind::text) {}
  MessagePayload(std::string_view text) : data_(text), kind_(PayloadKind::text) {}
  MessagePayload(const char* text) : data_(text), kind_(PayloadKind::text) {}
  MessagePayload(std::span<const std::uint8_t> bytes)
      : data_(reinterpret_cast<const char*>(bytes.data()), bytes.size()), kind_(PayloadKind::binary) {}
  MessagePayload(const std::vector<std::uint8_t>& bytes)
      : MessagePayload(std::span<const std::uint8_t>(bytes)) {}

  /// A payload of the given kind holding `data` as it is (for text, `data` should be UTF-8).
  static MessagePayload of_kind(PayloadKind kind, std::string data) {
    MessagePayload p(std::move(data));
    p.kind_ = kind;
    return p;
  }
  /// A binary payload holding the bytes of `data`.
  static MessagePayload binary(std::string data) { return of_kind(PayloadKind::binary, std::move(data)); }

  PayloadKind kind() const noexcept { return kind_; }
  bool is_text() const noexcept { return kind_ == PayloadKind::text; }
  bool is_binary() const noexcept { return kind_ == PayloadKind::binary; }

  /// The text of a text message; nothing for a binary one. `msg.text() == "increment"` is false
  /// for a binary message holding those bytes.
  std::optional<std::string_view> text() const noexcept {
    if (kind_ != PayloadKind::text) return std::nullopt;
    return std::string_view(data_);
  }

  /// The raw bytes, whatever the kind.
  std::span<const std::uint8_t> bytes() const noexcept {
    return {reinterpret_cast<const std::uint8_t*>(data_.data()), data_.size()};
  }
  /// The raw bytes as a string view, whatever the kind.
  std::string_view view() const noexcept { return data_; }
  std::size_t size() const noexcept { return data_.size(); }
  bool empty() const noexcept { return data_.empty(); }

  /// Gives up the buffer (the payload is left empty).
  std::string release() && noexcept { return std::move(data_); }

  friend bool operator==(const MessagePayload&, const MessagePayload&) = default;

 private:
  std::string data_;
  PayloadKind kind_ = PayloadKind::text;
};

}  // namespace stateroom
