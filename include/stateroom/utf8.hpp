// Utf8Validator: incremental UTF-8 validation, for text that arrives in pieces.
//
// Freestanding like service.hpp (the guest SDK's codec uses it too).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace stateroom {

/// Checks UTF-8 as it arrives: feed it the pieces of one text in order. It rejects overlong forms,
/// surrogates and code points past U+10FFFF at the first byte that makes the text invalid, so a
/// receiver can fail fast. A text is valid when every `feed` returned true and `complete()` holds.
class Utf8Validator {
 public:
  /// Checks the next `size` bytes. False at the first invalid byte; the validator must then not
  /// be fed again until `reset`.
  constexpr bool feed(const std::uint8_t* data, std::size_t size) noexcept {
    std::size_t i = 0;
    while (i < size) {
      if (need_ == 0) {
        // Runs of ASCII, eight bytes at a time.
        while (i + 8 <= size) {
          std::uint64_t word = 0;
          for (int k = 0; k < 8; ++k) word |= static_cast<std::uint64_t>(data[i + k]) << (8 * k);
          if (word & 0x8080808080808080ull) break;
          i += 8;
        }
        if (i == size) break;
        const std::uint8_t c = data[i++];
        if (c < 0x80) continue;
        if (c >= 0xC2 && c <= 0xDF) {
          need_ = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
          need_ = 2;
          if (c == 0xE0) low_ = 0xA0;        // no overlong 3-byte forms
          else if (c == 0xED) high_ = 0x9F;  // no surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
          need_ = 3;
          if (c == 0xF0) low_ = 0x90;        // no overlong 4-byte forms
          else if (c == 0xF4) high_ = 0x8F;  // nothing past U+10FFFF
        } else {
          return false;
        }
        continue;
      }
      const std::uint8_t c = data[i++];
      if (c < low_ || c > high_) return false;
      low_ = 0x80;
      high_ = 0xBF;
      --need_;
    }
    return true;
  }
  constexpr bool feed(std::string_view text) noexcept {
    if (!std::is_constant_evaluated())
      return feed(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
    // In a constant expression the bytes are copied: no reinterpret_cast there.
    std::size_t i = 0;
    while (i < text.size()) {
      std::uint8_t chunk[64] = {};
      std::size_t n = 0;
      while (n < sizeof chunk && i < text.size()) chunk[n++] = static_cast<std::uint8_t>(text[i++]);
      if (!feed(chunk, n)) return false;
    }
    return true;
  }
  /// Whether the text fed so far ends at a character boundary.
  constexpr bool complete() const noexcept { return need_ == 0; }
  constexpr void reset() noexcept { *this = Utf8Validator{}; }

 private:
  std::uint8_t need_ = 0;     ///< continuation bytes still expected
  std::uint8_t low_ = 0x80;   ///< range allowed for the next continuation byte
  std::uint8_t high_ = 0xBF;
};

/// Whether `text` is well-formed UTF-8.
constexpr bool is_valid_utf8(std::string_view text) noexcept {
  Utf8Validator v;
  return v.feed(text) && v.complete();
}

}  // namespace stateroom
