// Small pieces of text the libraries and the command share: a digest in hex, a byte size for people.
#pragma once

#include <fmt/format.h>
#include <openssl/evp.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace stateroom::detail {

/// The SHA-256 of `bytes` in lower-case hex (empty when OpenSSL cannot hash).
inline std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (!EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_sha256(), nullptr)) return {};
  std::string hex;
  hex.reserve(2 * size);
  for (unsigned int i = 0; i < size; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

/// `bytes` for people: exact in the largest binary unit that divides it ("64 MiB", "768 KiB"), else
/// to one decimal from a KiB on ("1.4 MiB"), else in bytes ("917 bytes").
inline std::string format_bytes(std::uint64_t bytes) {
  constexpr std::uint64_t kib = 1u << 10, mib = 1u << 20, gib = 1u << 30;
  if (bytes != 0) {
    if (bytes % gib == 0) return fmt::format("{} GiB", bytes / gib);
    if (bytes % mib == 0) return fmt::format("{} MiB", bytes / mib);
    if (bytes % kib == 0) return fmt::format("{} KiB", bytes / kib);
  }
  const auto in = [&](std::uint64_t unit) { return static_cast<double>(bytes) / static_cast<double>(unit); };
  if (bytes >= gib) return fmt::format("{:.1f} GiB", in(gib));
  if (bytes >= mib) return fmt::format("{:.1f} MiB", in(mib));
  if (bytes >= kib) return fmt::format("{:.1f} KiB", in(kib));
  return fmt::format("{} bytes", bytes);
}

}  // namespace stateroom::detail
