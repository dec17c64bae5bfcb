#include "log_format.hpp"

#include <fmt/format.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <memory>

namespace stateroom::server {
namespace {

/// The length of the character of UTF-8 that begins at `text[i]` when it is one that may be shown
/// (valid, and not a C0 or C1 control, DEL, a backslash (which begins an escape), a line or
/// paragraph separator, or a bidirectional override or isolate, which reorder what follows), else 0.
std::size_t printable_at(std::string_view text, std::size_t i) noexcept {
  const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(text[k]); };
  const std::uint8_t b = byte(i);
  if (b < 0x80) return (b < 0x20 || b == 0x7f || b == '\\') ? 0 : 1;
  std::size_t n = 0;
  std::uint32_t cp = 0;
  if (b >= 0xc2 && b <= 0xdf) {
    n = 2, cp = b & 0x1f;
  } else if (b >= 0xe0 && b <= 0xef) {
    n = 3, cp = b & 0x0f;
  } else if (b >= 0xf0 && b <= 0xf4) {
    n = 4, cp = b & 0x07;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3f);
  }
  // Overlong forms, surrogates, past U+10FFFF, and the C1 controls (U+0080 to U+009F).
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff) ||
      cp < 0xa0)
    return 0;
  // U+2028 and U+2029 end a line for some readers; U+202A to U+202E and U+2066 to U+2069 reorder it.
  if ((cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069)) return 0;
  return n;
}

/// spdlog's formatter with the message escaped first.
class EscapingFormatter final : public spdlog::formatter {
 public:
  EscapingFormatter() : inner_(std::make_unique<spdlog::pattern_formatter>()) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    if (!needs_escape_for_log(payload)) return inner_->format(msg, dest);
    const std::string escaped = escape_for_log(payload);
    spdlog::details::log_msg copy = msg;
    copy.payload = escaped;
    inner_->format(copy, dest);
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<EscapingFormatter>(); }

 private:
  std::unique_ptr<spdlog::formatter> inner_;
};

}  // namespace

bool needs_escape_for_log(std::string_view text) noexcept {
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = printable_at(text, i);
    if (n == 0) return true;
    i += n;
  }
  return false;
}

std::string escape_for_log(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    if (const std::size_t n = printable_at(text, i)) {
      out.append(text.substr(i, n));
      i += n;
    } else {
      out += fmt::format("\\x{:02x}", static_cast<std::uint8_t>(text[i]));
      ++i;
    }
  }
  return out;
}

void escape_logged_messages() { spdlog::set_formatter(std::make_unique<EscapingFormatter>()); }

}  // namespace stateroom::server
