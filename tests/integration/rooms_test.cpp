// Rooms, client ids, recipients, payload kinds and ordering, over real sockets.
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "../support/probe_service.hpp"
#include "../support/ws_client.hpp"

namespace stateroom::test {
namespace {

class RoomsTest : public ::testing::Test {
 protected:
  std::shared_ptr<EventLog> log = std::make_shared<EventLog>();
  TestServer server{probe_factory(log)};

  std::unique_ptr<WsClient> join(const std::string& target, std::uint32_t expected_id) {
    auto c = WsClient::connect(server.port(), target);
    EXPECT_NE(c, nullptr) << target;
    if (!c) return nullptr;
    auto hello = c->read();
    EXPECT_TRUE(hello && hello->is_text("you are " + std::to_string(expected_id)))
        << (hello ? hello->data : "nothing");
    return c;
  }
};

TEST_F(RoomsTest, InitPrecedesTheFirstConnectAndIdsStartAtOne) {
  auto a = join("/ws/alpha", 1);
  auto b = join("/ws/alpha", 2);
  const auto events = log->events();
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[0], "init alpha");
  EXPECT_EQ(events[1], "connect alpha 1");
  EXPECT_EQ(events[2], "connect alpha 2");
}

TEST_F(RoomsTest, ClientIdsAreNeverReusedInARoom) {
  auto a = join("/ws/r", 1);
  auto b = join("/ws/r", 2);
  a->close();
  ASSERT_TRUE(log->wait_for("disconnect r 1"));
  auto c = join("/ws/r", 3);
  ASSERT_TRUE(b->read_until("left 1"));
}

TEST_F(RoomsTest, RoomsAreIsolated) {
  auto a = join("/ws/one", 1);
  auto b = join("/ws/two", 1);  // ids are per room
  a->send_text("bcast:hello one");
  ASSERT_TRUE(a->read_until("hello one"));
  b->send_text("echo:ping");
  auto r = b->read();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->is_text("ping")) << "room two received room one's broadcast: " << r->data;
  EXPECT_EQ(log->count("init one"), 1u);
  EXPECT_EQ(log->count("init two"), 1u);
}

TEST_F(RoomsTest, DefaultRoomAndPercentDecodedIds) {
  auto a = join("/ws", 1);
  auto b = join("/ws/default", 2);
  auto c = join("/ws/caf%C3%A9%20ol%C3%A9", 1);
  auto d = join("/ws/a%2Fb", 1);
  EXPECT_TRUE(log->wait_for("connect café olé 1"));
  EXPECT_TRUE(log->wait_for("connect a/b 1"));
}

TEST_F(RoomsTest, Recipients) {
  auto c1 = join("/ws/r", 1);
  auto c2 = join("/ws/r", 2);
  auto c3 = join("/ws/r", 3);

  c1->send_text("bcast:all");
  for (auto* c : {c1.get(), c2.get(), c3.get()}) EXPECT_TRUE(c->read_until("all"));

  c1->send_text("except:not you");
  EXPECT_TRUE(c2->read_until("not you"));
  EXPECT_TRUE(c3->read_until("not you"));
  c1->send_text("echo:marker");
  auto r = c1->read();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->is_text("marker")) << "the sender received: " << r->data;

  c1->send_text("to:3:only three");
  EXPECT_TRUE(c3->read_until("only three"));
  c2->send_text("echo:marker2");
  r = c2->read();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->is_text("marker2")) << "client 2 received: " << r->data;

  c1->send_text("to:99:nobody");  // not connected: dropped, the room goes on
  c1->send_text("echo:still here");
  EXPECT_TRUE(c1->read_until("still here"));
}

TEST_F(RoomsTest, TextAndBinaryKeepTheirKind) {
  auto c = join("/ws/kinds", 1);
  const std::string bytes("\x00\x01\xff\xfe text-looking", 16);
  c->send_binary(bytes);
  auto r = c->read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, Received::Kind::binary);
  EXPECT_EQ(r->data, bytes);
  c->send_text("echo:ünïcode");
  r = c->read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, Received::Kind::text);
  EXPECT_EQ(r->data, "ünïcode");
}

TEST_F(RoomsTest, DisconnectFollowsTheLastMessage) {
  auto a = join("/ws/order", 1);
  for (int i = 0; i < 50; ++i) a->send_text("noop");
  a->close();
  ASSERT_TRUE(log->wait_for("disconnect order 1"));
  const auto events = log->events();
  std::vector<std::string> mine;
  for (const auto& e : events) {
    if (e.ends_with("order 1")) mine.push_back(e);
  }
  ASSERT_EQ(mine.size(), 52u);
  EXPECT_EQ(mine.front(), "connect order 1");
  EXPECT_EQ(mine.back(), "disconnect order 1");
}

// Several clients send numbered messages at once; every client must see the room's broadcasts in
// one and the same order, with each sender's messages in the order it sent them.
TEST_F(RoomsTest, OrderingUnderConcurrentClients) {
  constexpr int clients = 6;
  constexpr int per_client = 200;
  std::vector<std::unique_ptr<WsClient>> cs;
  for (int i = 0; i < clients; ++i) cs.push_back(join("/ws/busy", static_cast<std::uint32_t>(i + 1)));
  std::vector<std::thread> senders;
  std::vector<std::vector<std::string>> seen(clients);
  for (int i = 0; i < clients; ++i) {
    senders.emplace_back([&, i] {
      auto& c = *cs[static_cast<std::size_t>(i)];
      int sent = 0;
      while (static_cast<int>(seen[static_cast<std::size_t>(i)].size()) < clients * per_client) {
        if (sent < per_client) {
          c.send_text("bcast:" + std::to_string(i + 1) + "/" + std::to_string(sent++));
        }
        if (auto r = c.read(sent < per_client ? 1ms : 5s)) {
          if (r->kind != Received::Kind::text) break;
          seen[static_cast<std::size_t>(i)].push_back(r->data);
        } else if (sent >= per_client) {
          break;
        }
      }
    });
  }
  for (auto& t : senders) t.join();
  for (int i = 0; i < clients; ++i) {
    ASSERT_EQ(seen[static_cast<std::size_t>(i)].size(), static_cast<std::size_t>(clients * per_client)) << i;
    EXPECT_EQ(seen[static_cast<std::size_t>(i)], seen[0]) << "client " << i + 1 << " saw another order";
  }
  std::vector<int> next(clients + 1, 0);
  for (const auto& m : seen[0]) {
    const auto slash = m.find('/');
    const int sender = std::stoi(m.substr(0, slash));
    const int n = std::stoi(m.substr(slash + 1));
    EXPECT_EQ(n, next[static_cast<std::size_t>(sender)]++) << "sender " << sender << " out of order";
  }
}

// A client that joins while the room is busy broadcasting first receives its own greeting:
// nothing the room sent before its connect reaches it.
TEST_F(RoomsTest, NoMessageFromBeforeTheConnect) {
  auto busy = join("/ws/stream", 1);
  std::atomic<bool> stop{false};
  std::thread flooder([&] {  // keeps the room broadcasting while others join
    while (!stop) {
      busy->send_text("bcast:noise");
      if (!busy->read_until("noise", 2s)) return;
    }
  });
  for (std::uint32_t id = 2; id < 12; ++id) {
    auto late = WsClient::connect(server.port(), "/ws/stream");
    ASSERT_TRUE(late);
    auto first = late->read();
    ASSERT_TRUE(first);
    EXPECT_TRUE(first->is_text("you are " + std::to_string(id))) << first->data;
    late->drop();
  }
  stop = true;
  flooder.join();
}

}  // namespace
}  // namespace stateroom::test
