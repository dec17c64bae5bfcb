// Every example, run as the user runs it (its server on a free port), driven by a real WebSocket
// client. Each example runs under every launcher in `launchers()`: natively and as WebAssembly.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "../support/server_process.hpp"
#include "../support/ws_client.hpp"

namespace stateroom::test {
namespace {

/// How an example's server is started: the command line for an example name.
struct Launcher {
  std::string name;
  std::vector<std::string> (*command)(const std::string& example);
};

void PrintTo(const Launcher& launcher, std::ostream* os) {
  *os << launcher.name;
}

std::vector<std::string> native_command(const std::string& example) {
  return {std::string(STATEROOM_BIN_DIR) + "/" + example + "-native", "--threads", "2"};
}

std::vector<std::string> wasm_command(const std::string& example) {
  return {std::string(STATEROOM_BIN_DIR) + "/stateroom", "serve", std::string(STATEROOM_WASM_DIR) + "/" + example + ".wasm",
          "--threads", "2"};
}

/// The same example, as a native server and as a WebAssembly module served by `stateroom serve`:
/// every test below must observe exactly the same behaviour from both.
std::vector<Launcher> launchers() {
  return {{"native", &native_command}, {"wasm", &wasm_command}};
}

class Examples : public ::testing::TestWithParam<Launcher> {
 protected:
  std::unique_ptr<ServerProcess> start(const std::string& example) {
    auto p = std::make_unique<ServerProcess>(GetParam().command(example));
    EXPECT_TRUE(p->listening()) << p->output();
    return p;
  }
  static std::unique_ptr<WsClient> connect(const ServerProcess& p, const std::string& target) {
    std::string error;
    auto c = WsClient::connect(p.port(), target, 5s, 0, "127.0.0.1", &error);
    EXPECT_TRUE(c) << error;
    return c;
  }
  static std::string next_text(WsClient& c) {
    auto r = c.read();
    if (!r) return "<nothing>";
    if (r->kind != Received::Kind::text) return "<not text: " + r->data + ">";
    return r->data;
  }
};

TEST_P(Examples, Echo) {
  auto server = start("echo");
  auto a = connect(*server, "/ws/room");
  ASSERT_TRUE(a);
  EXPECT_EQ(next_text(*a), "User ClientId(1) connected.");
  auto b = connect(*server, "/ws/room");
  ASSERT_TRUE(b);
  EXPECT_EQ(next_text(*b), "User ClientId(2) connected.");
  a->send_text("hello there");
  EXPECT_EQ(next_text(*a), "User ClientId(1) sent 'hello there'");
  EXPECT_EQ(next_text(*b), "User ClientId(1) sent 'hello there'");
  b->close();
  EXPECT_EQ(next_text(*a), "User ClientId(2) left.");
}

TEST_P(Examples, CounterIsSharedWithinARoomAndSeparateAcrossRooms) {
  auto server = start("counter");
  auto a1 = connect(*server, "/ws/a");
  auto a2 = connect(*server, "/ws/a");
  auto b = connect(*server, "/ws/b");
  ASSERT_TRUE(a1 && a2 && b);
  a1->send_text("increment");
  EXPECT_EQ(next_text(*a1), "new value: 1");
  EXPECT_EQ(next_text(*a2), "new value: 1");
  a2->send_text("something else");  // ignored
  a2->send_text("increment");
  EXPECT_EQ(next_text(*a1), "new value: 2");
  EXPECT_EQ(next_text(*a2), "new value: 2");
  b->send_text("decrement");
  EXPECT_EQ(next_text(*b), "new value: -1");
  a1->send_binary("increment");  // binary is not the text command
  a1->send_text("decrement");
  EXPECT_EQ(next_text(*a1), "new value: 1");
}

TEST_P(Examples, CounterDefaultRoomAndGracefulSigterm) {
  auto server = start("counter");
  auto a = connect(*server, "/ws");
  auto b = connect(*server, "/ws/default");
  ASSERT_TRUE(a && b);
  a->send_text("increment");
  EXPECT_EQ(next_text(*b), "new value: 1");
  server->stop(SIGTERM, 0ms);  // the clients answer the close handshakes while the server waits
  EXPECT_EQ(a->read_until_closed(), 1001);
  EXPECT_EQ(b->read_until_closed(), 1001);
  EXPECT_EQ(server->wait(15s), 0) << server->output();
}

TEST_P(Examples, ClockTicksEveryFourSeconds) {
  auto server = start("clock");
  const auto start = std::chrono::steady_clock::now();
  auto c = connect(*server, "/ws/tick");
  ASSERT_TRUE(c);
  auto r = c->read(7s);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->is_text("Timer @ 0")) << r->data;
  EXPECT_GE(std::chrono::steady_clock::now() - start, 3500ms);
}

TEST_P(Examples, BinaryEchoAnswersInBinary) {
  auto server = start("binary-echo");
  auto c = connect(*server, "/ws/bin");
  ASSERT_TRUE(c);
  const std::string bytes("\x00\x10\xff", 3);
  c->send_binary(bytes);
  auto r = c->read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, Received::Kind::binary);
  EXPECT_EQ(r->data, bytes);
  c->send_text("héllo");
  r = c->read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, Received::Kind::binary);
  EXPECT_EQ(r->data, "héllo");
}

TEST_P(Examples, MirrorAnswersInKind) {
  auto server = start("mirror");
  auto c = connect(*server, "/ws/mirror");
  ASSERT_TRUE(c);
  c->send_text("héllo");
  auto r = c->read();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->is_text("héllo")) << r->data;
  const std::string bytes("\x00\x10\xff", 3);
  c->send_binary(bytes);
  r = c->read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, Received::Kind::binary);
  EXPECT_EQ(r->data, bytes);
  c->send_text("");
  r = c->read();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->is_text("")) << "an empty text message comes back as one";
}

TEST_P(Examples, Chat) {
  auto server = start("chat");
  auto a = connect(*server, "/ws/lobby");
  ASSERT_TRUE(a);
  EXPECT_EQ(next_text(*a), "welcome, user1; /name X renames you");
  auto b = connect(*server, "/ws/lobby");
  ASSERT_TRUE(b);
  EXPECT_EQ(next_text(*b), "welcome, user2; /name X renames you");
  EXPECT_EQ(next_text(*a), "user2 joined");
  a->send_text("/name alice");
  EXPECT_EQ(next_text(*a), "user1 is now alice");
  EXPECT_EQ(next_text(*b), "user1 is now alice");
  a->send_text("hi all");
  EXPECT_EQ(next_text(*b), "alice: hi all");
  b->send_text("hello alice");
  EXPECT_EQ(next_text(*a), "user2: hello alice") << "the sender does not hear its own message";
  b->close();
  EXPECT_EQ(next_text(*a), "user2 left");
  auto c = connect(*server, "/ws/lobby");
  ASSERT_TRUE(c);
  EXPECT_EQ(next_text(*c), "welcome, user3; /name X renames you");
  EXPECT_EQ(next_text(*c), "alice: hi all") << "a newcomer gets the room's earlier messages";
  EXPECT_EQ(next_text(*c), "user2: hello alice");
  EXPECT_EQ(next_text(*a), "user3 joined");
  c->send_text("hi");
  EXPECT_EQ(next_text(*a), "user3: hi") << "the history was only for the newcomer";
}

// Whatever its clients post, what a chat room keeps and sends a newcomer is bounded: a message over
// 4 KiB is refused (its sender told), the history a newcomer gets is the latest lines within 64 KiB.
TEST_P(Examples, ChatBoundsWhatItKeepsAndSends) {
  auto server = start("chat");
  auto a = connect(*server, "/ws/big");
  ASSERT_TRUE(a);
  EXPECT_EQ(next_text(*a), "welcome, user1; /name X renames you");
  for (int i = 0; i < 3; ++i) {
    a->send_text(std::string(1 << 20, 'M'));
    EXPECT_EQ(next_text(*a), "not sent: a message is at most 4096 bytes");
  }
  a->send_text("/name " + std::string(33, 'n'));
  EXPECT_EQ(next_text(*a), "a name is at most 32 bytes");
  for (int i = 0; i < 40; ++i) a->send_text(std::to_string(i % 10) + std::string(4095, 'a' + i % 26));
  a->send_text("last");
  a->send_text("/name alice");  // every post is in the room once this comes back
  EXPECT_EQ(next_text(*a), "user1 is now alice");
  auto c = connect(*server, "/ws/big");
  ASSERT_TRUE(c);
  EXPECT_EQ(next_text(*c), "welcome, user2; /name X renames you");
  EXPECT_EQ(next_text(*a), "user2 joined");
  a->send_text("end");
  std::vector<std::string> history;
  std::size_t bytes = 0;
  for (std::string line = next_text(*c); line != "alice: end"; line = next_text(*c)) {
    ASSERT_NE(line, "<nothing>");
    history.push_back(line);
    bytes += line.size();
  }
  EXPECT_LE(bytes, 64u * 1024) << history.size() << " lines";
  EXPECT_GE(history.size(), 10u) << "the latest lines that fit are kept";
  ASSERT_FALSE(history.empty());
  EXPECT_EQ(history.back(), "user1: last");
  EXPECT_EQ(history.front().substr(0, 7), "user1: ");
  EXPECT_EQ(history[history.size() - 2], "user1: 9" + std::string(4095, 'a' + 39 % 26)) << "in order, none lost";
}

INSTANTIATE_TEST_SUITE_P(Launchers, Examples, ::testing::ValuesIn(launchers()),
                         [](const auto& info) { return info.param.name; });

TEST(ServerBinary, PortInUseIsOneClearLine) {
  ServerProcess first({std::string(STATEROOM_BIN_DIR) + "/counter-native", "--threads", "1"});
  ASSERT_TRUE(first.listening());
  ServerProcess second({std::string(STATEROOM_BIN_DIR) + "/counter-native", "--host", "127.0.0.1", "--port",
                        std::to_string(first.port())},
                       false, 3s);
  EXPECT_EQ(second.wait(10s), 1);
  EXPECT_NE(second.output().find("cannot listen on 127.0.0.1:" + std::to_string(first.port()) +
                                 ": Address already in use"),
            std::string::npos)
      << second.output();
}

TEST(StateroomServe, AMissingOrInvalidModuleIsOneClearLine) {
  const std::string stateroom = std::string(STATEROOM_BIN_DIR) + "/stateroom";
  ServerProcess missing({stateroom, "serve", "/nonexistent/counter.wasm"}, false, 3s);
  EXPECT_EQ(missing.wait(10s), 1);
  EXPECT_EQ(missing.output(), "error: /nonexistent/counter.wasm: no such file\n");
  const std::string source = std::string(STATEROOM_SOURCE_DIR) + "/examples/counter/service.cpp";
  ServerProcess invalid({stateroom, "serve", source}, false, 3s);
  EXPECT_EQ(invalid.wait(10s), 1);
  EXPECT_EQ(invalid.output(), "error: " + source +
                                  ": not a WebAssembly module (a binary module starts with \\0asm; a text module "
                                  "with `(module`)\n");
  ServerProcess empty_dir({stateroom, "serve", std::string(STATEROOM_SOURCE_DIR) + "/examples/counter"}, false, 3s);
  EXPECT_EQ(empty_dir.wait(10s), 1);
  EXPECT_NE(empty_dir.output().find("holds no server.wasm"), std::string::npos) << empty_dir.output();
  ServerProcess bad_limit({stateroom, "serve", std::string(STATEROOM_WASM_DIR) + "/counter.wasm", "--memory-limit",
                           "lots"},
                          false, 3s);
  EXPECT_NE(bad_limit.wait(10s).value_or(0), 0);
  EXPECT_NE(bad_limit.output().find("'lots' is not a size"), std::string::npos) << bad_limit.output();
}

TEST(StateroomServe, ServesADirectoryWithServerWasmAndStaticFiles) {
  const auto dir = std::filesystem::temp_directory_path() / ("stateroom-dist-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "static");
  std::filesystem::copy_file(std::string(STATEROOM_WASM_DIR) + "/counter.wasm", dir / "server.wasm",
                             std::filesystem::copy_options::overwrite_existing);
  std::ofstream(dir / "static" / "index.html") << "<h1>counter</h1>";
  ServerProcess server({std::string(STATEROOM_BIN_DIR) + "/stateroom", "serve", dir.string()});
  ASSERT_TRUE(server.listening()) << server.output();
  auto page = http_request(server.port(), "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.body, "<h1>counter</h1>");
  std::string error;
  auto c = WsClient::connect(server.port(), "/ws/x", 5s, 0, "127.0.0.1", &error);
  ASSERT_TRUE(c) << error;
  c->send_text("increment");
  EXPECT_TRUE(c->read_until("new value: 1"));
  std::filesystem::remove_all(dir);
}

/// The hog examples as WebAssembly: each connect fails its room with 1011 at the limit, and the server
/// goes on serving (the next connect gets a fresh instance, which fails the same way).
void expect_room_fails_at_its_limit(const std::string& example, std::vector<std::string> limit) {
  std::vector<std::string> command = wasm_command(example);
  command.insert(command.end(), limit.begin(), limit.end());
  ServerProcess server(command);
  ASSERT_TRUE(server.listening()) << server.output();
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::string error;
    auto c = WsClient::connect(server.port(), "/ws/hog", 5s, 0, "127.0.0.1", &error);
    ASSERT_TRUE(c) << error;
    EXPECT_EQ(c->read_until_closed(10s), 1011) << server.output();
  }
  EXPECT_EQ(http_request(server.port(), "/status").body, "ok");
  EXPECT_EQ(server.stop(SIGTERM, 15s), 0) << server.output();
}

TEST(HogExamples, CpuHogFailsItsRoomAtTheCpuLimit) {
  expect_room_fails_at_its_limit("cpu-hog", {"--cpu-limit", "200ms"});
}

TEST(HogExamples, MemoryHogFailsItsRoomAtTheMemoryLimit) {
  expect_room_fails_at_its_limit("memory-hog", {"--memory-limit", "8MiB"});
}

TEST(ServerBinary, BadOptionValuesAreRejected) {
  ServerProcess p({std::string(STATEROOM_BIN_DIR) + "/counter-native", "--max-queued", "lots"}, false, 3s);
  EXPECT_NE(p.wait(10s).value_or(0), 0);
  EXPECT_NE(p.output().find("'lots' is not a size"), std::string::npos) << p.output();
}

}  // namespace
// README: "the STATEROOM_LOG environment variable sets the default" log level.
TEST(Environment, StateroomLogSetsTheDefaultLogLevel) {
  const std::string counter = std::string(STATEROOM_BIN_DIR) + "/counter-native";
  setenv("STATEROOM_LOG", "debug", 1);
  {
    ServerProcess p({counter});
    ASSERT_TRUE(p.listening()) << p.output();
    auto c = WsClient::connect(p.port(), "/ws/logged");
    ASSERT_TRUE(c);
    EXPECT_TRUE(p.wait_for_output("[debug] room 'logged' created", 5s)) << p.output();
  }
  setenv("STATEROOM_LOG", "loud", 1);
  {
    ServerProcess p({counter});
    EXPECT_FALSE(p.listening());
    EXPECT_EQ(p.wait(10s), 2);
    EXPECT_NE(p.output().find("unknown log level 'loud'"), std::string::npos) << p.output();
  }
  unsetenv("STATEROOM_LOG");
  {
    ServerProcess p({counter});
    ASSERT_TRUE(p.listening());
    auto c = WsClient::connect(p.port(), "/ws/quiet");
    ASSERT_TRUE(c);
    c->close();
    EXPECT_TRUE(p.wait_for_output("room 'quiet' client 1 disconnected", 5s)) << p.output();
    EXPECT_EQ(p.output().find("[debug]"), std::string::npos) << "info is the default";
  }
}

}  // namespace stateroom::test
