// What the README promises about requests, addresses, threads and closing, checked on a real server.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../support/log_capture.hpp"
#include "../support/probe_service.hpp"
#include "../support/ws_client.hpp"

namespace stateroom::test {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
using asio::ip::tcp;

/// Writes `bytes` on a fresh connection and reads until the server closes it (or `timeout`).
/// Returns what came back, and whether the server closed.
std::pair<std::string, bool> exchange(std::uint16_t port, const std::string& bytes, std::chrono::milliseconds timeout = 5s) {
  asio::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  asio::write(socket, asio::buffer(bytes));
  std::string received;
  std::array<char, 4096> chunk;
  bool closed = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  socket.non_blocking(true);
  while (std::chrono::steady_clock::now() < deadline) {
    boost::system::error_code ec;
    const std::size_t n = socket.read_some(asio::buffer(chunk), ec);
    if (ec == asio::error::would_block) {
      socket.wait(tcp::socket::wait_read, ec);
      continue;
    }
    if (ec) {
      closed = true;
      break;
    }
    received.append(chunk.data(), n);
  }
  return {received, closed};
}

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(Requests, AnOversizedRequestIsAnswered413OnceAndClosed) {
  auto log = std::make_shared<EventLog>();
  TestServer server(probe_factory(log));
  const std::string request = "GET /" + std::string(20000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n";
  const auto [answer, closed] = exchange(server.port(), request);
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 413")) << answer.substr(0, 80);
  EXPECT_EQ(occurrences(answer, "HTTP/1.1 413"), 1u) << "answered once";
  EXPECT_TRUE(closed);
}

// --request-timeout: a request that has begun must arrive whole in time (a client trickling its
// headers is cut off), while a kept-alive connection that is silent between requests is not.
TEST(Requests, ARequestThatTricklesInIsCutOffAtTheRequestTimeout) {
  auto log = std::make_shared<EventLog>();
  ServerOptions options;
  options.request_timeout = 300ms;
  TestServer server(probe_factory(log), options);
  const auto started = std::chrono::steady_clock::now();
  const auto [answer, closed] = exchange(server.port(), "GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: ", 5s);
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(closed) << "cut off";
  EXPECT_EQ(answer, "") << "nothing answered to half a request";
  EXPECT_LT(took, 4s) << "within the request timeout, not the 30 s keep-alive";
  // A connection silent for longer than the request timeout, then sending a whole request, is
  // answered: silence between requests is the keep-alive's.
  asio::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect({asio::ip::make_address("127.0.0.1"), server.port()});
  std::this_thread::sleep_for(600ms);
  asio::write(socket, asio::buffer(std::string("GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")));
  std::string reply;
  boost::system::error_code ec;
  asio::read(socket, asio::dynamic_buffer(reply), ec);
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 200 OK\r\n")) << reply;
}

TEST(Requests, BytesThatAreNotHttpAreAnswered400AndClosed) {
  auto log = std::make_shared<EventLog>();
  TestServer server(probe_factory(log));
  static constexpr char garbage[] = "\x16\x03\x01\x02\x00 not http at all\r\n\r\n";  // a TLS hello's start
  const auto [answer, closed] = exchange(server.port(), std::string(garbage, sizeof garbage - 1));
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 400")) << answer.substr(0, 80);
  EXPECT_EQ(occurrences(answer, "HTTP/1.1 400"), 1u);
  EXPECT_TRUE(closed);
  EXPECT_EQ(http_request(server.port(), "/status").body, "ok") << "the server goes on";
}

TEST(Addresses, HostColonColonServesIpv6Loopback) {
  auto log = std::make_shared<EventLog>();
  Server server(probe_factory(log), {.host = "::", .port = 0, .threads = 1});
  ASSERT_TRUE(server.start().ok());
  std::string error;
  auto c = WsClient::connect(server.port(), "/ws/six", 5s, 0, "::1", &error);
  ASSERT_TRUE(c) << "no connection over [::1]: " << error;
  EXPECT_TRUE(c->read_until("you are 1"));
  c->close();
  server.stop();
}

/// Notes the thread each handler of each room runs on.
struct ThreadNoting : Service {
  static inline std::mutex mutex;
  static inline std::map<std::string, std::set<std::thread::id>> threads;
  ThreadNoting(std::string_view room, Context&) : room(room) {}
  void note() {
    std::lock_guard lock(mutex);
    threads[room].insert(std::this_thread::get_id());
  }
  void init(Context&) override { note(); }
  void connect(ClientId, Context&) override { note(); }
  void message(ClientId sender, const MessagePayload& payload, Context& ctx) override {
    note();
    ctx.send(sender, payload);
  }
  void disconnect(ClientId, Context&) override { note(); }
  std::string room;
};

// README: "A room's handlers run on one worker thread (the room's id picks it); the connection is
// moved to that thread after the upgrade, so a room's traffic never crosses threads."
TEST(Threads, EveryHandlerOfARoomRunsOnItsOneThread) {
  ThreadNoting::threads.clear();
  {
    TestServer server(make_factory<ThreadNoting>(), {.threads = 4});
    std::vector<std::unique_ptr<WsClient>> clients;
    for (int room = 0; room < 8; ++room)
      for (int i = 0; i < 4; ++i) {
        clients.push_back(WsClient::connect(server.port(), "/ws/r" + std::to_string(room)));
        ASSERT_TRUE(clients.back());
      }
    for (auto& c : clients) c->send_text("hello");
    for (auto& c : clients) ASSERT_TRUE(c->read_until("hello"));
    for (auto& c : clients) c->close();
  }
  std::lock_guard lock(ThreadNoting::mutex);
  ASSERT_EQ(ThreadNoting::threads.size(), 8u);
  std::set<std::thread::id> used;
  for (const auto& [room, ids] : ThreadNoting::threads) {
    EXPECT_EQ(ids.size(), 1u) << "room " << room << " ran on " << ids.size() << " threads";
    used.insert(ids.begin(), ids.end());
  }
  EXPECT_GE(used.size(), 2u) << "8 rooms on 4 workers all landed on one";
}

// README: "--close-timeout: how long a close handshake may take before the connection is dropped".
TEST(Closing, AClientThatNeverAnswersTheCloseIsDroppedAfterTheCloseTimeout) {
  auto log = std::make_shared<EventLog>();
  ServerOptions options;
  options.close_timeout = 300ms;
  auto server = std::make_unique<TestServer>(probe_factory(log), options);
  // A raw upgrade: this client reads the server's close frame but never answers it.
  const std::string upgrade =
      "GET /ws/mute HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  asio::io_context ioc;
  tcp::socket socket(ioc);
  socket.connect({asio::ip::make_address("127.0.0.1"), server->port()});
  asio::write(socket, asio::buffer(upgrade));
  std::string received;
  std::array<char, 4096> chunk;
  boost::system::error_code ec;
  while (!ec && received.find("you are 1") == std::string::npos) {  // the 101, then the room's greeting
    const std::size_t n = socket.read_some(asio::buffer(chunk), ec);
    received.append(chunk.data(), n);
  }
  ASSERT_FALSE(ec) << ec.message();
  std::thread stopper([&] { server.reset(); });  // closes every client with 1001
  const auto start = std::chrono::steady_clock::now();
  while (!ec) {
    const std::size_t n = socket.read_some(asio::buffer(chunk), ec);
    received.append(chunk.data(), n);
  }
  const auto waited = std::chrono::steady_clock::now() - start;
  stopper.join();
  EXPECT_NE(received.find("HTTP/1.1 101"), std::string::npos);
  EXPECT_NE(received.find("\x03\xe9server shutting down"), std::string::npos) << "a close frame with 1001";
  EXPECT_EQ(ec, asio::error::eof) << ec.message();
  EXPECT_LT(waited, 3s) << "dropped long after the close timeout";
}

// --max-rooms holds for native services too: a client whose room would be one more is closed with
// 1013 (try again later); existing rooms still take clients, and a room that ends frees its place.
TEST(Budgets, RoomsBeyondMaxRoomsAreRefusedWith1013) {
  auto log = std::make_shared<EventLog>();
  ServerOptions options;
  options.max_rooms = 2;
  options.room_grace = RoomGrace::immediate();
  TestServer server(probe_factory(log), options);
  auto a = WsClient::connect(server.port(), "/ws/a");
  auto b = WsClient::connect(server.port(), "/ws/b");
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->read_until("you are 1") && b->read_until("you are 1"));
  auto c = WsClient::connect(server.port(), "/ws/c");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->read_until_closed(), 1013);
  EXPECT_EQ(log->count("init c"), 0u) << "the refused room was never built";
  auto a2 = WsClient::connect(server.port(), "/ws/a");
  ASSERT_TRUE(a2);
  EXPECT_TRUE(a2->read_until("you are 2")) << "an existing room still takes clients";
  b->close();
  ASSERT_TRUE(log->wait_for("destroy b"));
  auto c2 = WsClient::connect(server.port(), "/ws/c");
  ASSERT_TRUE(c2);
  EXPECT_TRUE(c2->read_until("you are 1")) << "the room that ended gave its place back";
}

// At --max-rooms a room nobody is in makes way for a new one, the one empty for longest first, so
// that rooms opened and left at once cannot lock everybody else out for their grace period; a new
// room is refused only when every room has a client.
TEST(Budgets, AtMaxRoomsTheRoomsEmptyForLongestMakeWay) {
  LogCapture capture;
  auto log = std::make_shared<EventLog>();
  ServerOptions options;
  options.max_rooms = 3;
  options.threads = 1;
  options.room_grace = RoomGrace::after(300s);
  TestServer server(probe_factory(log), options);
  for (const char* id : {"e1", "e2"}) {
    auto c = WsClient::connect(server.port(), std::string("/ws/") + id);
    ASSERT_TRUE(c && c->read_until("you are 1"));
    c->close();
    ASSERT_TRUE(log->wait_for(std::string("disconnect ") + id + " 1"));
  }
  auto kept = WsClient::connect(server.port(), "/ws/kept");
  ASSERT_TRUE(kept && kept->read_until("you are 1"));
  // Three rooms alive, two of them empty: each new room takes the place of the one empty longest.
  auto n1 = WsClient::connect(server.port(), "/ws/n1");
  ASSERT_TRUE(n1);
  EXPECT_TRUE(n1->read_until("you are 1")) << "refused although a room was empty";
  EXPECT_TRUE(log->wait_for("destroy e1"));
  EXPECT_EQ(log->count("destroy e2"), 0u);
  EXPECT_TRUE(capture.wait_for("room 'e1' makes way for a new room (--max-rooms 3 are alive): empty for "));
  auto n2 = WsClient::connect(server.port(), "/ws/n2");
  ASSERT_TRUE(n2);
  EXPECT_TRUE(n2->read_until("you are 1"));
  EXPECT_TRUE(log->wait_for("destroy e2"));
  // Every room has a client now: refused.
  auto n3 = WsClient::connect(server.port(), "/ws/n3");
  ASSERT_TRUE(n3);
  EXPECT_EQ(n3->read_until_closed(), 1013);
  EXPECT_EQ(log->count("init n3"), 0u);
  EXPECT_TRUE(kept->read_until_closed(100ms) == std::nullopt) << "a room with a client was ended";
}

// The same across workers: a new room whose worker has no empty room waits while another
// worker's empty room makes way for it, and is refused only when no worker has one.
TEST(Budgets, AtMaxRoomsAnotherWorkersEmptyRoomMakesWay) {
  LogCapture capture;
  auto log = std::make_shared<EventLog>();
  ServerOptions options;
  options.max_rooms = 2;
  options.threads = 2;
  options.room_grace = RoomGrace::after(300s);
  TestServer server(probe_factory(log), options);
  // Room ids by the worker they live on (the server's rule: their hash modulo the workers).
  auto on_worker = [](std::size_t worker, const std::string& prefix, int skip = 0) {
    for (int i = 0;; ++i) {
      const std::string id = prefix + std::to_string(i);
      if (std::hash<std::string_view>{}(id) % 2 == worker && skip-- == 0) return id;
    }
  };
  const std::string empty = on_worker(0, "empty"), kept = on_worker(1, "kept"), fresh = on_worker(1, "new"),
                    refused = on_worker(1, "new", 1);
  auto e = WsClient::connect(server.port(), "/ws/" + empty);
  ASSERT_TRUE(e && e->read_until("you are 1"));
  e->close();
  ASSERT_TRUE(log->wait_for("disconnect " + empty + " 1"));
  auto k = WsClient::connect(server.port(), "/ws/" + kept);
  ASSERT_TRUE(k && k->read_until("you are 1"));
  auto n = WsClient::connect(server.port(), "/ws/" + fresh);
  ASSERT_TRUE(n);
  EXPECT_TRUE(n->read_until("you are 1")) << "refused although another worker's room was empty";
  EXPECT_TRUE(log->wait_for("destroy " + empty));
  // Every room has a client now: refused, after every worker was asked.
  auto r = WsClient::connect(server.port(), "/ws/" + refused);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->read_until_closed(), 1013);
  EXPECT_TRUE(capture.wait_for("refused to create room '" + refused + "': 2 rooms are alive (--max-rooms 2), every one "
                               "with a client"));
  EXPECT_EQ(log->count("init " + refused), 0u);
}

// --max-connections: a connection past it is answered 503 and closed; one that closes gives its
// place back.
TEST(Budgets, ConnectionsBeyondMaxConnectionsAreAnswered503) {
  auto log = std::make_shared<EventLog>();
  ServerOptions options;
  options.max_connections = 2;
  TestServer server(probe_factory(log), options);
  auto a = WsClient::connect(server.port(), "/ws/r");
  auto b = WsClient::connect(server.port(), "/ws/r");
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->read_until("you are 1") && b->read_until("you are 2"));
  const auto [answer, closed] = exchange(server.port(), "GET /status HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n")) << answer;
  EXPECT_NE(answer.find("Retry-After: 1\r\n"), std::string::npos) << answer;
  EXPECT_TRUE(closed);
  a->close();
  // Its place is given back once its session has gone, just after its `disconnect`.
  std::string again;
  const auto give_up = std::chrono::steady_clock::now() + 5s;
  while (!again.starts_with("HTTP/1.1 200 OK\r\n") && std::chrono::steady_clock::now() < give_up) {
    again = exchange(server.port(), "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").first;
  }
  EXPECT_TRUE(again.starts_with("HTTP/1.1 200 OK\r\n")) << again;
}

// --max-send-size: a room that sends a message larger than any client could take fails with the
// reason, instead of closing every recipient as too slow; other rooms go on.
TEST(Budgets, ARoomSendingAMessageOverTheLimitFails) {
  auto log = std::make_shared<EventLog>();
  ServerOptions options;
  options.max_send_bytes = 1000;
  TestServer server(probe_factory(log), options);
  auto a = WsClient::connect(server.port(), "/ws/big");
  auto b = WsClient::connect(server.port(), "/ws/big");
  auto other = WsClient::connect(server.port(), "/ws/other");
  ASSERT_TRUE(a && b && other);
  ASSERT_TRUE(a->read_until("you are 1") && b->read_until("you are 2") && other->read_until("you are 1"));
  a->send_text("flood:1:1000");  // exactly the limit: delivered
  auto got = b->read();
  ASSERT_TRUE(got && got->kind == Received::Kind::text && got->data == std::string(1000, 'x'));
  a->send_text("flood:1:1001");
  EXPECT_EQ(a->read_until_closed(), 1011);
  EXPECT_EQ(b->read_until_closed(), 1011);
  other->send_text("echo:fine");
  EXPECT_TRUE(other->read_until("fine"));
}

// The default limit is what an empty send queue holds: a larger message fails its room rather
// than being dropped with every recipient closed as too slow.
TEST(Budgets, TheDefaultSendLimitIsWhatTheQueueHolds) {
  auto log = std::make_shared<EventLog>();
  ServerOptions options;
  options.max_queued_bytes = 64 * 1024;
  TestServer server(probe_factory(log), options);
  auto a = WsClient::connect(server.port(), "/ws/q");
  ASSERT_TRUE(a && a->read_until("you are 1"));
  a->send_text("flood:1:" + std::to_string(64 * 1024 - 26));  // header 10, bookkeeping 16: fits
  auto got = a->read();
  ASSERT_TRUE(got && got->kind == Received::Kind::text && got->data.size() == 64 * 1024 - 26);
  a->send_text("flood:1:" + std::to_string(64 * 1024 - 25));
  EXPECT_EQ(a->read_until_closed(), 1011);
}

TEST(Budgets, ASendLimitTheQueueCannotHoldIsRefusedAtStart) {
  ServerOptions options;
  options.max_queued_bytes = 1 << 20;
  options.max_send_bytes = 2 << 20;
  Server server(probe_factory(std::make_shared<EventLog>()), options);
  const Status started = server.start();
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.message().find("--max-send-size"), std::string::npos) << started.message();
}

}  // namespace
}  // namespace stateroom::test
