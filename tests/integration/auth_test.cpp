// The checks before the upgrade, over real sockets: an Origin not allowed, a missing or bad token
// and a refusal by the service factory are each answered 401 or 403 with the reason, before any
// room is built; what passes is in its room.
#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

#include "../support/probe_service.hpp"
#include "../support/ws_client.hpp"
#include "server/gate.hpp"
#include "server/token.hpp"
#include "stateroom/wasm.hpp"

namespace stateroom::test {
namespace {

const std::string secret = "0123456789abcdef0123456789abcdef";

std::string token_for(const std::string& room, std::int64_t seconds = 60) {
  return server::mint_token(secret, room, server::unix_time() + seconds);
}

/// What a refused upgrade must look like: `status`, the reason as a plain-text body.
void expect_refused(const HttpResponse& response, int status, const std::string& reason) {
  EXPECT_EQ(response.status, status) << response.body;
  EXPECT_EQ(response.body, reason + "\n");
  EXPECT_EQ(response.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(response.www_authenticate, status == 401 ? "Bearer" : "");
}

struct AuthTest : ::testing::Test {
  std::shared_ptr<EventLog> log = std::make_shared<EventLog>();
};

TEST_F(AuthTest, AnOriginNotAllowedIsAnswered403AndOneAllowedOrAbsentConnects) {
  TestServer server(probe_factory(log),
                    {.allowed_origins = {"https://app.example", "http://localhost:8080"}});
  expect_refused(upgrade_request(server.port(), "/ws/o", {{"Origin", "https://evil.example"}}), 403,
                 "origin https://evil.example is not allowed");
  expect_refused(upgrade_request(server.port(), "/ws/o", {{"Origin", "null"}}), 403,
                 "origin null is not allowed");
  EXPECT_EQ(log->count("init o"), 0u) << "a refused upgrade builds no room";
  EXPECT_EQ(upgrade_request(server.port(), "/ws/o", {{"Origin", "https://APP.example:443"}}).status, 101);
  EXPECT_TRUE(log->wait_for("connect o 1"));
  auto without_origin = WsClient::connect(server.port(), "/ws/o");  // not a browser
  ASSERT_TRUE(without_origin);
  EXPECT_TRUE(without_origin->read_until("you are 2"));
}

TEST_F(AuthTest, EveryTokenProblemIsAnsweredBeforeTheUpgrade) {
  TestServer server(probe_factory(log), {.auth_token_secret = secret});
  const auto port = server.port();
  expect_refused(upgrade_request(port, "/ws/t"), 401, "a token is required: connect with ?token=<token>");
  expect_refused(upgrade_request(port, "/ws/t?token="), 401,
                 "a token is required: connect with ?token=<token>");
  expect_refused(upgrade_request(port, "/ws/t?token=x.y"), 401, "malformed token");
  expect_refused(upgrade_request(port, "/ws/t?token=" + std::string(5000, 'A')), 401, "malformed token");
  const std::string forged =
      server::mint_token("not the server's secret, but long", "t", server::unix_time() + 60);
  expect_refused(upgrade_request(port, "/ws/t?token=" + forged), 403, "the token's signature does not match");
  expect_refused(upgrade_request(port, "/ws/t?token=" + token_for("t", -1)), 403, "the token has expired");
  expect_refused(upgrade_request(port, "/ws/t?token=" + token_for("u")), 403,
                 "the token is for another room");
  expect_refused(upgrade_request(port, "/ws?token=" + token_for("t")), 403, "the token is for another room");
  EXPECT_EQ(log->count("init t"), 0u) << "a refused upgrade builds no room";
  EXPECT_EQ(http_request(port, "/status").status, 200) << "only upgrades need a token";

  auto client = WsClient::connect(port, "/ws/t?token=" + token_for("t"));
  ASSERT_TRUE(client);
  EXPECT_TRUE(client->read_until("you are 1"));
  client->send_text("echo:in");
  EXPECT_TRUE(client->read_until("in"));
  auto in_default = WsClient::connect(port, "/ws?token=" + token_for("default") + "&other=1");
  ASSERT_TRUE(in_default) << "the default room's token is for its name";
  EXPECT_TRUE(log->wait_for("connect default 1"));
  EXPECT_EQ(upgrade_request(port, "/ws/caf%C3%A9?token=" + token_for("caf\xc3\xa9")).status, 101)
      << "the room id inside is the decoded one";
  EXPECT_EQ(upgrade_request(port, "/ws/t", {{"Authorization", "Bearer " + token_for("t")}}).status, 101);
  EXPECT_TRUE(log->wait_for("connect t 2"));
}

TEST_F(AuthTest, AWebAssemblyServerChecksTokensAlike) {
  auto module = wasm::Module::load(std::make_shared<wasm::Engine>(wasm::Limits{}),
                                   std::string(STATEROOM_WASM_DIR) + "/counter.wasm");
  TestServer server(module, {.auth_token_secret = secret});
  expect_refused(upgrade_request(server.port(), "/ws/w"), 401,
                 "a token is required: connect with ?token=<token>");
  expect_refused(upgrade_request(server.port(), "/ws/w?token=" + token_for("v")), 403,
                 "the token is for another room");
  auto client = WsClient::connect(server.port(), "/ws/w?token=" + token_for("w"));
  ASSERT_TRUE(client);
  client->send_text("increment");
  EXPECT_TRUE(client->read_until("new value: 1"));
}

/// Lets in whoever names themselves in `X-User`, except mallory; notes what each request showed.
class Doorman final : public ServiceFactory {
 public:
  explicit Doorman(std::shared_ptr<ServiceFactory> rooms) : rooms_(std::move(rooms)) {}
  std::unique_ptr<Service> create(std::string_view room_id, Context& ctx) override {
    return rooms_->create(room_id, ctx);
  }
  Verdict admit(const ConnectionRequest& request) override {
    const std::string_view user = request.header("x-USER");
    {
      std::lock_guard lock(mutex_);
      seen_.push_back(std::string(request.room_id()) + " " + std::string(request.path()) + " " +
                      std::string(request.query()) + " " + std::string(request.remote_address()) + " " +
                      std::string(user));
    }
    if (user.empty()) return Verdict::unauthorized("who are you?");
    if (user == "mallory") return Verdict::forbidden("not you, mallory");
    return Verdict::accept();
  }
  std::vector<std::string> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  std::shared_ptr<ServiceFactory> rooms_;
  mutable std::mutex mutex_;
  std::vector<std::string> seen_;
};

TEST_F(AuthTest, TheServiceFactoryRefusesByHeaderBeforeTheUpgrade) {
  auto doorman = std::make_shared<Doorman>(probe_factory(log));
  TestServer server(doorman);
  expect_refused(upgrade_request(server.port(), "/ws/club"), 401, "who are you?");
  expect_refused(upgrade_request(server.port(), "/ws/club", {{"X-User", "mallory"}}), 403,
                 "not you, mallory");
  EXPECT_EQ(log->count("init club"), 0u) << "a refused upgrade builds no room";
  EXPECT_EQ(upgrade_request(server.port(), "/ws/caf%C3%A9?a=1&b=%20", {{"X-User", "alice"}}).status, 101);
  EXPECT_TRUE(log->wait_for("connect caf\xc3\xa9 1"));
  EXPECT_EQ(http_request(server.port(), "/status").status, 200) << "only upgrades are asked about";
  EXPECT_EQ(doorman->seen(),
            (std::vector<std::string>{"club /ws/club  127.0.0.1 ", "club /ws/club  127.0.0.1 mallory",
                                      "caf\xc3\xa9 /ws/caf%C3%A9 a=1&b=%20 127.0.0.1 alice"}));
}

TEST_F(AuthTest, TheServerChecksComeBeforeTheFactorys) {
  auto doorman = std::make_shared<Doorman>(probe_factory(log));
  TestServer server(doorman, {.allowed_origins = {"https://app.example"}, .auth_token_secret = secret});
  expect_refused(upgrade_request(server.port(), "/ws/club?token=" + token_for("club"),
                                 {{"X-User", "alice"}, {"Origin", "https://evil.example"}}),
                 403, "origin https://evil.example is not allowed");
  expect_refused(
      upgrade_request(server.port(), "/ws/club", {{"X-User", "alice"}, {"Origin", "https://app.example"}}),
      401, "a token is required: connect with ?token=<token>");
  EXPECT_TRUE(doorman->seen().empty());
  EXPECT_EQ(upgrade_request(server.port(), "/ws/club?token=" + token_for("club"),
                            {{"X-User", "alice"}, {"Origin", "https://app.example"}})
                .status,
            101);
  EXPECT_EQ(doorman->seen().size(), 1u);
}

TEST(Auth, AServerWithUnusableChecksDoesNotStart) {
  auto log = std::make_shared<EventLog>();
  Server bad_origin(probe_factory(log), {.port = 0, .allowed_origins = {"https://app.example/"}});
  EXPECT_EQ(bad_origin.start().message(),
            "'https://app.example/' is not an origin (scheme://host[:port], or * for any)");
  Server short_secret(probe_factory(log), {.port = 0, .auth_token_secret = "short"});
  EXPECT_EQ(short_secret.start().message(),
            "the auth token secret must be at least 16 bytes (32 random bytes are best)");
}

}  // namespace
}  // namespace stateroom::test
