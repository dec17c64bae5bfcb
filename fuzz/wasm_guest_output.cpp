// wasm_guest_output: the WebAssembly host fed random guest output, in a real room.
//
// A tiny guest, generated here as WebAssembly text and loaded with Module::load_bytes like any
// module, hands the host whatever bytes the fuzzer chose, through the module interface's own
// import: the v2 guest passes each message it receives straight to `stateroom_send` (so the host
// decodes it with codec::decode_from_process and acts on it); the v1 guest reads a command byte and
// a recipient from its message and calls `send_message` (text, checked for UTF-8), `send_binary` or
// `set_timer` with the rest. The room runs on a RoomHarness worker (no sockets, no threads) with
// three clients whose output queues hold the frames the room sent them.
//
// Input: byte 0 chooses the interface (bit 0: v1), the delivery (bit 1: all messages in one batch,
// as a session delivers a read with several messages; v2 only, through the batch module) and the
// sender (bits 2-3: client 1 to 3); then up to 8 messages, each a random-length string.
//
// For each message, a model of the interface says what the host must do: a guest message the host
// accepts reaches exactly the clients its recipient names, with its payload and kind (text or
// binary), and the room keeps running; anything it refuses (undecodable, unknown tag, truncated,
// text that is not UTF-8) fails the room: every client is closed with 1011, the log names the
// reason, nothing after it is delivered, and the next connect to the room starts a fresh instance.
// What each client got is read back from its output queue with the client side of the frame
// parser, so the frames on the wire are checked too.
#include <fuzzer/FuzzedDataProvider.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common.hpp"
#include "protocol/parser.hpp"
#include "stateroom/codec.hpp"
#include "stateroom/wasm.hpp"
#include "support/room_harness.hpp"

using namespace stateroom;

namespace {

// The v2 guest: allocates every event in one 64 KiB block at 65536; a Message event's payload
// (at +20: u32 tag, u32 sender, u32 kind, u64 length) goes back to the host as it is.
constexpr std::string_view guest_v2 = R"wat(
(module
  (import "env" "stateroom_send" (func $send (param i32 i32)))
  (memory (export "memory") 2)
  (global (export "STATEROOM_API_VERSION") i32 (i32.const 16))
  (global (export "STATEROOM_API_PROTOCOL") i32 (i32.const 20))
  (data (i32.const 16) "\01\00\00\00\00\00\00\00")
  (func (export "stateroom_malloc") (param $size i32) (result i32)
    (if (i32.gt_u (local.get $size) (i32.const 65536)) (then unreachable))
    (i32.const 65536))
  (func (export "stateroom_free") (param i32 i32))
  (func (export "stateroom_recv") (param $ptr i32) (param $len i32)
    (if (i32.ne (i32.load (local.get $ptr)) (i32.const 3)) (then (return)))
    (call $send (i32.add (local.get $ptr) (i32.const 20)) (i32.sub (local.get $len) (i32.const 20)))))
)wat";

// The v1 guest: a message of at least 5 bytes is a command (byte 0: 0 send_message, 1 send_binary,
// 2 set_timer), an i32 recipient (or the timer's delay) and the payload.
constexpr std::string_view guest_v1 = R"wat(
(module
  (import "env" "send_message" (func $text (param i32 i32 i32)))
  (import "env" "send_binary" (func $binary (param i32 i32 i32)))
  (import "env" "set_timer" (func $set_timer (param i32)))
  (memory (export "memory") 2)
  (global (export "JAMSOCKET_API_VERSION") i32 (i32.const 16))
  (global (export "JAMSOCKET_API_PROTOCOL") i32 (i32.const 20))
  (data (i32.const 16) "\01\00\00\00\00\00\00\00")
  (func (export "jam_malloc") (param $size i32) (result i32)
    (if (i32.gt_u (local.get $size) (i32.const 65536)) (then unreachable))
    (i32.const 65536))
  (func (export "jam_free") (param i32 i32))
  (func (export "initialize") (param i32 i32))
  (func (export "connect") (param i32))
  (func (export "disconnect") (param i32))
  (func (export "timer"))
  (func $command (param $ptr i32) (param $len i32)
    (local $cmd i32) (local $arg i32)
    (if (i32.lt_u (local.get $len) (i32.const 5)) (then (return)))
    (local.set $cmd (i32.load8_u (local.get $ptr)))
    (local.set $arg (i32.load offset=1 align=1 (local.get $ptr)))
    (if (i32.eqz (local.get $cmd))
      (then (call $text (local.get $arg) (i32.add (local.get $ptr) (i32.const 5))
                        (i32.sub (local.get $len) (i32.const 5))) (return)))
    (if (i32.eq (local.get $cmd) (i32.const 1))
      (then (call $binary (local.get $arg) (i32.add (local.get $ptr) (i32.const 5))
                          (i32.sub (local.get $len) (i32.const 5))) (return)))
    (if (i32.eq (local.get $cmd) (i32.const 2)) (then (call $set_timer (local.get $arg)))))
  (func (export "message") (param $client i32) (param $ptr i32) (param $len i32)
    (call $command (local.get $ptr) (local.get $len)))
  (func (export "binary") (param $client i32) (param $ptr i32) (param $len i32)
    (call $command (local.get $ptr) (local.get $len)))
)
)wat";

/// Keeps the last error the server logged (a room's failure and its reason).
class LastError final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::string last;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (msg.level >= spdlog::level::err) last.assign(msg.payload.data(), msg.payload.size());
  }
  void flush_() override {}
};

std::shared_ptr<LastError> logged;
std::shared_ptr<wasm::Module> module_v1, module_v2;

/// A member that keeps what the room sends it in a real output queue, as a session does.
class QueueClient final : public server::Client {
 public:
  server::SendResult send(const server::OutgoingMessage& message) override {
    queue.append(message);
    return server::SendResult::sent;
  }
  void close(protocol::CloseCode code, std::string_view) override { closed_with = code; }
  void resume_reading() override {}

  /// The messages in the queue, read back with the client side of the frame parser.
  std::vector<MessagePayload> received() {
    std::vector<std::uint8_t> wire;
    std::array<std::span<const std::uint8_t>, 64> buffers;
    while (!queue.empty()) {
      const std::size_t n = queue.gather(buffers);
      std::size_t taken = 0;
      for (std::size_t i = 0; i < n; ++i) {
        wire.insert(wire.end(), buffers[i].begin(), buffers[i].end());
        taken += buffers[i].size();
      }
      queue.consume(taken);
    }
    protocol::Parser parser({.max_message_size = 1 << 24, .expect_masked = false});
    std::span<std::uint8_t> input(wire);
    std::vector<MessagePayload> out;
    for (;;) {
      const protocol::Event e = parser.next(input);
      if (e.kind == protocol::Event::Kind::need_more) break;
      FUZZ_CHECK(e.kind == protocol::Event::Kind::message);
      const std::string bytes(reinterpret_cast<const char*>(e.payload.data()), e.payload.size());
      out.push_back(MessagePayload::of_kind(e.opcode == protocol::Opcode::text ? PayloadKind::text : PayloadKind::binary,
                                            bytes));
    }
    FUZZ_CHECK(input.empty());
    return out;
  }

  server::OutputQueue queue;
  std::optional<protocol::CloseCode> closed_with;
};

/// What the host must do with one guest output: deliver `payload` to `to`, or fail the room.
struct Expected {
  bool accepted = true;
  bool sends = false;  ///< accepted and a message (not a timer)
  MessageRecipient to{};
  MessagePayload payload{};
  std::string reason;  ///< what the room's failure says, when not accepted
};

Expected expect_v2(const std::string& out) {
  const auto d = codec::decode_from_process({reinterpret_cast<const std::uint8_t*>(out.data()), out.size()});
  if (!d.ok()) return {false, false, {}, {}, "undecodable message (" + std::string(codec::describe(d.error)) + ")"};
  if (d.value.kind == codec::MessageFromProcess::Kind::set_timer) return {};
  return {true, true, d.value.recipient, d.value.payload, {}};
}

Expected expect_v1(const std::string& out) {
  if (out.size() < 5 || static_cast<std::uint8_t>(out[0]) > 1) return {};  // nothing sent, or a timer
  const bool text = out[0] == 0;
  std::int32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= static_cast<std::int32_t>(static_cast<std::uint32_t>(static_cast<std::uint8_t>(out[1 + i])) << (8 * i));
  const std::string payload = out.substr(5);
  if (text && !fuzz::reference_utf8(payload)) return {false, false, {}, {}, "send_message: the text is not valid UTF-8"};
  MessageRecipient to = broadcast();
  if (r > 0) to = ClientId{static_cast<std::uint32_t>(r)};
  if (r < 0) to = everyone_except(ClientId{static_cast<std::uint32_t>(-static_cast<std::int64_t>(r))});
  return {true, true, to, MessagePayload::of_kind(text ? PayloadKind::text : PayloadKind::binary, payload), {}};
}

/// Runs what the room posted (a paused guest's resumption, a timer due now) until it is idle.
void settle(test::RoomHarness& h, const std::shared_ptr<server::Room>& room) {
  do {
    h.worker().ioc.poll();
    h.worker().ioc.restart();
  } while (room->state() == server::Room::State::paused);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  logged = std::make_shared<LastError>();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("fuzz", logged));
  spdlog::set_level(spdlog::level::err);
  wasm::Limits limits;
  limits.memory_bytes = 1 << 20;
  limits.max_instances = 4;
  auto engine = std::make_shared<wasm::Engine>(limits);
  module_v2 = wasm::Module::load_bytes(engine, guest_v2, "guest_v2.wat");
  module_v1 = wasm::Module::load_bytes(engine, guest_v1, "guest_v1.wat");
  FUZZ_CHECK(module_v2->abi() == wasm::Abi::v2 && module_v1->abi() == wasm::Abi::v1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool v1 = data[0] & 1;
  const bool batch = !v1 && (data[0] & 2);
  const std::uint32_t sender = 1 + ((data[0] >> 2) & 3) % 3;
  FuzzedDataProvider in(data + 1, size - 1);
  std::vector<std::string> outputs;
  while (outputs.size() < 8 && in.remaining_bytes() > 0) outputs.push_back(in.ConsumeRandomLengthString(2048));

  test::RoomHarness h(v1 ? module_v1 : module_v2);
  auto room = h.worker().find_or_create_room("fuzz");
  FUZZ_CHECK(room);
  std::array<QueueClient, 3> clients;
  for (std::uint32_t i = 0; i < 3; ++i) FUZZ_CHECK(room->join(clients[i]) == ClientId{i + 1});
  settle(h, room);

  // What each client must have received, and whether (and why) the room must have failed.
  std::array<std::vector<MessagePayload>, 3> expected;
  std::string failure;
  for (const std::string& out : outputs) {
    const Expected e = v1 ? expect_v1(out) : expect_v2(out);
    if (!e.accepted) {
      failure = e.reason;
      break;
    }
    if (!e.sends) continue;
    for (std::uint32_t i = 0; i < 3; ++i)
      if (e.to.includes(ClientId{i + 1})) expected[i].push_back(e.payload);
  }

  logged->last.clear();
  QueueClient& from = clients[sender - 1];
  if (batch) {
    std::vector<MessagePayload> payloads;
    for (const std::string& out : outputs) payloads.push_back(MessagePayload::binary(out));
    room->messages(ClientId{sender}, payloads, from);
    settle(h, room);
  } else {
    for (const std::string& out : outputs) {
      if (!room->alive()) break;
      room->message(ClientId{sender}, MessagePayload::binary(out), from);
      settle(h, room);
    }
  }

  for (std::uint32_t i = 0; i < 3; ++i) FUZZ_CHECK(clients[i].received() == expected[i]);
  if (failure.empty()) {
    FUZZ_CHECK(room->alive());
    for (const auto& c : clients) FUZZ_CHECK(!c.closed_with);
    FUZZ_CHECK(logged->last.empty());
    for (std::uint32_t i = 0; i < 3; ++i) room->leave(ClientId{i + 1});
    settle(h, room);
    return 0;
  }
  FUZZ_CHECK(!room->alive());
  for (const auto& c : clients) FUZZ_CHECK(c.closed_with == protocol::CloseCode::internal_error);
  if (logged->last.find(failure) == std::string::npos) {
    std::fprintf(stderr, "expected the failure '%s', the log says '%s'\n", failure.c_str(), logged->last.c_str());
    FUZZ_CHECK(!"the room's failure names its reason");
  }
  // The room id is free again: the next connect starts a fresh instance.
  auto fresh = h.worker().find_or_create_room("fuzz");
  FUZZ_CHECK(fresh && fresh != room && fresh->alive());
  QueueClient again;
  FUZZ_CHECK(fresh->join(again));
  fresh->leave(ClientId{1});
  settle(h, fresh);
  return 0;
}
