// The HTTP side: /status, errors, room id validation and static files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "../support/probe_service.hpp"
#include "../support/ws_client.hpp"

namespace stateroom::test {
namespace {

namespace fs = std::filesystem;

void write_file(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << content;
}

class HttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base = fs::temp_directory_path() / ("stateroom-http-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(base);
    write_file(base / "site/index.html", "<h1>home</h1>");
    write_file(base / "site/style.css", "body{}");
    write_file(base / "site/app.js", "1");
    write_file(base / "site/module.wasm", "\0asm");
    write_file(base / "site/docs/index.html", "docs");
    write_file(base / "site/data.bin", "bin");
    write_file(base / "secret.txt", "top secret");
    write_file(base / "client/lib.js", "client lib");
    write_file(base / "client/index.html", "client home");
    write_file(base / "client/sub/index.html", "client sub");
    write_file(base / "site/docs/deep/index.html", "deep docs");
    fs::create_directory_symlink(base, base / "site/escape");
    fs::create_symlink(base / "secret.txt", base / "site/secret-link.txt");
    ServerOptions options;
    options.static_dir = (base / "site").string();
    options.client_dir = (base / "client").string();
    server = std::make_unique<TestServer>(probe_factory(log), options);
  }
  void TearDown() override {
    server.reset();
    fs::remove_all(base);
  }

  fs::path base;
  std::shared_ptr<EventLog> log = std::make_shared<EventLog>();
  std::unique_ptr<TestServer> server;
};

TEST(Http, StatusAndNotFoundWithoutStaticFiles) {
  auto log = std::make_shared<EventLog>();
  TestServer server(probe_factory(log));
  auto status = http_request(server.port(), "/status");
  EXPECT_EQ(status.status, 200);
  EXPECT_EQ(status.body, "ok");
  EXPECT_EQ(status.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(http_request(server.port(), "/").status, 404);
  EXPECT_EQ(http_request(server.port(), "/anything").status, 404);
  EXPECT_EQ(http_request(server.port(), "/status", "POST").status, 405);
}

TEST(Http, BadRoomIdsAre400WithAReason) {
  auto log = std::make_shared<EventLog>();
  TestServer server(probe_factory(log));
  const std::string too_long = "/ws/" + std::string(257, 'a');
  for (const auto& [target, reason] : std::vector<std::pair<std::string, std::string>>{
           {"/ws/", "empty room id\n"},
           {"/ws/%zz", "malformed percent-encoding in room id\n"},
           {"/ws/%ff%fe", "room id is not valid UTF-8\n"},
           {too_long, "room id longer than 256 bytes\n"}}) {
    auto res = http_request(server.port(), target, "GET", "websocket");
    EXPECT_EQ(res.status, 400) << target;
    EXPECT_EQ(res.body, reason) << target;
  }
  std::string error;
  EXPECT_FALSE(WsClient::connect(server.port(), "/ws/", 2s, 0, "127.0.0.1", &error));
  EXPECT_TRUE(WsClient::connect(server.port(), "/ws/" + std::string(256, 'a')));
  EXPECT_EQ(http_request(server.port(), "/ws/room").status, 426) << "a plain GET is not an upgrade";
  EXPECT_EQ(log->count("init aaaa"), 0u);
}

TEST_F(HttpTest, ServesFilesWithTheirTypes) {
  auto index = http_request(server->port(), "/");
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(index.body, "<h1>home</h1>");
  EXPECT_EQ(index.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(http_request(server->port(), "/index.html").body, "<h1>home</h1>");
  EXPECT_EQ(http_request(server->port(), "/style.css").content_type, "text/css; charset=utf-8");
  EXPECT_EQ(http_request(server->port(), "/app.js").content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(http_request(server->port(), "/module.wasm").content_type, "application/wasm");
  EXPECT_EQ(http_request(server->port(), "/data.bin").content_type, "application/octet-stream");
  EXPECT_EQ(http_request(server->port(), "/docs/").body, "docs");
  auto redirect = http_request(server->port(), "/docs");
  EXPECT_EQ(redirect.status, 301);
  EXPECT_EQ(redirect.location, "/docs/");
  EXPECT_EQ(http_request(server->port(), "/missing.txt").status, 404);
  auto head = http_request(server->port(), "/style.css", "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.content_length, 6u);
  EXPECT_EQ(http_request(server->port(), "/client/lib.js").body, "client lib");
  EXPECT_EQ(http_request(server->port(), "/status").body, "ok") << "/status wins over static files";
}

// A directory asked for without its trailing slash is redirected to it, under its mount and with
// the query kept; with the slash, its index.html is served.
TEST_F(HttpTest, DirectoriesRedirectToTheirSlashUnderTheirMount) {
  const std::vector<std::pair<std::string, std::string>> redirects = {
      {"/docs", "/docs/"},
      {"/docs/deep", "/docs/deep/"},
      {"/docs?page=2", "/docs/?page=2"},
      {"/docs%2Fdeep", "/docs%2Fdeep/"},
      {"/client", "/client/"},
      {"/client?v=1", "/client/?v=1"},
      {"/client/sub", "/client/sub/"},
      {"/client/sub?x=%20y", "/client/sub/?x=%20y"},
  };
  for (const auto& [target, location] : redirects) {
    auto res = http_request(server->port(), target);
    EXPECT_EQ(res.status, 301) << target;
    EXPECT_EQ(res.location, location) << target;
  }
  const std::vector<std::pair<std::string, std::string>> pages = {
      {"/", "<h1>home</h1>"},         {"/docs/", "docs"},
      {"/docs/deep/", "deep docs"},   {"/docs%2Fdeep/", "deep docs"},
      {"/client/", "client home"},    {"/client/sub/", "client sub"},
      {"/client//sub/", "client sub"}, {"/client/sub/index.html", "client sub"},
  };
  for (const auto& [target, body] : pages) {
    auto res = http_request(server->port(), target);
    EXPECT_EQ(res.status, 200) << target;
    EXPECT_EQ(res.body, body) << target;
  }
  EXPECT_EQ(http_request(server->port(), "/clientele").status, 404) << "not under the /client mount";
}

// Files are read on the file thread piece by piece; one larger than several pieces arrives whole.
TEST_F(HttpTest, ServesAFileOfSeveralPiecesWhole) {
  std::string content(3 * 256 * 1024 + 777, '\0');
  for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 31 + i / 4099);
  std::ofstream(base / "site/big.bin", std::ios::binary) << content;
  auto res = http_request(server->port(), "/big.bin");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.content_length, content.size());
  EXPECT_TRUE(res.body == content) << "the body differs (" << res.body.size() << " bytes)";
  auto head = http_request(server->port(), "/big.bin", "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.content_length, content.size());
  EXPECT_EQ(head.body, "");
  EXPECT_EQ(http_request(server->port(), "/status").body, "ok") << "the connection's worker goes on";
}

TEST_F(HttpTest, RefusesPathTraversal) {
  for (const std::string target :
       {"/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt", "/docs/../../secret.txt",
        "/docs/%2e%2e/%2e%2e/secret.txt", "/escape/secret.txt", "/secret-link.txt", "/client/../secret.txt",
        "/client/%2e%2e/secret.txt"}) {
    auto res = http_request(server->port(), target);
    EXPECT_EQ(res.status, 403) << target;
    EXPECT_EQ(res.body.find("top secret"), std::string::npos) << target;
  }
  EXPECT_EQ(http_request(server->port(), "/a%00b").status, 400);
  EXPECT_EQ(http_request(server->port(), "/%zz").status, 400);
}

TEST_F(HttpTest, WebSocketsStillWork) {
  auto c = WsClient::connect(server->port(), "/ws/static");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->read_until("you are 1"));
}

}  // namespace
}  // namespace stateroom::test
