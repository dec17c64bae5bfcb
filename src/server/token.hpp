// Room tokens: `base64url(payload) "." base64url(HMAC-SHA256(secret, payload))`, the payload being
// `<expiry>\n<room id>` (docs/auth.md has the format and minters). Pure: no I/O, no clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace stateroom::server {

/// Longest token accepted, in characters (one for a room id of 256 bytes takes about 400).
inline constexpr std::size_t max_token_size = 1024;

/// What checking a token found.
enum class TokenCheck : std::uint8_t {
  valid,
  missing,        ///< no token (401)
  malformed,      ///< not a token: too long, not two unpadded base64url parts, a payload that is not
                  ///< `<expiry>\n<room id>` or a signature that is not 32 bytes (401)
  bad_signature,  ///< not signed with the secret (403)
  expired,        ///< signed, but its expiry has passed (403)
  wrong_room,     ///< signed, for another room (403)
};

/// Checks `token` against `secret` for room `room_id` at `now` (unix seconds). The signature is
/// compared in constant time, and before anything the payload says is trusted. Thread-safe.
TokenCheck check_token(std::string_view secret, std::string_view token, std::string_view room_id,
                       std::int64_t now);

/// A token for `room_id` that expires at `expiry` (unix seconds), signed with `secret`; empty
/// when OpenSSL cannot sign.
std::string mint_token(std::string_view secret, std::string_view room_id, std::int64_t expiry);

/// Base64url without padding (RFC 4648 §5).
std::string base64url_encode(std::string_view bytes);

}  // namespace stateroom::server
