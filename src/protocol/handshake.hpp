// The opening handshake's keys (RFC 6455 §4), for the server and for clients such as the load
// generator. The HTTP request itself is parsed by Beast.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace stateroom::protocol {

/// Whether `key` is a valid Sec-WebSocket-Key: the base64 encoding of exactly 16 bytes (§4.1).
bool is_valid_client_key(std::string_view key) noexcept;

/// The Sec-WebSocket-Accept answering `key`: base64(SHA-1(key + the RFC's GUID)).
std::string accept_key(std::string_view key);

/// A Sec-WebSocket-Key made of 16 random bytes (for clients).
std::string make_client_key(const std::array<std::uint8_t, 16>& random_bytes);

}  // namespace stateroom::protocol
