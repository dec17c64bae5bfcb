// The checks before the upgrade: origins, where the token comes from, the order of the checks and
// the service factory's verdict, on requests made up without sockets.
#include "server/gate.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <sstream>
#include <string>

#include "server/admission.hpp"

#include "server/token.hpp"

namespace stateroom::server {
namespace {

const std::string secret = "0123456789abcdef0123456789abcdef";

/// A request as ServiceFactory::admit sees one.
struct FakeRequest final : ConnectionRequest {
  std::string room = "lobby";
  std::string target_path = "/ws/lobby";
  std::string target_query;
  std::map<std::string, std::string> headers;  ///< names in lower case
  std::string address = "198.51.100.4";

  std::string_view room_id() const noexcept override { return room; }
  std::string_view path() const noexcept override { return target_path; }
  std::string_view query() const noexcept override { return target_query; }
  std::string_view header(std::string_view name) const noexcept override {
    std::string key;
    for (char c : name) key.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    const auto it = headers.find(key);
    return it == headers.end() ? std::string_view() : std::string_view(it->second);
  }
  std::string_view remote_address() const noexcept override { return address; }
};

/// A factory whose admit refuses the user named in `X-User` "mallory", and counts its calls.
struct Bouncer final : ServiceFactory {
  int calls = 0;
  std::unique_ptr<Service> create(std::string_view, Context&) override { return nullptr; }
  Verdict admit(const ConnectionRequest& request) override {
    ++calls;
    if (request.header("x-user") == "mallory") return Verdict::forbidden("mallory is banned");
    if (request.header("x-user").empty()) return Verdict::unauthorized({});
    return Verdict::accept();
  }
};

Gate gate_for(ServerOptions options) {
  Gate gate;
  const auto error = gate.configure(options, nullptr);
  EXPECT_FALSE(error) << *error;
  return gate;
}

TEST(Gate, OriginsAreComparedAsBrowsersSendThem) {
  const std::pair<const char*, const char*> normal[] = {
      {"https://Example.COM", "https://example.com"},
      {"https://example.com:443", "https://example.com"},
      {"http://example.com:80", "http://example.com"},
      {"http://example.com:443", "http://example.com:443"},
      {"http://localhost:8080", "http://localhost:8080"},
      {"http://[::1]:8080", "http://[::1]:8080"},
      {"http://127.0.0.1", "http://127.0.0.1"},
      {"chrome-extension://abcdef", "chrome-extension://abcdef"},
  };
  for (const auto& [origin, expected] : normal) EXPECT_EQ(normalize_origin(origin), expected) << origin;
  for (const char* bad :
       {"", "*", "null", "example.com", "https://", "https://example.com/", "https://example.com/app",
        "https://example.com?x", "https://user@example.com", "https://exa mple.com",
        "https://example.com:", "https://example.com:8x", "https://example.com:1234567", "://x", "1http://x",
        "http://[::1", "http://[]", "http://[::g]"}) {
    EXPECT_FALSE(normalize_origin(bad)) << bad;
  }
  EXPECT_TRUE(is_origin_entry("*"));
  EXPECT_TRUE(is_origin_entry("https://example.com"));
  EXPECT_FALSE(is_origin_entry("https://example.com/"));
}

TEST(Gate, OnlyTheListedOriginsPassAndARequestWithoutOnePasses) {
  const Gate gate = gate_for({.allowed_origins = {"https://app.example", "http://LOCALHOST:8080"}});
  Bouncer factory;
  FakeRequest request;
  request.headers["x-user"] = "alice";
  EXPECT_TRUE(gate.check(request, factory).accepted()) << "no Origin: not a browser";
  for (const char* good : {"https://app.example", "https://APP.example:443", "http://localhost:8080"}) {
    request.headers["origin"] = good;
    EXPECT_TRUE(gate.check(request, factory).accepted()) << good;
  }
  for (const char* bad : {"https://evil.example", "http://app.example", "https://app.example:8443",
                          "https://app.example.evil", "null", "http://localhost:8081", "garbage"}) {
    request.headers["origin"] = bad;
    const Verdict verdict = gate.check(request, factory);
    EXPECT_EQ(verdict.kind, Verdict::Kind::forbidden) << bad;
    EXPECT_EQ(verdict.reason, std::string("origin ") + bad + " is not allowed");
  }
  const Gate any = gate_for({.allowed_origins = {"*"}});
  request.headers["origin"] = "null";
  EXPECT_TRUE(any.check(request, factory).accepted());
}

TEST(Gate, BadOptionsAreRefusedWithTheReason) {
  Gate gate;
  EXPECT_EQ(gate.configure({.allowed_origins = {"https://ok.example", "https://bad.example/"}}, nullptr),
            "'https://bad.example/' is not an origin (scheme://host[:port], or * for any)");
  EXPECT_EQ(gate.configure({.auth_token_secret = "fifteen bytes.."}, nullptr),
            "the auth token secret must be at least 16 bytes (32 random bytes are best)");
  EXPECT_FALSE(gate.configure({.auth_token_secret = "sixteen bytes..."}, nullptr));
}

TEST(Gate, TheTokenComesFromTheAuthorizationHeaderOrTheQuery) {
  FakeRequest request;
  EXPECT_EQ(token_of(request), "");
  request.target_query = "a=1&token=abc.def&token=second";
  EXPECT_EQ(token_of(request), "abc.def") << "the first";
  request.target_query = "xtoken=no&token=%41b.c";
  EXPECT_EQ(token_of(request), "Ab.c") << "percent-decoded";
  request.target_query = "token=%zz";
  EXPECT_EQ(token_of(request), "%zz") << "kept as it is, to be refused as malformed";
  request.target_query = "token=";
  EXPECT_EQ(token_of(request), "");
  request.headers["authorization"] = "Bearer  header.token";
  request.target_query = "token=query.token";
  EXPECT_EQ(token_of(request), "header.token");
  request.headers["authorization"] = "bearer header.token";
  EXPECT_EQ(token_of(request), "header.token");
  request.headers["authorization"] = "Basic dXNlcjpwYXNz";
  EXPECT_EQ(token_of(request), "query.token") << "another scheme is someone else's";
}

TEST(Gate, EveryTokenProblemHasItsStatusAndReason) {
  const Gate gate = gate_for({.auth_token_secret = secret});
  Bouncer factory;
  FakeRequest request;
  request.headers["x-user"] = "alice";
  const std::int64_t now = 1'700'000'000;
  auto verdict_for = [&](const std::string& token) {
    request.target_query = token.empty() ? "" : "token=" + token;
    return gate.check(request, factory, now);
  };
  const std::pair<std::string, Verdict> cases[] = {
      {"", Verdict::unauthorized("a token is required: connect with ?token=<token>")},
      {"not-a-token", Verdict::unauthorized("malformed token")},
      {mint_token("another secret, 32 bytes long...", "lobby", now + 60),
       Verdict::forbidden("the token's signature does not match")},
      {mint_token(secret, "lobby", now), Verdict::forbidden("the token has expired")},
      {mint_token(secret, "hall", now + 60), Verdict::forbidden("the token is for another room")},
  };
  for (const auto& [token, expected] : cases) {
    const Verdict got = verdict_for(token);
    EXPECT_EQ(got.kind, expected.kind) << token;
    EXPECT_EQ(got.reason, expected.reason) << token;
  }
  EXPECT_EQ(factory.calls, 0) << "the factory hears only of requests the server's checks let through";
  EXPECT_TRUE(verdict_for(mint_token(secret, "lobby", now + 60)).accepted());
  EXPECT_EQ(factory.calls, 1);
}

TEST(Gate, TheFactoryDecidesLastAndItsRefusalsKeepTheirKind) {
  const Gate gate = gate_for({.allowed_origins = {"https://app.example"}});
  Bouncer factory;
  FakeRequest request;
  request.headers["origin"] = "https://evil.example";
  request.headers["x-user"] = "mallory";
  EXPECT_EQ(gate.check(request, factory).reason, "origin https://evil.example is not allowed");
  EXPECT_EQ(factory.calls, 0);
  request.headers["origin"] = "https://app.example";
  Verdict verdict = gate.check(request, factory);
  EXPECT_EQ(verdict.kind, Verdict::Kind::forbidden);
  EXPECT_EQ(verdict.reason, "mallory is banned");
  request.headers.erase("x-user");
  verdict = gate.check(request, factory);
  EXPECT_EQ(verdict.kind, Verdict::Kind::unauthorized);
  EXPECT_EQ(verdict.reason, "unauthorized") << "a refusal without a reason gets one";
  request.headers["x-user"] = "alice";
  EXPECT_TRUE(gate.check(request, factory).accepted());
  EXPECT_EQ(factory.calls, 3);
}

TEST(Gate, RefusalsAreLoggedWithTheAddressTheRoomAndTheReason) {
  std::ostringstream out;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out)));
  RefusalLog log;
  Gate gate;
  ASSERT_FALSE(gate.configure({.auth_token_secret = secret}, &log));
  Bouncer factory;
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(gate.check(FakeRequest{}, factory).accepted());
  spdlog::set_default_logger(previous);
  const std::string text = out.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << "one line per 10 s per cause:\n" << text;
  EXPECT_NE(text.find("refused a connection from 198.51.100.4 to room 'lobby': a token is required"),
            std::string::npos)
      << text;
}

TEST(Gate, TheDefaultFactoryAcceptsEveryone) {
  struct Plain final : ServiceFactory {
    std::unique_ptr<Service> create(std::string_view, Context&) override { return nullptr; }
  } factory;
  EXPECT_TRUE(gate_for({}).check(FakeRequest{}, factory).accepted());
}

}  // namespace
}  // namespace stateroom::server
