// What the fuzz targets share: a check that stops the run with a message (libFuzzer then saves the
// input), and reference implementations simple enough to trust, to compare the project's code with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "stateroom/codec.hpp"

/// Stops the run when `cond` does not hold: libFuzzer reports the abort as a crash and writes the
/// input that caused it.
#define FUZZ_CHECK(cond)                                                                     \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)

namespace stateroom::fuzz {

/// The bytes of `s`, as the codec takes them.
inline std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

/// Whether a failed decode says one of the ways the format can be broken (and nothing else).
inline bool is_decode_error(codec::DecodeError e) {
  using codec::DecodeError;
  return e == DecodeError::truncated || e == DecodeError::unknown_tag || e == DecodeError::invalid_utf8 ||
         e == DecodeError::trailing_bytes;
}

/// Where a target keeps its fixture files: memory (/dev/shm) when there is one, since a target that
/// rewrites a file for every input would otherwise wait on the disk; else the temporary directory.
inline std::filesystem::path scratch_directory() {
  std::error_code ec;
  if (std::filesystem::is_directory("/dev/shm", ec)) return "/dev/shm";
  return std::filesystem::temp_directory_path();
}

/// Well-formed UTF-8, straight from the Unicode standard's table of well-formed byte sequences
/// (Table 3-7), one character at a time: the reference for the project's incremental validator.
inline bool reference_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  auto in = [&](std::size_t at, unsigned lo, unsigned hi) { return at < n && s[at] >= lo && s[at] <= hi; };
  while (i < n) {
    const unsigned c = s[i];
    if (c <= 0x7F) {
      i += 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      if (!in(i + 1, 0x80, 0xBF)) return false;
      i += 2;
    } else if (c == 0xE0) {
      if (!in(i + 1, 0xA0, 0xBF) || !in(i + 2, 0x80, 0xBF)) return false;
      i += 3;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
      if (!in(i + 1, 0x80, 0xBF) || !in(i + 2, 0x80, 0xBF)) return false;
      i += 3;
    } else if (c == 0xED) {
      if (!in(i + 1, 0x80, 0x9F) || !in(i + 2, 0x80, 0xBF)) return false;
      i += 3;
    } else if (c == 0xF0) {
      if (!in(i + 1, 0x90, 0xBF) || !in(i + 2, 0x80, 0xBF) || !in(i + 3, 0x80, 0xBF)) return false;
      i += 4;
    } else if (c >= 0xF1 && c <= 0xF3) {
      if (!in(i + 1, 0x80, 0xBF) || !in(i + 2, 0x80, 0xBF) || !in(i + 3, 0x80, 0xBF)) return false;
      i += 4;
    } else if (c == 0xF4) {
      if (!in(i + 1, 0x80, 0x8F) || !in(i + 2, 0x80, 0xBF) || !in(i + 3, 0x80, 0xBF)) return false;
      i += 4;
    } else {
      return false;
    }
  }
  return true;
}

inline bool reference_utf8(std::span<const std::uint8_t> bytes) {
  return reference_utf8(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

/// Whether `inner` lies entirely inside `outer` (an empty `inner` anywhere in or at the end of it).
inline bool within(std::span<const std::uint8_t> inner, std::span<const std::uint8_t> outer) {
  const auto b = reinterpret_cast<std::uintptr_t>(outer.data());
  const auto at = reinterpret_cast<std::uintptr_t>(inner.data());
  return at >= b && at + inner.size() <= b + outer.size();
}

}  // namespace stateroom::fuzz
