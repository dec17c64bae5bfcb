// The WebSocket layer as a client on the wire sees it: the handshake's checks, many frames in one
// TCP segment, frames split across segments, protocol errors and their close codes, the close
// handshake, and a client whose socket stops taking bytes. A raw-socket client on the protocol
// layer writes exactly the bytes each test needs.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "../support/probe_service.hpp"
#include "protocol/frame.hpp"
#include "protocol/handshake.hpp"
#include "protocol/parser.hpp"
#include "stateroom/hosted_service.hpp"
#include "stateroom/wasm.hpp"

using namespace stateroom;
using namespace stateroom::test;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using asio::ip::tcp;
using protocol::Opcode;

namespace {

constexpr std::uint8_t mask[4] = {9, 8, 7, 6};
const std::string good_key = "dGhlIHNhbXBsZSBub25jZQ==";

std::string client_frame(Opcode op, std::string_view payload, bool fin = true) {
  std::string out(protocol::max_header_size + payload.size(), '\0');
  auto* p = reinterpret_cast<std::uint8_t*>(out.data());
  const std::size_t n =
      protocol::write_header(p, {.opcode = op, .payload_size = payload.size(), .fin = fin, .mask = mask});
  std::copy(payload.begin(), payload.end(), out.begin() + static_cast<std::ptrdiff_t>(n));
  out.resize(n + payload.size());
  protocol::apply_mask({p + n, payload.size()}, mask);
  return out;
}

/// A blocking client with a receive timeout; reads server frames with the protocol parser.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port, int receive_buffer = 0) {
    socket_.open(tcp::v4());
    if (receive_buffer) socket_.set_option(asio::socket_base::receive_buffer_size(receive_buffer));
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    const timeval tv{5, 0};
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  /// Sends a handshake with the given version and key; returns the response head.
  std::string handshake(const std::string& target = "/ws/raw", const std::string& version = "13",
                        const std::string& key = good_key) {
    std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    if (!version.empty()) req += "Sec-WebSocket-Version: " + version + "\r\n";
    if (!key.empty()) req += "Sec-WebSocket-Key: " + key + "\r\n";
    write(req + "\r\n");
    boost::system::error_code ec;
    const std::size_t n = asio::read_until(socket_, asio::dynamic_buffer(pending_), "\r\n\r\n", ec);
    if (ec) return "error: " + ec.message();
    std::string head = pending_.substr(0, n);
    pending_.erase(0, n);
    return head;
  }

  void write(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }

  /// The next frame-level event from the server (need_more on timeout or EOF).
  protocol::Event next() {
    for (;;) {
      if (!pending_.empty()) {
        std::span<std::uint8_t> input(reinterpret_cast<std::uint8_t*>(pending_.data()), pending_.size());
        const auto before = input.size();
        last_ = parser_.next(input);
        consumed_ = before - input.size();
        if (last_.kind != protocol::Event::Kind::need_more) {
          // Keep the payload alive in `held_` before dropping the consumed bytes.
          held_.assign(last_.payload.begin(), last_.payload.end());
          last_.payload = {reinterpret_cast<const std::uint8_t*>(held_.data()), held_.size()};
          pending_.erase(0, consumed_);
          return last_;
        }
        pending_.clear();
      }
      char buf[65536];
      boost::system::error_code ec;
      const std::size_t n = socket_.read_some(asio::buffer(buf), ec);
      if (ec) {
        eof_ = ec == asio::error::eof || ec == asio::error::connection_reset;
        return {};
      }
      pending_.append(buf, n);
    }
  }

  /// The next message's text (or "" with a failed expectation).
  std::string next_text() {
    const auto e = next();
    EXPECT_EQ(e.kind, protocol::Event::Kind::message);
    return std::string(e.payload.begin(), e.payload.end());
  }

  /// Reads to the close frame; its code, or 0.
  std::uint16_t close_code() {
    for (;;) {
      const auto e = next();
      if (e.kind == protocol::Event::Kind::close) return e.close_code;
      if (e.kind == protocol::Event::Kind::need_more) return 0;
    }
  }

  /// Whether the server closed the TCP connection (within the receive timeout).
  bool sees_eof() {
    char buf[4096];
    for (;;) {
      boost::system::error_code ec;
      socket_.read_some(asio::buffer(buf), ec);
      if (ec) return ec == asio::error::eof || ec == asio::error::connection_reset;
    }
  }

 private:
  asio::io_context ioc_;
  tcp::socket socket_{ioc_};
  std::string pending_;
  std::string held_;
  protocol::Parser parser_{{.expect_masked = false}};
  protocol::Event last_;
  std::size_t consumed_ = 0;
  bool eof_ = false;
};

struct WebSocketTest : ::testing::Test {
  std::shared_ptr<EventLog> log = std::make_shared<EventLog>();
};

}  // namespace

TEST_F(WebSocketTest, TheHandshakeIsCheckedAndAnswered) {
  TestServer server(probe_factory(log));
  {
    RawClient c(server.port());
    const std::string head = c.handshake("/ws/h");
    EXPECT_TRUE(head.starts_with("HTTP/1.1 101")) << head;
    EXPECT_NE(head.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), std::string::npos) << head;
    EXPECT_EQ(c.next_text(), "you are 1");
  }
  {
    RawClient c(server.port());
    const std::string head = c.handshake("/ws/h", "12");
    EXPECT_TRUE(head.starts_with("HTTP/1.1 426")) << head;
    EXPECT_NE(head.find("Sec-WebSocket-Version: 13"), std::string::npos) << head;
  }
  for (const std::string key : {"", "c2hvcnQ=", "dGhlIHNhbXBsZSBub25jZQ=", "not base64 at all, but 24"}) {
    RawClient c(server.port());
    const std::string head = c.handshake("/ws/h", "13", key);
    EXPECT_TRUE(head.starts_with("HTTP/1.1 400")) << "key '" << key << "': " << head;
  }
  EXPECT_EQ(log->count("connect h 1"), 1u);
  EXPECT_EQ(log->count("connect h 2"), 0u);
}

TEST_F(WebSocketTest, EveryFrameOfOneSegmentIsAnsweredInOrder) {
  TestServer server(probe_factory(log));
  RawClient c(server.port());
  c.handshake("/ws/batch");
  EXPECT_EQ(c.next_text(), "you are 1");
  std::string burst;
  for (int i = 0; i < 500; ++i) burst += client_frame(Opcode::text, "echo:" + std::to_string(i));
  c.write(burst);  // one write: the server reads many frames at once
  for (int i = 0; i < 500; ++i) ASSERT_EQ(c.next_text(), std::to_string(i));
}

// The messages of one read reach a WebAssembly guest in one call (a batch); they must come back
// in order, whatever their sizes (the guest's block grows for the large ones) and with a message
// gathered from fragments among them (it cannot wait in the batch: the parser reuses its buffer).
TEST_F(WebSocketTest, EveryFrameOfOneSegmentReachesAGuestInOrder) {
  auto engine = std::make_shared<wasm::Engine>(wasm::Limits{});
  auto module = wasm::Module::load(engine, std::string(STATEROOM_WASM_DIR) + "/mirror.wasm");
  TestServer server(module, {.threads = 1});
  RawClient c(server.port());
  c.handshake("/ws/batch");
  std::vector<std::string> sent;
  std::string burst;
  for (int i = 0; i < 300; ++i) {
    std::string text = std::to_string(i) + (i % 50 == 7 ? std::string(5000 + 100 * i, 'x') : "");
    if (i == 150) {
      burst += client_frame(Opcode::text, text.substr(0, 2), false) + client_frame(Opcode::continuation, text.substr(2));
    } else {
      burst += client_frame(Opcode::text, text);
    }
    sent.push_back(std::move(text));
  }
  c.write(burst);
  for (const std::string& text : sent) ASSERT_EQ(c.next_text(), text);
}

TEST_F(WebSocketTest, FramesSplitAcrossSegmentsMakeOneMessage) {
  TestServer server(probe_factory(log));
  RawClient c(server.port());
  c.handshake("/ws/split");
  EXPECT_EQ(c.next_text(), "you are 1");
  // A fragmented message with a ping inside, sent a few bytes at a time.
  const std::string bytes = client_frame(Opcode::text, "echo:fr", false) + client_frame(Opcode::ping, "p") +
                            client_frame(Opcode::continuation, "agm\xC3", false) +
                            client_frame(Opcode::continuation, "\xA9nts");
  for (std::size_t at = 0; at < bytes.size(); at += 3) {
    c.write(bytes.substr(at, 3));
    std::this_thread::sleep_for(1ms);
  }
  const auto pong = c.next();
  EXPECT_EQ(pong.kind, protocol::Event::Kind::pong);
  EXPECT_EQ(std::string(pong.payload.begin(), pong.payload.end()), "p");
  EXPECT_EQ(c.next_text(), "fragm\xC3\xA9nts");
}

TEST_F(WebSocketTest, ProtocolErrorsCloseWithTheirCodesAndTheConnectionEnds) {
  TestServer server(probe_factory(log));
  struct Case {
    std::string bytes;
    std::uint16_t code;
  };
  std::string unmasked = client_frame(Opcode::text, "x");
  unmasked[1] = static_cast<char>(unmasked[1] & 0x7F);
  unmasked.erase(2, 4);
  const std::vector<Case> cases = {
      {unmasked, 1002},
      {client_frame(Opcode::text, "bad \xFF utf-8"), 1007},
      {client_frame(Opcode::continuation, "nothing to continue"), 1002},
      {client_frame(Opcode::ping, std::string(126, 'p')), 1002},
      {client_frame(Opcode::close, std::string("\x13\x88", 2)), 1002},  // code 5000
      {client_frame(Opcode::binary, std::string(2 << 20, 'b')), 1009},
  };
  int n = 0;
  for (const auto& c : cases) {
    RawClient client(server.port());
    client.handshake("/ws/errors");
    EXPECT_TRUE(client.next_text().starts_with("you are"));
    client.write(c.bytes);
    EXPECT_EQ(client.close_code(), c.code) << "case " << n;
    EXPECT_TRUE(client.sees_eof()) << "case " << n << ": the server keeps the connection";
    ++n;
  }
  // Each one left the room.
  for (int id = 1; id <= n; ++id) EXPECT_TRUE(log->wait_for("disconnect errors " + std::to_string(id)));
}

TEST_F(WebSocketTest, AClientCloseIsEchoedWithItsCode) {
  TestServer server(probe_factory(log));
  RawClient c(server.port());
  c.handshake("/ws/bye");
  EXPECT_EQ(c.next_text(), "you are 1");
  c.write(client_frame(Opcode::close, std::string("\x0F\xA0" "done", 6)));  // 4000
  EXPECT_EQ(c.close_code(), 4000);
  EXPECT_TRUE(c.sees_eof());
  EXPECT_TRUE(log->wait_for("disconnect bye 1"));
}

TEST_F(WebSocketTest, AClientWhoseSocketTakesNothingIsDroppedAfterTheWriteTimeout) {
  ServerOptions options;
  options.write_timeout = 500ms;
  options.max_queued_bytes = 64 << 20;  // the queue bound is not what ends it
  TestServer server(probe_factory(log), options);
  RawClient stuck(server.port(), /*receive_buffer=*/4096);
  stuck.handshake("/ws/stuck");
  // 8 MiB that the client never reads: the server's socket fills and stops taking bytes.
  stuck.write(client_frame(Opcode::text, "flood:128:65536"));
  EXPECT_TRUE(log->wait_for("disconnect stuck 1", 1, 10s));
}

namespace {

/// Echoes text messages; `pause:MS` makes it pause part-way through that handler for MS
/// milliseconds (as a WebAssembly guest does in a long computation), so the room queues what
/// arrives meanwhile.
struct Pausing : HostedService {
  std::chrono::steady_clock::time_point until{};
  void message(ClientId sender, const MessagePayload& msg, Context& ctx) override {
    const std::string_view text = *msg.text();
    if (text.starts_with("pause:")) {
      until = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::stoi(std::string(text.substr(6))));
      return;
    }
    ctx.send(sender, msg);
  }
  bool pending() const noexcept override { return std::chrono::steady_clock::now() < until; }
  void resume(Context&) override { std::this_thread::sleep_for(1ms); }
};

}  // namespace

TEST_F(WebSocketTest, ABusyRoomStopsReadingItsSendersAndLosesNothing) {
  ServerOptions options;
  options.max_room_queue_bytes = 256 << 10;
  options.max_message_bytes = 8 << 10;
  options.max_queued_bytes = 64 << 20;  // the echoes may run ahead of a slow reader (a sanitizer build)
  TestServer server(make_factory<Pausing>(), options);
  RawClient c(server.port());
  c.handshake("/ws/busy");
  constexpr int count = 6000;
  const std::string filler(4000, 'f');
  const auto start = std::chrono::steady_clock::now();
  c.write(client_frame(Opcode::text, "pause:1500"));
  // The echoes are read as they come (a client that reads nothing would be closed as too slow).
  int echoed = 0;
  std::thread reader([&] {
    for (; echoed < count; ++echoed) {
      const std::string text = c.next_text();
      if (text.substr(0, text.find(':')) != std::to_string(echoed)) return;
    }
  });
  // 24 MB while the room is paused: more than the room's bound and every socket buffer on the way,
  // so the writes can only finish once the server reads again, after the pause.
  std::string batch;
  for (int i = 0; i < count; ++i) {
    batch += client_frame(Opcode::text, std::to_string(i) + ":" + filler);
    if (batch.size() > 256 << 10 || i + 1 == count) {
      c.write(batch);
      batch.clear();
    }
  }
  const auto written = std::chrono::steady_clock::now() - start;
  reader.join();
  EXPECT_GE(written, 1000ms) << "the server kept reading while its room was over its bound";
  EXPECT_EQ(echoed, count) << "every message comes back, in order";
}
