#include "token.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>
#include <charconv>
#include <memory>
#include <optional>

namespace stateroom::server {

namespace {

constexpr std::size_t mac_size = 32;  ///< SHA-256
constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Decodes unpadded base64url into `out` (which holds at least size * 3 / 4 bytes); its length, or
/// nothing for any other character, a length no encoding has, or leftover bits that are not zero
/// (so that each byte string has exactly one encoding).
std::optional<std::size_t> base64url_decode(std::string_view text, std::uint8_t* out) noexcept {
  static constexpr auto values = [] {
    std::array<std::int8_t, 256> v{};
    v.fill(-1);
    for (std::size_t i = 0; i < alphabet.size(); ++i)
      v[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
    return v;
  }();
  if (text.size() % 4 == 1) return std::nullopt;
  std::uint32_t bits = 0;
  int held = 0;
  std::size_t n = 0;
  for (const char c : text) {
    const std::int8_t v = values[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<std::uint32_t>(v);
    held += 6;
    if (held >= 8) {
      held -= 8;
      out[n++] = static_cast<std::uint8_t>(bits >> held);
    }
  }
  if ((bits & ((1u << held) - 1)) != 0) return std::nullopt;
  return n;
}

/// An HMAC-SHA256 context keyed with one secret. Contexts are not shared between threads (OpenSSL's
/// are not safe for simultaneous use), so each thread keys one of its own and then only resets it
/// per token: a one-shot HMAC() looks the algorithm up and keys it anew every time, at several times
/// the cost.
struct KeyedMac {
  struct Free {
    void operator()(EVP_MAC* mac) const noexcept { EVP_MAC_free(mac); }
    void operator()(EVP_MAC_CTX* ctx) const noexcept { EVP_MAC_CTX_free(ctx); }
  };
  std::unique_ptr<EVP_MAC, Free> algorithm{EVP_MAC_fetch(nullptr, "HMAC", nullptr)};
  std::unique_ptr<EVP_MAC_CTX, Free> ctx;
  std::string secret;  ///< the key `ctx` holds

  /// Readies `ctx` for a new message under `key`.
  bool reset(std::string_view key) {
    if (ctx && key == secret) return EVP_MAC_init(ctx.get(), nullptr, 0, nullptr) == 1;  // the same key again
    ctx.reset(algorithm ? EVP_MAC_CTX_new(algorithm.get()) : nullptr);
    secret.assign(key);
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                 OSSL_PARAM_construct_end()};
    const auto* bytes = reinterpret_cast<const unsigned char*>(key.empty() ? "" : key.data());  // never null
    if (ctx && EVP_MAC_init(ctx.get(), bytes, key.size(), params) == 1) return true;
    ctx.reset();
    return false;
  }
};

/// HMAC-SHA256 of `data` with key `secret`; false when OpenSSL fails (then nothing is signed).
bool mac_of(std::string_view secret, const std::uint8_t* data, std::size_t size,
            std::array<std::uint8_t, mac_size>& mac) {
  thread_local KeyedMac keyed;
  std::size_t length = 0;
  return keyed.reset(secret) && EVP_MAC_update(keyed.ctx.get(), data, size) == 1 &&
         EVP_MAC_final(keyed.ctx.get(), mac.data(), &length, mac.size()) == 1 && length == mac_size;
}

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::uint32_t bits = 0;
  int held = 0;
  for (const char c : bytes) {
    bits = (bits << 8) | static_cast<unsigned char>(c);
    held += 8;
    while (held >= 6) {
      held -= 6;
      out.push_back(alphabet[(bits >> held) & 63]);
    }
  }
  if (held > 0) out.push_back(alphabet[(bits << (6 - held)) & 63]);
  return out;
}

std::string mint_token(std::string_view secret, std::string_view room_id, std::int64_t expiry) {
  const std::string payload = std::to_string(expiry) + "\n" + std::string(room_id);
  std::array<std::uint8_t, mac_size> mac{};
  if (!mac_of(secret, reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size(), mac)) return {};
  return base64url_encode(payload) + "." +
         base64url_encode(std::string_view(reinterpret_cast<const char*>(mac.data()), mac.size()));
}

TokenCheck check_token(std::string_view secret, std::string_view token, std::string_view room_id,
                       std::int64_t now) {
  if (token.empty()) return TokenCheck::missing;
  if (token.size() > max_token_size) return TokenCheck::malformed;
  const std::size_t dot = token.find('.');
  if (dot == std::string_view::npos) return TokenCheck::malformed;
  std::array<std::uint8_t, max_token_size> payload{};
  std::array<std::uint8_t, max_token_size> signature{};
  const auto payload_size = base64url_decode(token.substr(0, dot), payload.data());
  const auto signature_size = base64url_decode(token.substr(dot + 1), signature.data());
  if (!payload_size || !signature_size || *signature_size != mac_size) return TokenCheck::malformed;

  // The payload: the expiry in decimal digits, a newline, the room id (every byte after it).
  const std::string_view text(reinterpret_cast<const char*>(payload.data()), *payload_size);
  const std::size_t newline = text.find('\n');
  if (newline == std::string_view::npos || newline == 0 || newline > 19) return TokenCheck::malformed;
  std::int64_t expiry = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + newline, expiry);
  if (text[0] == '-' || ec != std::errc{} || end != text.data() + newline) return TokenCheck::malformed;

  std::array<std::uint8_t, mac_size> mac{};
  if (!mac_of(secret, payload.data(), *payload_size, mac) ||
      CRYPTO_memcmp(mac.data(), signature.data(), mac_size) != 0)
    return TokenCheck::bad_signature;
  if (now >= expiry) return TokenCheck::expired;
  if (text.substr(newline + 1) != room_id) return TokenCheck::wrong_room;
  return TokenCheck::valid;
}

}  // namespace stateroom::server
