// permessage-deflate over real sockets, against Beast's own implementation of the extension as
// the client: negotiation, messages both ways and both sizes, broadcasts to a mix of compressed and
// plain clients, and a compression bomb.
#include <gtest/gtest.h>

#include <boost/beast/websocket/option.hpp>
#include <random>
#include <string>
#include <thread>

#include "../support/log_capture.hpp"
#include "../support/probe_service.hpp"
#include "../support/ws_client.hpp"

namespace stateroom::test {
namespace {

namespace websocket = boost::beast::websocket;

websocket::permessage_deflate client_deflate(int window_bits = 15, bool no_context_takeover = false) {
  websocket::permessage_deflate pmd;
  pmd.client_enable = true;
  pmd.client_max_window_bits = window_bits;
  pmd.client_no_context_takeover = no_context_takeover;
  pmd.msg_size_threshold = 0;  // compress every message, the smallest too
  return pmd;
}

ServerOptions compressing(int window_bits = 15) {
  ServerOptions options;
  options.compression = true;
  options.compression_window_bits = window_bits;
  return options;
}

std::string repetitive(std::size_t size) {
  std::string s;
  while (s.size() < size) s += R"({"player":7,"x":12.5,"y":-3.25,"name":"someone"},)";
  s.resize(size);
  return s;
}

std::string random_bytes(std::size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(size, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

TEST(Compression, IsAgreedWithAClientThatOffersItAndMessagesGoBothWays) {
  auto log = std::make_shared<EventLog>();
  TestServer server(probe_factory(log), compressing());
  std::string error;
  auto client = WsClient::connect_compressed(server.port(), "/ws/c", client_deflate(), &error);
  ASSERT_TRUE(client) << error;
  // Beast offers both windows at 15 bits: agreed as offered.
  EXPECT_EQ(client->extensions(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=15; client_max_window_bits=15");
  ASSERT_TRUE(client->read_until("you are 1"));
  // Below the threshold, above it and compressible, above it and incompressible; text and binary;
  // many in a row, so that the client's context carries from message to message.
  for (int round = 0; round < 3; ++round) {
    for (const std::size_t size : {std::size_t{10}, std::size_t{300}, std::size_t{5000}, std::size_t{200000}}) {
      const std::string text = repetitive(size);
      client->send_text("echo:" + text);
      auto got = client->read();
      ASSERT_TRUE(got && got->is_text(text)) << "text of " << size << " bytes, round " << round;
      const std::string binary = random_bytes(size, static_cast<unsigned>(size + round));
      client->send_binary(binary);
      got = client->read();
      ASSERT_TRUE(got && got->kind == Received::Kind::binary && got->data == binary)
          << "binary of " << size << " bytes, round " << round;
    }
  }
  client->close();
}

TEST(Compression, WindowsAndContextModesFollowTheNegotiation) {
  auto log = std::make_shared<EventLog>();
  TestServer server(probe_factory(log), compressing(10));
  // A client that accepts a smaller window is told 10 bits both ways.
  auto small = WsClient::connect_compressed(server.port(), "/ws/w1", client_deflate(15));
  ASSERT_TRUE(small && small->read_until("you are 1"));
  EXPECT_EQ(small->extensions(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=10");
  // A client that keeps no context: acknowledged.
  auto fresh = WsClient::connect_compressed(server.port(), "/ws/w2", client_deflate(15, true));
  ASSERT_TRUE(fresh && fresh->read_until("you are 1"));
  EXPECT_NE(fresh->extensions().find("client_no_context_takeover"), std::string::npos) << fresh->extensions();
  for (auto* c : {small.get(), fresh.get()}) {
    for (int i = 0; i < 20; ++i) {
      const std::string text = repetitive(3000 + static_cast<std::size_t>(i) * 777);
      c->send_text("echo:" + text);
      auto got = c->read();
      ASSERT_TRUE(got && got->is_text(text)) << i;
    }
  }
}

TEST(Compression, ABroadcastReachesCompressedAndPlainClientsAlike) {
  auto log = std::make_shared<EventLog>();
  TestServer server(probe_factory(log), compressing());
  auto a = WsClient::connect_compressed(server.port(), "/ws/b", client_deflate());
  auto b = WsClient::connect_compressed(server.port(), "/ws/b", client_deflate(12));
  auto plain = WsClient::connect(server.port(), "/ws/b");
  ASSERT_TRUE(a && b && plain);
  ASSERT_TRUE(a->read_until("you are 1") && b->read_until("you are 2") && plain->read_until("you are 3"));
  const std::string text = repetitive(50000);
  a->send_text("bcast:" + text);
  for (auto* c : {a.get(), b.get(), plain.get()}) {
    auto got = c->read();
    ASSERT_TRUE(got && got->is_text(text));
  }
}

TEST(Compression, IsOffByDefault) {
  auto log = std::make_shared<EventLog>();
  TestServer server(probe_factory(log));
  auto client = WsClient::connect_compressed(server.port(), "/ws/off", client_deflate());
  ASSERT_TRUE(client);
  EXPECT_EQ(client->extensions(), "");
  ASSERT_TRUE(client->read_until("you are 1"));
  const std::string text = repetitive(10000);
  client->send_text("echo:" + text);
  auto got = client->read();
  EXPECT_TRUE(got && got->is_text(text));
}

TEST(Compression, AMessageThatInflatesPastTheLimitClosesItsSenderWith1009) {
  auto log = std::make_shared<EventLog>();
  ServerOptions options = compressing();
  options.max_message_bytes = 64 * 1024;
  TestServer server(probe_factory(log), options);
  auto bomb = WsClient::connect_compressed(server.port(), "/ws/bomb", client_deflate());
  auto other = WsClient::connect(server.port(), "/ws/bomb");
  ASSERT_TRUE(bomb && other);
  ASSERT_TRUE(bomb->read_until("you are 1") && other->read_until("you are 2"));
  // 8 MiB of one letter: a few kilobytes on the wire, far past the limit once inflated.
  bomb->send_binary(std::string(8 << 20, 'a'));
  EXPECT_EQ(bomb->read_until_closed(), 1009);
  EXPECT_TRUE(other->read_until("left 1")) << "the room goes on without it";
  other->send_text("echo:still here");
  EXPECT_TRUE(other->read_until("still here"));
  // Just under the limit once inflated passes.
  auto fine = WsClient::connect_compressed(server.port(), "/ws/bomb", client_deflate());
  ASSERT_TRUE(fine);
  const std::string big(64 * 1024, 'b');
  fine->send_binary(big);
  bool echoed = false;
  for (int i = 0; i < 5 && !echoed; ++i) {
    auto got = fine->read();
    ASSERT_TRUE(got);
    echoed = got->kind == Received::Kind::binary && got->data == big;
  }
  EXPECT_TRUE(echoed);
}

// Deflate bombs within the size limit, one after another: a client whose messages inflate past
// --max-inflate-rate is closed with 1008 (one log line); one within it goes on.
TEST(Compression, AClientInflatingPastTheRateIsClosedWith1008) {
  LogCapture log;
  auto events = std::make_shared<EventLog>();
  ServerOptions options = compressing();
  options.max_message_bytes = 1 << 20;
  options.max_inflate_rate = 1 << 20;  // a second's worth: one bomb, then one a second
  TestServer server(probe_factory(events), options);
  auto bomb = WsClient::connect_compressed(server.port(), "/ws/bomb", client_deflate());
  ASSERT_TRUE(bomb && bomb->read_until("you are 1"));
  // 1 MiB of one letter: about a kilobyte on the wire. Ten at once are ten a second or more, however
  // slow the client compresses them.
  const std::string inflates(1 << 20, 'a');
  for (int i = 0; i < 10; ++i) bomb->send_binary(inflates);
  EXPECT_EQ(bomb->read_until_closed(10s), 1008);
  EXPECT_TRUE(log.wait_for("room 'bomb' client 1 inflates more than --max-inflate-rate (1 MiB a second): closing "
                           "with 1008"));
  // The same messages within the rate go on.
  auto paced = WsClient::connect_compressed(server.port(), "/ws/bomb", client_deflate());
  ASSERT_TRUE(paced && paced->read_until("you are 2"));
  for (int i = 0; i < 3; ++i) {
    if (i) std::this_thread::sleep_for(1300ms);
    paced->send_binary(inflates);
    auto echo = paced->read(10s);
    ASSERT_TRUE(echo && echo->kind == Received::Kind::binary) << "message " << i;
  }
  EXPECT_FALSE(paced->read_until_closed(200ms)) << "a client within the rate was closed";
}

}  // namespace
}  // namespace stateroom::test
