// auth_gate: the checks before a WebSocket upgrade (src/server/gate.hpp, token.hpp), the input
// being an upgrade's Origin, Authorization header, query and room id, and a clock.
//   normalize_origin(): what it returns is lower case, has a "://" after a scheme, no default port,
//     and normalizes to itself.
//   Gate with an origin list: the upgrade is refused 403 exactly when it has an Origin whose
//     normal form is not one of the list's (compared with a plain loop here).
//   Gate with a token secret: token_of() finds the Bearer header's token, else the query's
//     `token=`; the upgrade passes exactly when check_token() says valid, else it is answered 401
//     (missing, malformed) or 403 (bad signature, expired, another room), never with an empty
//     reason; a token over 1024 characters is malformed.
//   Tokens minted for the input's room and expiry pass until the expiry, and not from then on, not
//     for another room, not with any byte of the signature changed, and not under another secret.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common.hpp"
#include "server/gate.hpp"
#include "server/token.hpp"

using namespace stateroom;
using namespace stateroom::server;

namespace {

const std::string secret = "0123456789abcdef0123456789abcdef";
const std::vector<std::string> allowed = {"https://a.example", "http://localhost:8080",
                                          "HTTP://B.Example:80"};

struct Request final : ConnectionRequest {
  std::string room, query_text, origin, authorization;
  std::string_view room_id() const noexcept override { return room; }
  std::string_view path() const noexcept override { return "/ws/x"; }
  std::string_view query() const noexcept override { return query_text; }
  std::string_view header(std::string_view name) const noexcept override {
    if (name == "Origin") return origin;
    if (name == "Authorization") return authorization;
    return {};
  }
  std::string_view remote_address() const noexcept override { return "203.0.113.7"; }
};

struct AcceptAll final : ServiceFactory {
  std::unique_ptr<Service> create(std::string_view, Context&) override { return nullptr; }
};

/// Splits the input at 0x00 bytes into up to `n` fields (missing ones empty).
std::vector<std::string> fields(std::string_view input, std::size_t n) {
  std::vector<std::string> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t end = input.find('\0');
    out[i] = std::string(input.substr(0, end));
    if (end == std::string_view::npos) break;
    input.remove_prefix(end + 1);
  }
  return out;
}

bool is_lower(std::string_view s) {
  for (char c : s)
    if (c >= 'A' && c <= 'Z') return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static AcceptAll factory;
  static const Gate origins = [] {
    Gate g;
    ServerOptions o;
    o.allowed_origins = allowed;
    FUZZ_CHECK(!g.configure(o, nullptr));
    return g;
  }();
  static const Gate tokens = [] {
    Gate g;
    ServerOptions o;
    o.auth_token_secret = secret;
    FUZZ_CHECK(!g.configure(o, nullptr));
    return g;
  }();

  const auto f = fields({reinterpret_cast<const char*>(data), size}, 5);
  Request request;
  request.origin = f[0];
  request.authorization = f[1];
  request.query_text = f[2];
  request.room = f[3];
  std::uint64_t clock = 0;
  for (char c : f[4]) clock = clock * 31 + static_cast<unsigned char>(c);
  const auto now = static_cast<std::int64_t>(clock & ((std::uint64_t{1} << 40) - 1));

  // Origins.
  const auto normal = normalize_origin(request.origin);
  if (normal) {
    FUZZ_CHECK(is_lower(*normal));
    FUZZ_CHECK(normal->find("://") != std::string::npos);
    FUZZ_CHECK(!normal->starts_with("http://") || !normal->ends_with(":80"));
    FUZZ_CHECK(!normal->starts_with("https://") || !normal->ends_with(":443"));
    FUZZ_CHECK(normalize_origin(*normal) == normal);
  }
  bool listed = false;
  for (const std::string& entry : allowed) listed = listed || (normal && normalize_origin(entry) == normal);
  const Verdict by_origin = origins.check(request, factory, now);
  FUZZ_CHECK(by_origin.accepted() == (request.origin.empty() || listed));
  if (!by_origin.accepted())
    FUZZ_CHECK(by_origin.kind == Verdict::Kind::forbidden && !by_origin.reason.empty());

  // Tokens as they come.
  const std::string token = token_of(request);
  const TokenCheck check = check_token(secret, token, request.room, now);
  if (token.size() > max_token_size) FUZZ_CHECK(check == TokenCheck::malformed);
  if (token.empty()) FUZZ_CHECK(check == TokenCheck::missing);
  const Verdict by_token = tokens.check(request, factory, now);
  FUZZ_CHECK(by_token.accepted() == (check == TokenCheck::valid));
  if (!by_token.accepted()) {
    FUZZ_CHECK(!by_token.reason.empty());
    const bool unauthorized = check == TokenCheck::missing || check == TokenCheck::malformed;
    FUZZ_CHECK(by_token.kind == (unauthorized ? Verdict::Kind::unauthorized : Verdict::Kind::forbidden));
  }

  // Tokens minted for the input's room.
  if (request.room.size() <= 256) {
    const std::int64_t expiry = now + 1 + (size % 1000);
    const std::string minted = mint_token(secret, request.room, expiry);
    FUZZ_CHECK(!minted.empty());
    FUZZ_CHECK(check_token(secret, minted, request.room, now) == TokenCheck::valid);
    FUZZ_CHECK(check_token(secret, minted, request.room, expiry - 1) == TokenCheck::valid);
    FUZZ_CHECK(check_token(secret, minted, request.room, expiry) == TokenCheck::expired);
    FUZZ_CHECK(check_token(secret, minted, request.room + "x", now) == TokenCheck::wrong_room);
    FUZZ_CHECK(check_token(secret + "!", minted, request.room, now) == TokenCheck::bad_signature);
    // A changed signature byte (after the dot) is never valid.
    const std::size_t dot = minted.find('.');
    FUZZ_CHECK(dot != std::string::npos && dot + 1 < minted.size());
    std::string forged = minted;
    const std::size_t at = dot + 1 + (size % (minted.size() - dot - 1));
    forged[at] = forged[at] == 'A' ? 'B' : 'A';
    FUZZ_CHECK(check_token(secret, forged, request.room, now) != TokenCheck::valid);
    // Through the gate, as a query parameter and as a Bearer header.
    Request with_token;
    with_token.room = request.room;
    with_token.query_text = "a=1&token=" + minted;
    FUZZ_CHECK(tokens.check(with_token, factory, now).accepted());
    with_token.query_text.clear();
    with_token.authorization = "Bearer " + minted;
    FUZZ_CHECK(tokens.check(with_token, factory, now).accepted());
  }
  return 0;
}
