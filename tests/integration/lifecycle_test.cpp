// Timers, room lifetime, room failure, limits, keep-alive and shutdown.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <pthread.h>

#include <fstream>
#include <thread>

#include "../support/log_capture.hpp"
#include "../support/probe_service.hpp"
#include "../support/ws_client.hpp"

namespace stateroom::test {
namespace {

std::unique_ptr<WsClient> join(std::uint16_t port, const std::string& target, std::uint32_t id) {
  auto c = WsClient::connect(port, target);
  EXPECT_NE(c, nullptr);
  if (!c) return nullptr;
  EXPECT_TRUE(c->read_until("you are " + std::to_string(id)));
  return c;
}

TEST(Timers, FireAfterTheirDelay) {
  auto log = std::make_shared<EventLog>();
  TestServer server(probe_factory(log));
  auto c = join(server.port(), "/ws/t", 1);
  const auto start = std::chrono::steady_clock::now();
  c->send_text("timer:150");
  ASSERT_TRUE(c->read_until("timer", 3s));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 140ms);
}

TEST(Timers, ANewTimerReplacesThePendingOne) {
  auto log = std::make_shared<EventLog>();
  TestServer server(probe_factory(log));
  auto c = join(server.port(), "/ws/t", 1);
  c->send_text("timer:300");
  c->send_text("timer:50");
  ASSERT_TRUE(c->read_until("timer", 3s));
  // The 300 ms timer was replaced: no second tick comes.
  auto r = c->read(600ms);
  EXPECT_FALSE(r) << "unexpected " << r->data;
  EXPECT_EQ(log->count("timer t"), 1u);
}

TEST(Timers, ZeroFiresAsSoonAsPossible) {
  auto log = std::make_shared<EventLog>();
  TestServer server(probe_factory(log));
  auto c = join(server.port(), "/ws/t", 1);
  c->send_text("timer:5000");
  c->send_text("timer:0");  // replaces the 5 s timer and fires at once; it does not cancel
  ASSERT_TRUE(c->read_until("timer", 2s));
  EXPECT_EQ(log->count("timer t"), 1u);
}

TEST(RoomLifetime, ImmediateGraceDestroysAnEmptyRoom) {
  auto log = std::make_shared<EventLog>();
  ServerOptions options;
  options.room_grace = RoomGrace::immediate();
  TestServer server(probe_factory(log), options);
  join(server.port(), "/ws/g", 1)->close();
  ASSERT_TRUE(log->wait_for("destroy g"));
  auto again = join(server.port(), "/ws/g", 1);  // a fresh instance: ids start over
  EXPECT_EQ(log->count("init g"), 2u);
}

TEST(RoomLifetime, GracePeriodKeepsTheRoomForAReload) {
  auto log = std::make_shared<EventLog>();
  ServerOptions options;
  options.room_grace = RoomGrace::after(400ms);
  TestServer server(probe_factory(log), options);
  join(server.port(), "/ws/g", 1)->close();
  ASSERT_TRUE(log->wait_for("disconnect g 1"));
  auto again = join(server.port(), "/ws/g", 2);  // the same room: the id goes on
  again->close();
  ASSERT_TRUE(log->wait_for("destroy g", 1, 3s));
  EXPECT_EQ(log->count("init g"), 1u);
  auto fresh = join(server.port(), "/ws/g", 1);
  EXPECT_EQ(log->count("init g"), 2u);
}

TEST(RoomLifetime, NeverKeepsEmptyRooms) {
  auto log = std::make_shared<EventLog>();
  ServerOptions options;
  options.room_grace = RoomGrace::never();
  TestServer server(probe_factory(log), options);
  join(server.port(), "/ws/g", 1)->close();
  ASSERT_TRUE(log->wait_for("disconnect g 1"));
  std::this_thread::sleep_for(100ms);
  join(server.port(), "/ws/g", 2);
  EXPECT_EQ(log->count("destroy g"), 0u);
}

class RoomFailure : public ::testing::TestWithParam<const char*> {};

TEST_P(RoomFailure, ClosesThatRoomOnlyWith1011) {
  auto log = std::make_shared<EventLog>();
  TestServer server(probe_factory(log));
  auto a = join(server.port(), "/ws/bad", 1);
  auto b = join(server.port(), "/ws/bad", 2);
  auto other = join(server.port(), "/ws/good", 1);
  a->send_text(GetParam());
  EXPECT_EQ(a->read_until_closed(), 1011);
  EXPECT_EQ(b->read_until_closed(), 1011);
  ASSERT_TRUE(log->wait_for("destroy bad"));
  EXPECT_EQ(log->count("disconnect bad 1"), 0u) << "a failed service gets no more events";
  other->send_text("echo:fine");
  EXPECT_TRUE(other->read_until("fine"));
  auto again = join(server.port(), "/ws/bad", 1);  // a fresh instance
  EXPECT_EQ(log->count("init bad"), 2u);
}

INSTANTIATE_TEST_SUITE_P(FailOrThrow, RoomFailure, ::testing::Values("fail", "throw"));

TEST(Limits, AMessageOverTheSizeLimitCloses1009) {
  auto log = std::make_shared<EventLog>();
  ServerOptions options;
  options.max_message_bytes = 1024;
  TestServer server(probe_factory(log), options);
  auto c = join(server.port(), "/ws/size", 1);
  c->send_binary(std::string(1024, 'a'));  // exactly the limit is fine
  auto r = c->read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, Received::Kind::binary);
  c->send_binary(std::string(1025, 'a'));
  EXPECT_EQ(c->read_until_closed(), 1009);
  EXPECT_TRUE(log->wait_for("disconnect size 1"));
}

std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

// A client that never reads while the room broadcasts: its queue stays bounded, it is closed with
// 1008 and gets its disconnect, and the other clients keep receiving.
TEST(Limits, ASlowReaderIsClosedAndTheRoomGoesOn) {
  auto log = std::make_shared<EventLog>();
  ServerOptions options;
  options.max_queued_bytes = 256 * 1024;
  options.close_timeout = 60s;  // the slow client reads its close only after the flood
  TestServer server(probe_factory(log), options);
  auto slow = WsClient::connect(server.port(), "/ws/flood", 5s, /*receive_buffer=*/4096);
  ASSERT_TRUE(slow);
  auto fast = join(server.port(), "/ws/flood", 2);
  const auto before = resident_bytes();
  // 1000 rounds of 2 x 64 KiB = 125 MiB broadcast; the fast client reads all of it. (A burst larger
  // than the queue limit within one handler would evict every client, as the policy says.)
  for (int round = 0; round < 1000; ++round) {
    fast->send_text("flood:2:65536");
    for (int i = 0; i < 2; ++i) {
      auto r = fast->read();
      ASSERT_TRUE(r) << "round " << round;
      if (r->kind == Received::Kind::text && r->data.starts_with("left")) {
        r = fast->read();
        ASSERT_TRUE(r);
      }
      ASSERT_EQ(r->data.size(), 65536u) << r->data.substr(0, 40);
    }
  }
  const auto growth = resident_bytes() - std::min(before, resident_bytes());
  EXPECT_LT(growth, 48u << 20) << "the server kept " << growth << " bytes";
  EXPECT_TRUE(log->wait_for("disconnect flood 1"));
  EXPECT_EQ(slow->read_until_closed(10s), 1008);
  fast->send_text("echo:alive");
  EXPECT_TRUE(fast->read_until("alive"));
}

// A room whose `connect` sends a newcomer more than its queue holds: the newcomer still gets its
// 101, then its 1008, never a connection cut during its handshake; the room goes on.
struct Greeter : Service {
  void connect(ClientId client, Context& ctx) override {
    if (++joined == 1) return;  // the first client stays, to see the room go on
    for (int i = 0; i < 8; ++i) ctx.send(client, std::string(40 * 1024, 'g'));
  }
  void message(ClientId client, const MessagePayload& msg, Context& ctx) override { ctx.send(client, msg); }
  int joined = 0;
};

TEST(Limits, ANewcomerSentTooMuchInItsOwnConnectGets1008) {
  LogCapture log;
  ServerOptions options;
  options.max_queued_bytes = 128 * 1024;
  TestServer server(std::make_shared<ServiceFactoryOf<Greeter>>(), options);
  auto stays = WsClient::connect(server.port(), "/ws/welcome");
  ASSERT_TRUE(stays);
  std::string error;
  auto newcomer = WsClient::connect(server.port(), "/ws/welcome", 5s, 0, "127.0.0.1", &error);
  ASSERT_TRUE(newcomer) << "the handshake failed: " << error;
  EXPECT_EQ(newcomer->read_until_closed(10s), 1008);
  EXPECT_TRUE(log.contains("reads too slowly"));
  stays->send_text("still here");
  EXPECT_TRUE(stays->read_until("still here"));
}

TEST(KeepAlive, ASilentClientIsClosedAndAResponsiveOneStays) {
  auto log = std::make_shared<EventLog>();
  ServerOptions options;
  options.ping_interval = 100ms;
  options.idle_timeout = 400ms;
  TestServer server(probe_factory(log), options);
  auto silent = join(server.port(), "/ws/idle", 1);
  auto responsive = join(server.port(), "/ws/idle", 2);
  // Reading answers the server's pings; the silent client reads nothing meanwhile.
  EXPECT_FALSE(responsive->read_until("never sent", 1200ms));
  EXPECT_TRUE(log->wait_for("disconnect idle 1", 1, 1s));
  EXPECT_EQ(log->count("disconnect idle 2"), 0u);
  EXPECT_EQ(silent->read_until_closed(), 1001);
  responsive->send_text("echo:still here");
  EXPECT_TRUE(responsive->read_until("still here"));
}

TEST(Shutdown, EveryClientGetsItsDisconnectAndA1001Close) {
  auto log = std::make_shared<EventLog>();
  auto server = std::make_unique<TestServer>(probe_factory(log));
  const auto port = server->port();
  auto a = join(port, "/ws/s1", 1);
  auto b = join(port, "/ws/s1", 2);
  auto c = join(port, "/ws/s2", 1);
  std::thread stopper([&] { server->server().stop(); });
  EXPECT_EQ(a->read_until_closed(), 1001);
  EXPECT_EQ(b->read_until_closed(), 1001);
  EXPECT_EQ(c->read_until_closed(), 1001);
  stopper.join();
  for (const char* e :
       {"disconnect s1 1", "disconnect s1 2", "disconnect s2 1", "destroy s1", "destroy s2"}) {
    EXPECT_EQ(log->count(e), 1u) << e;
  }
  std::string error;
  EXPECT_FALSE(WsClient::connect(port, "/ws/s1", 1s, 0, "127.0.0.1", &error)) << "still accepting";
}

/// Stops the server that runs it when told to, from inside its handler.
struct Stopper : Service {
  static inline std::atomic<Server*> server{nullptr};
  void message(ClientId, const MessagePayload& payload, Context&) override {
    if (payload.view() == "stop") server.load()->stop();
  }
  void disconnect(ClientId, Context&) override { ++disconnects; }
  static inline std::atomic<int> disconnects{0};
};

TEST(Shutdown, AServiceCanStopTheServerFromItsHandler) {
  Stopper::disconnects = 0;
  Server server(make_factory<Stopper>(), {.port = 0, .threads = 2});
  ASSERT_TRUE(server.start().ok());
  Stopper::server = &server;
  auto a = WsClient::connect(server.port(), "/ws/a");
  auto b = WsClient::connect(server.port(), "/ws/b");
  ASSERT_TRUE(a && b);
  a->send_text("stop");  // stop() on a worker thread: it cannot join itself
  EXPECT_EQ(a->read_until_closed(), 1001);
  EXPECT_EQ(b->read_until_closed(), 1001);
  server.wait();  // returns once the workers are done
  EXPECT_EQ(Stopper::disconnects.load(), 2);
  server.stop();  // idempotent, from here too
  Stopper::server = nullptr;
}

// serve() takes SIGINT and SIGTERM itself and gives the caller back the mask it had: here SIGTERM
// blocked (so the signal sent early waits for serve) and SIGINT not.
TEST(Serve, LeavesTheCallersSignalMaskAsItFoundIt) {
  int code = -1;
  bool term_blocked = false, int_blocked = true;
  // The caller's thread starts with SIGTERM blocked (it inherits this thread's mask).
  sigset_t term, mine;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &term, &mine);
  std::thread caller([&] {
    code = serve(make_factory<Stopper>(), {.host = "127.0.0.1", .port = 0, .threads = 1});
    sigset_t after;
    pthread_sigmask(SIG_SETMASK, nullptr, &after);
    term_blocked = sigismember(&after, SIGTERM) == 1;
    int_blocked = sigismember(&after, SIGINT) == 1;
  });
  // Pending in the caller's thread until serve waits for it.
  pthread_kill(caller.native_handle(), SIGTERM);
  caller.join();
  pthread_sigmask(SIG_SETMASK, &mine, nullptr);
  EXPECT_EQ(code, 0);
  EXPECT_TRUE(term_blocked);
  EXPECT_FALSE(int_blocked);
}

}  // namespace
}  // namespace stateroom::test

namespace stateroom::test {
namespace {

/// Answers every message with its name: which factory built the room.
struct Named : Service {
  explicit Named(std::string name) : name(std::move(name)) {}
  void message(ClientId sender, const MessagePayload&, Context& ctx) override { ctx.send(sender, name); }
  std::string name;
};

class NamedFactory final : public ServiceFactory {
 public:
  explicit NamedFactory(std::string name) : name_(std::move(name)) {}
  std::unique_ptr<Service> create(std::string_view, Context&) override { return std::make_unique<Named>(name_); }

 private:
  std::string name_;
};

std::string ask(WsClient& c) {
  c.send_text("?");
  auto r = c.read();
  return r ? r->data : "<nothing>";
}

TEST(ReplaceFactory, NewRoomsUseItAndOldRoomsMoveOverWhenTheyEmpty) {
  TestServer server(std::make_shared<NamedFactory>("old"));  // default grace: 300 s
  auto a = WsClient::connect(server.port(), "/ws/a");
  auto idle = WsClient::connect(server.port(), "/ws/idle");
  ASSERT_TRUE(a && idle);
  EXPECT_EQ(ask(*a), "old");
  EXPECT_EQ(ask(*idle), "old");
  // close() returns with the server's close frame, which the server sends after the client has
  // left its room: room idle is empty now, kept for its grace period.
  idle->close();

  server.server().replace_factory(std::make_shared<NamedFactory>("new"));
  auto b = WsClient::connect(server.port(), "/ws/b");
  ASSERT_TRUE(b);
  EXPECT_EQ(ask(*b), "new");
  EXPECT_EQ(ask(*a), "old") << "a room with clients keeps its service";
  auto a2 = WsClient::connect(server.port(), "/ws/a");
  ASSERT_TRUE(a2);
  EXPECT_EQ(ask(*a2), "old") << "a new client joins the running room";
  auto idle2 = WsClient::connect(server.port(), "/ws/idle");
  ASSERT_TRUE(idle2);
  EXPECT_EQ(ask(*idle2), "new") << "an empty room in its grace period ended at the replacement";

  a->close();
  a2->close();  // room a is empty now (the close frames say so): it ended at once despite its grace
  auto again = WsClient::connect(server.port(), "/ws/a");
  ASSERT_TRUE(again);
  EXPECT_EQ(ask(*again), "new");
}

}  // namespace
}  // namespace stateroom::test
