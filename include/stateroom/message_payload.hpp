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
/// binary one.
///
/// A payload either owns its bytes or, made with `view`, borrows them. The server hands a service
/// the messages it receives as borrowed payloads that point straight into its read buffer (no
/// copy, no allocation), valid for the duration of the handler call. Copying any payload makes an
/// owning copy, so a service that keeps a message (`history.push_back(msg)`) keeps its own bytes;
/// moving a payload moves its buffer, or its view.
class MessagePayload {
 public:
  /// An empty text message.
  MessagePayload() = default;

  MessagePayload(std::string text) : owned_(std::move(text)), kind_(PayloadKind::text) {}
  MessagePayload(std::string_view text) : owned_(text), kind_(PayloadKind::text) {}
  MessagePayload(const char* text) : owned_(text), kind_(PayloadKind::text) {}
  MessagePayload(std::span<const std::uint8_t> bytes)
      : owned_(reinterpret_cast<const char*>(bytes.data()), bytes.size()), kind_(PayloadKind::binary) {}
  MessagePayload(const std::vector<std::uint8_t>& bytes)
      : MessagePayload(std::span<const std::uint8_t>(bytes)) {}

  MessagePayload(const MessagePayload& other) : owned_(other.view()), kind_(other.kind_) {}
  MessagePayload(MessagePayload&& other) noexcept = default;
  MessagePayload& operator=(const MessagePayload& other) {
    if (this != &other) {
      owned_.assign(other.view());
      borrowed_ = {};
      is_view_ = false;
      kind_ = other.kind_;
    }
    return *this;
  }
  MessagePayload& operator=(MessagePayload&& other) noexcept = default;
  ~MessagePayload() = default;

  /// A payload of the given kind holding `data` as it is (for text, `data` should be UTF-8).
  static MessagePayload of_kind(PayloadKind kind, std::string data) {
    MessagePayload p(std::move(data));
    p.kind_ = kind;
    return p;
  }
  /// A binary payload holding the bytes of `data`.
  static MessagePayload binary(std::string data) { return of_kind(PayloadKind::binary, std::move(data)); }
  /// A payload that borrows `data`: nothing is copied, and `data` must outlive the payload and
  /// every move of it.
  static MessagePayload view(PayloadKind kind, std::string_view data) noexcept {
    MessagePayload p;
    p.borrowed_ = data;
    p.is_view_ = true;
    p.kind_ = kind;
    return p;
  }
  static MessagePayload view(PayloadKind kind, std::span<const std::uint8_t> data) noexcept {
    return view(kind, std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
  }

  PayloadKind kind() const noexcept { return kind_; }
  bool is_text() const noexcept { return kind_ == PayloadKind::text; }
  bool is_binary() const noexcept { return kind_ == PayloadKind::binary; }
  /// Whether the payload borrows its bytes (see `view`).
  bool is_view() const noexcept { return is_view_; }

  /// The text of a text message; nothing for a binary one. `msg.text() == "increment"` is false
  /// for a binary message holding those bytes.
  std::optional<std::string_view> text() const noexcept {
    if (kind_ != PayloadKind::text) return std::nullopt;
    return view();
  }

  /// The raw bytes, whatever the kind.
  std::span<const std::uint8_t> bytes() const noexcept {
    const std::string_view v = view();
    return {reinterpret_cast<const std::uint8_t*>(v.data()), v.size()};
  }
  /// The raw bytes as a string view, whatever the kind.
  std::string_view view() const noexcept { return is_view_ ? borrowed_ : std::string_view(owned_); }
  std::size_t size() const noexcept { return view().size(); }
  bool empty() const noexcept { return view().empty(); }

  /// Gives up the buffer (the payload is left empty); a view's bytes are copied.
  std::string release() && {
    if (is_view_) return std::string(borrowed_);
    return std::move(owned_);
  }

  friend bool operator==(const MessagePayload& a, const MessagePayload& b) noexcept {
    return a.kind_ == b.kind_ && a.view() == b.view();
  }

 private:
  std::string owned_;
  std::string_view borrowed_;
  bool is_view_ = false;
  PayloadKind kind_ = PayloadKind::text;
};

}  // namespace stateroom
