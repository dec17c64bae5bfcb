// A WebSocket session through every error path: the same conversation is run over a socket that
// breaks at I/O step 1, then 2, 3, … until a run completes with no step failed. After each run
// the session must be gone, the room must have seen exactly one `disconnect` for each `connect`,
// and the worker must serve the next client in full. No network, no threads, no sleeps: the test
// is the worker's thread and runs its event loop until nothing is ready. Under the sanitizer build
// a leak or a use after free on any of these paths fails the run.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "protocol/frame.hpp"
#include "protocol/parser.hpp"
#include "server/websocket_session_impl.hpp"
#include "support/fault_socket.hpp"
#include "support/room_harness.hpp"

namespace stateroom::server {
template class BasicWebSocketSession<test::FaultSocket>;
}

namespace stateroom::test {
namespace {

using protocol::Opcode;
using FaultSession = server::BasicWebSocketSession<FaultSocket>;

/// What the room's service saw, over every room the test's factory built.
struct Seen {
  int connects = 0;
  int disconnects = 0;
  std::vector<std::string> messages;
};

/// Echoes every message to its sender; "fail" fails the room.
struct Echo : Service {
  static inline Seen* seen = nullptr;
  void connect(ClientId, Context&) override { ++seen->connects; }
  void disconnect(ClientId, Context&) override { ++seen->disconnects; }
  void message(ClientId sender, const MessagePayload& payload, Context& ctx) override {
    seen->messages.emplace_back(payload.view());
    if (payload.view() == "fail") {
      ctx.fail("asked to fail");
      return;
    }
    ctx.send(sender, payload);
  }
};

/// A masked client frame.
std::string frame(Opcode opcode, std::string_view payload, bool fin = true) {
  static constexpr std::uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
  std::uint8_t header[protocol::max_header_size];
  const std::size_t n = protocol::write_header(
      header, {.opcode = opcode, .payload_size = payload.size(), .fin = fin, .mask = mask});
  std::string out(reinterpret_cast<const char*>(header), n);
  std::string body(payload);
  protocol::apply_mask({reinterpret_cast<std::uint8_t*>(body.data()), body.size()}, mask);
  return out + body;
}

std::string close_frame(std::uint16_t code, std::string_view reason = {}) {
  std::uint8_t payload[protocol::max_control_payload];
  const std::size_t n = protocol::write_close_payload(payload, code, reason);
  return frame(Opcode::close, {reinterpret_cast<const char*>(payload), n});
}

/// How the client ends the conversation.
enum class Ending {
  close_handshake,  ///< it sends a close frame; the server answers and closes
  vanish,           ///< it closes TCP without a close frame
  protocol_error,   ///< it sends an unmasked frame; the server fails the connection (1002)
  room_fails,       ///< its message fails the room; the server closes it with 1011
  server_stops,     ///< the server shuts down; it closes the client with 1001
};

const char* name(Ending e) {
  switch (e) {
    case Ending::close_handshake:
      return "close handshake";
    case Ending::vanish:
      return "client vanishes";
    case Ending::protocol_error:
      return "protocol error";
    case Ending::room_fails:
      return "room fails";
    case Ending::server_stops:
      return "server stops";
  }
  return "?";
}

/// The client at the far end: sends its messages, reads what the server writes (the 101, then
/// frames), and once every answer is in, ends the conversation its way; it answers a close frame
/// with its own, then closes.
struct Client {
  Client(FaultPeer& peer, Ending ending, std::function<void()> stop_server)
      : peer(peer), ending(ending), stop_server(std::move(stop_server)) {}

  static constexpr std::size_t expected_echoes = 3;

  void start() {
    peer.send(frame(Opcode::text, "hello") + frame(Opcode::binary, std::string("\x00\x01\x02", 3)) +
              frame(Opcode::text, "frag", false) + frame(Opcode::ping, "are you there") +
              frame(Opcode::continuation, "mented", false) + frame(Opcode::continuation, " message"));
  }

  void end_conversation() {
    switch (ending) {
      case Ending::close_handshake:
        sent_close = true;
        peer.send(close_frame(1000, "bye"));
        break;
      case Ending::vanish:
        peer.finish();
        break;
      case Ending::protocol_error:
        peer.send("\x81\x02no");  // a text frame without a mask
        break;
      case Ending::room_fails:
        peer.send(frame(Opcode::text, "fail"));
        break;
      case Ending::server_stops:
        stop_server();
        break;
    }
  }

  void on_output() {
    if (!upgraded) {
      const auto end = peer.received.find("\r\n\r\n");
      if (end == std::string::npos) return;
      response = peer.received.substr(0, end);
      upgraded = true;
      parsed = end + 4;
    }
    pending = peer.received.substr(parsed);
    parsed = peer.received.size();
    std::span<std::uint8_t> data(reinterpret_cast<std::uint8_t*>(pending.data()), pending.size());
    while (!closed) {
      const protocol::Event e = parser.next(data);
      if (e.kind == protocol::Event::Kind::need_more) break;
      if (e.kind == protocol::Event::Kind::message) {
        echoes.emplace_back(reinterpret_cast<const char*>(e.payload.data()), e.payload.size());
      } else if (e.kind == protocol::Event::Kind::pong) {
        ++pongs;
      } else if (e.kind == protocol::Event::Kind::close) {
        close_code = e.close_code;
        if (!sent_close) {
          sent_close = true;
          peer.send(close_frame(e.close_code == 1005 ? 1000 : e.close_code));
        }
        closed = true;
        peer.finish();
      } else {
        protocol_error = std::string(e.reason);
        closed = true;
        peer.finish();
      }
    }
    if (!ended && echoes.size() == expected_echoes && pongs == 1) {
      ended = true;
      end_conversation();
    }
    if (peer.send_shut_down) peer.finish();
  }

  FaultPeer& peer;
  const Ending ending;
  const std::function<void()> stop_server;
  protocol::Parser parser{{.max_message_size = 1 << 20, .expect_masked = false}};
  bool upgraded = false;
  std::string response;
  std::string pending;
  std::size_t parsed = 0;
  std::vector<std::string> echoes;
  int pongs = 0;
  std::optional<std::uint16_t> close_code;
  bool ended = false;
  bool sent_close = false;
  bool closed = false;
  std::string protocol_error;
};

/// One connection's I/O behaviour.
struct Wire {
  std::size_t max_read;
  std::size_t max_write;
  std::size_t block_every;
  const char* name;
};

struct Outcome {
  bool failed = false;  ///< a step failed during the run
  std::string failed_step;
  std::size_t steps = 0;
  bool session_gone = false;
  std::vector<std::string> echoes;
  std::string response;
  int pongs = 0;
  std::optional<std::uint16_t> close_code;
  std::string protocol_error;
};

class SessionFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Echo::seen = &seen;
    level = spdlog::get_level();
    spdlog::set_level(spdlog::level::off);  // every run logs its connection; thousands of runs
  }
  void TearDown() override {
    spdlog::set_level(level);
    Echo::seen = nullptr;
  }

  /// Runs one conversation over a socket that fails at step `fail_at` (never, for SIZE_MAX).
  Outcome converse(RoomHarness& h, Ending ending, const Wire& wire, std::size_t fail_at) {
    auto& worker = h.worker();
    auto peer = std::make_shared<FaultPeer>(worker.ioc, fail_at);
    peer->max_read = wire.max_read;
    peer->max_write = wire.max_write;
    peer->block_every = wire.block_every;
    Client client(*peer, ending, [&worker] {
      // What the server's stop posts to each worker (the drain aside).
      boost::asio::post(worker.ioc, [&worker] {
        worker.shutting_down = true;
        auto rooms = worker.rooms;
        for (auto& [id, room] : rooms) room->shut_down();
      });
    });
    peer->on_output = [&client](FaultPeer&) { client.on_output(); };
    client.start();

    std::weak_ptr<FaultSession> watch;
    {
      auto session =
          std::make_shared<FaultSession>(worker, FaultSocket(peer), server::Handshake{.accept_key = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, "room");
      watch = session;
      session->start();
    }
    while (worker.ioc.poll() != 0) {
    }
    worker.shutting_down = false;  // the next run is served by a server that runs
    Outcome out;
    out.failed = peer->failed;
    out.failed_step = peer->failed_step;
    out.steps = peer->steps;
    out.session_gone = watch.expired();
    out.echoes = client.echoes;
    out.response = client.response;
    out.pongs = client.pongs;
    out.close_code = client.close_code;
    out.protocol_error = client.protocol_error;
    return out;
  }

  Seen seen;
  spdlog::level::level_enum level{};
};

constexpr Wire wires[] = {
    {.max_read = SIZE_MAX, .max_write = SIZE_MAX, .block_every = 0, .name = "whole reads and writes"},
    {.max_read = 5,
     .max_write = 7,
     .block_every = 2,
     .name = "5-byte reads, 7-byte writes, every 2nd blocks"},
    {.max_read = 1, .max_write = 64, .block_every = 3, .name = "1-byte reads, every 3rd write blocks"},
};

constexpr Ending endings[] = {Ending::close_handshake, Ending::vanish, Ending::protocol_error,
                              Ending::room_fails, Ending::server_stops};

TEST_F(SessionFaultTest, EveryIoStepThatFailsEndsTheSessionWithOneDisconnectAndTheWorkerGoesOn) {
  const std::vector<std::string> all_echoes = {"hello", std::string("\x00\x01\x02", 3), "fragmented message"};
  for (const Wire& wire : wires) {
    for (const Ending ending : endings) {
      SCOPED_TRACE(std::string(name(ending)) + ", " + wire.name);
      RoomHarness h(make_factory<Echo>());
      std::size_t runs = 0;
      for (std::size_t fail_at = 1;; ++fail_at) {
        SCOPED_TRACE("the connection breaks at step " + std::to_string(fail_at));
        ASSERT_LT(fail_at, 5000u) << "the conversation never completes";
        seen = {};
        const Outcome out = converse(h, ending, wire, fail_at);
        ++runs;
        ASSERT_TRUE(out.session_gone)
            << "the session is still open with nothing left to do (" << out.failed_step << " failed)";
        EXPECT_EQ(h.worker().websocket_sessions, 0u);
        EXPECT_LE(seen.connects, 1);
        const bool room_failed = std::ranges::count(seen.messages, "fail") != 0;
        if (room_failed) {
          EXPECT_EQ(seen.disconnects, 0) << "a failed room's service is gone: it hears of no one leaving";
        } else {
          EXPECT_EQ(seen.disconnects, seen.connects) << "the room must see one disconnect for its connect";
        }
        if (auto it = h.worker().rooms.find("room"); it != h.worker().rooms.end()) {
          EXPECT_EQ(it->second->client_count(), 0u);
        }
        if (!out.failed) {
          // The conversation completed with no step failed: everything arrived.
          EXPECT_EQ(seen.connects, 1);
          EXPECT_TRUE(out.response.starts_with("HTTP/1.1 101 Switching Protocols\r\n")) << out.response;
          EXPECT_NE(out.response.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                    std::string::npos);
          EXPECT_EQ(out.echoes, all_echoes);
          EXPECT_EQ(out.pongs, 1);
          EXPECT_EQ(out.protocol_error, "");
          switch (ending) {
            case Ending::close_handshake:
              EXPECT_EQ(out.close_code, 1000);
              break;
            case Ending::vanish:
              EXPECT_EQ(out.close_code, std::nullopt);
              break;
            case Ending::protocol_error:
              EXPECT_EQ(out.close_code, 1002);
              break;
            case Ending::room_fails:
              EXPECT_EQ(out.close_code, 1011);
              break;
            case Ending::server_stops:
              EXPECT_EQ(out.close_code, 1001);
              break;
          }
          break;
        }
        // The worker goes on: the next client, on a connection that does not break, is served in full.
        seen = {};
        const Outcome next = converse(h, Ending::close_handshake, wires[0], SIZE_MAX);
        ASSERT_FALSE(next.failed);
        EXPECT_TRUE(next.session_gone);
        EXPECT_EQ(next.echoes, all_echoes);
        EXPECT_EQ(next.close_code, 1000);
        EXPECT_EQ(seen.connects, 1);
        EXPECT_EQ(seen.disconnects, 1);
        if (HasFatalFailure()) return;
      }
      EXPECT_GT(runs, 5u) << "the conversation should take more than a few I/O steps";
    }
  }
}

}  // namespace
}  // namespace stateroom::test
