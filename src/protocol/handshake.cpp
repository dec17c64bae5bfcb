#include "handshake.hpp"

#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/core/detail/sha1.hpp>

namespace stateroom::protocol {

namespace base64 = boost::beast::detail::base64;

namespace {
constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
}  // namespace

bool is_valid_client_key(std::string_view key) noexcept {
  // 16 bytes encode to 22 characters and "==".
  if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
  std::uint8_t decoded[18];
  const auto [written, read] = base64::decode(decoded, key.data(), key.size());
  return written == 16 && read == 22;  // decoding stops at the padding
}

std::string accept_key(std::string_view key) {
  namespace sha1 = boost::beast::detail;
  sha1::sha1_context ctx;
  sha1::init(ctx);
  sha1::update(ctx, key.data(), key.size());
  sha1::update(ctx, guid.data(), guid.size());
  std::uint8_t digest[sha1::sha1_context::digest_size];
  sha1::finish(ctx, digest);
  std::string out(base64::encoded_size(sizeof digest), '\0');
  out.resize(base64::encode(out.data(), digest, sizeof digest));
  return out;
}

std::string make_client_key(const std::array<std::uint8_t, 16>& random_bytes) {
  std::string out(base64::encoded_size(random_bytes.size()), '\0');
  out.resize(base64::encode(out.data(), random_bytes.data(), random_bytes.size()));
  return out;
}

}  // namespace stateroom::protocol
