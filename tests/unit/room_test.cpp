// The room layer without sockets: members, ids, and how messages reach the service.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "support/room_harness.hpp"

namespace stateroom::test {
namespace {

/// Records what the room hands it, in order.
struct Recorder : Service {
  static inline std::vector<std::string>* events = nullptr;
  void connect(ClientId client, Context&) override { events->push_back("connect " + std::to_string(client.value)); }
  void disconnect(ClientId client, Context&) override { events->push_back("disconnect " + std::to_string(client.value)); }
  void message(ClientId client, const MessagePayload& payload, Context& ctx) override {
    events->push_back(std::to_string(client.value) + ": " + std::string(payload.view()));
    ctx.send(client, payload);
  }
};

class RoomTest : public ::testing::Test {
 protected:
  void SetUp() override { Recorder::events = &events; }
  void TearDown() override { Recorder::events = nullptr; }
  std::vector<std::string> events;
};

TEST_F(RoomTest, ARoomOutOfClientIdsRefusesNewClientsWith1013) {
  RoomHarness h(make_factory<Recorder>());
  auto room = h.worker().find_or_create_room("r");
  ASSERT_TRUE(room);
  QueueClient first, last, refused;
  room->skip_client_ids_to(0xFFFFFFFEu);
  EXPECT_EQ(room->join(first), ClientId{0xFFFFFFFEu});
  EXPECT_EQ(room->join(last), ClientId{0xFFFFFFFFu});  // the last id there is
  EXPECT_EQ(room->join(refused), std::nullopt);        // the next would wrap to ids in use
  ASSERT_TRUE(refused.closed_with);
  EXPECT_EQ(*refused.closed_with, protocol::CloseCode::try_again_later);
  EXPECT_FALSE(first.closed_with);
  EXPECT_FALSE(last.closed_with);
  EXPECT_EQ(events, (std::vector<std::string>{"connect 4294967294", "connect 4294967295"}));
}

TEST_F(RoomTest, MessagesThatArriveTogetherReachANativeServiceOneByOneInOrder) {
  RoomHarness h(make_factory<Recorder>());
  auto room = h.worker().find_or_create_room("r");
  ASSERT_TRUE(room);
  QueueClient c;
  const auto id = room->join(c);
  ASSERT_TRUE(id);
  const std::vector<MessagePayload> batch = {MessagePayload("a"), MessagePayload("b"), MessagePayload("c")};
  EXPECT_TRUE(room->messages(*id, batch, c));
  EXPECT_EQ(events, (std::vector<std::string>{"connect 1", "1: a", "1: b", "1: c"}));
  EXPECT_EQ(c.delivered, 3u);
  room->leave(*id);
}

/// Fails the room on "fail".
struct Failing : Service {
  void message(ClientId, const MessagePayload& payload, Context& ctx) override {
    if (payload.view() == "fail") ctx.fail("asked to");
  }
};

TEST_F(RoomTest, AFailedRoomClosesEveryClientWith1011AndLeavesTheRegistry) {
  RoomHarness h(make_factory<Failing>());
  auto room = h.worker().find_or_create_room("r");
  ASSERT_TRUE(room);
  EXPECT_EQ(room->state(), server::Room::State::running);
  QueueClient a, b;
  const auto id = room->join(a);
  ASSERT_TRUE(id && room->join(b));
  room->message(*id, MessagePayload("fail"), a);
  EXPECT_EQ(room->state(), server::Room::State::ended);
  EXPECT_FALSE(room->alive());
  EXPECT_EQ(a.closed_with, protocol::CloseCode::internal_error);
  EXPECT_EQ(b.closed_with, protocol::CloseCode::internal_error);
  EXPECT_EQ(h.worker().rooms.count("r"), 0u);
  EXPECT_EQ(room->join(a), std::nullopt);  // an ended room takes no one
}

TEST_F(RoomTest, AnEmptyRoomEndsAfterItsGraceAndShutdownClosesWith1001AfterDisconnect) {
  {
    RoomHarness h(make_factory<Recorder>(), RoomGrace::immediate());
    auto room = h.worker().find_or_create_room("r");
    QueueClient c;
    const auto id = room->join(c);
    ASSERT_TRUE(id);
    room->leave(*id);
    EXPECT_EQ(room->state(), server::Room::State::ended);
    EXPECT_EQ(h.worker().rooms.count("r"), 0u);
    EXPECT_FALSE(c.closed_with) << "it left by itself";
  }
  events.clear();
  RoomHarness h(make_factory<Recorder>());
  auto room = h.worker().find_or_create_room("s");
  QueueClient c;
  ASSERT_TRUE(room->join(c));
  room->shut_down();
  EXPECT_EQ(events, (std::vector<std::string>{"connect 1", "disconnect 1"}));
  EXPECT_EQ(c.closed_with, protocol::CloseCode::going_away);
  EXPECT_EQ(room->state(), server::Room::State::ended);
}

TEST_F(RoomTest, AnOutdatedRoomEndsOnceEmpty) {
  RoomHarness h(make_factory<Recorder>());
  auto room = h.worker().find_or_create_room("r");
  QueueClient c;
  const auto id = room->join(c);
  ASSERT_TRUE(id);
  EXPECT_FALSE(room->outdated());
  h.shared.factory.store(std::make_shared<const server::FactoryVersion>(server::FactoryVersion{make_factory<Recorder>(), 1}));
  EXPECT_TRUE(room->outdated());
  EXPECT_FALSE(room->end_if_replaced()) << "a member is still there";
  room->leave(*id);  // empty: it ends at once, whatever its grace period (never, here)
  EXPECT_EQ(room->state(), server::Room::State::ended);
}

/// A hosted service that keeps itself busy once it is empty, as a guest that re-arms a 0 ms timer
/// and computes in each: every handler pauses for a few slices, and each timer re-arms the timer.
struct KeepsBusy : HostedService {
  static inline int resumes = 0;
  void disconnect(ClientId, Context& ctx) override { work(ctx); }
  void timer(Context& ctx) override { work(ctx); }
  bool pending() const noexcept override { return slices_left_ > 0; }
  void resume(Context&) override {
    ++resumes;
    --slices_left_;
  }
  void work(Context& ctx) {
    ctx.set_timer(0);
    slices_left_ = 3;
  }
  int slices_left_ = 0;
};

TEST_F(RoomTest, AnEmptyRoomEndsAfterItsGraceEvenWhileItsServiceKeepsBusy) {
  RoomHarness h(make_factory<KeepsBusy>(), RoomGrace::after(std::chrono::milliseconds(5)));
  auto room = h.worker().find_or_create_room("r");
  QueueClient c;
  const auto id = room->join(c);
  ASSERT_TRUE(id);
  KeepsBusy::resumes = 0;
  room->leave(*id);
  // The room ends 5 ms from now; it may take 2 s (400 grace periods) before this fails.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (room->state() != server::Room::State::ended && std::chrono::steady_clock::now() < give_up) {
    h.worker().ioc.run_one_for(std::chrono::milliseconds(10));
  }
  if (room->state() != server::Room::State::ended) {
    ADD_FAILURE() << "an empty room outlived its grace period";
    room->shut_down();  // else the busy service keeps the harness's event loop going
  }
  EXPECT_EQ(h.worker().rooms.count("r"), 0u);
  EXPECT_GT(KeepsBusy::resumes, 3) << "the service kept busy meanwhile";
}

/// Broadcasts every message it gets.
struct Broadcaster : Service {
  void message(ClientId, const MessagePayload& payload, Context& ctx) override { ctx.send(broadcast(), payload); }
};

/// Queues like a session and notes which message object and header bytes it was handed.
class NotingClient final : public server::Client {
 public:
  server::SendResult send(const server::OutgoingMessage& message) override {
    header = message.frame_header().data();
    queue.append(message);
    return server::SendResult::sent;
  }
  void close(protocol::CloseCode, std::string_view) override {}
  void resume_reading() override {}
  /// Where the queued payload's bytes are (the last span gathered: the frame's payload).
  const std::uint8_t* payload_bytes() const {
    std::span<const std::uint8_t> spans[16];
    const std::size_t n = queue.gather(spans);
    return n ? spans[n - 1].data() : nullptr;
  }
  const std::uint8_t* header = nullptr;
  server::OutputQueue queue;
};

// README: "A broadcast's frame header is encoded once for all its recipients; a large payload is
// shared by them, a small one copied into each recipient's output."
TEST_F(RoomTest, ABroadcastIsEncodedOnceAndALargePayloadShared) {
  RoomHarness h(make_factory<Broadcaster>());
  auto room = h.worker().find_or_create_room("r");
  NotingClient a, b, c;
  const auto id = room->join(a);
  ASSERT_TRUE(id && room->join(b) && room->join(c));
  const std::string large(20 * 1024, 'L');
  room->message(*id, MessagePayload::view(PayloadKind::binary, std::string_view(large)), a);
  ASSERT_NE(a.header, nullptr);
  EXPECT_EQ(a.header, b.header) << "one header for every recipient";
  EXPECT_EQ(b.header, c.header);
  EXPECT_EQ(a.payload_bytes(), b.payload_bytes()) << "a large payload is one buffer, shared";
  EXPECT_EQ(b.payload_bytes(), c.payload_bytes());
  EXPECT_NE(a.payload_bytes(), reinterpret_cast<const std::uint8_t*>(large.data())) << "not the sender's bytes";
  for (auto* q : {&a, &b, &c}) q->queue.consume(q->queue.size());

  room->message(*id, MessagePayload("small"), a);
  EXPECT_EQ(a.header, b.header);
  EXPECT_NE(a.payload_bytes(), b.payload_bytes()) << "a small payload is copied into each queue";
}

/// A hosted service whose `message` pauses for a slice and broadcasts the message when it resumes,
/// as a guest does that computes across its millisecond slices; it greets each client on connect.
struct PausesThenBroadcasts : HostedService {
  void connect(ClientId client, Context& ctx) override { ctx.send(client, "welcome"); }
  void message(ClientId, const MessagePayload& payload, Context&) override {
    unsent_ = std::string(payload.view());
    paused_ = true;
  }
  bool pending() const noexcept override { return paused_; }
  void resume(Context& ctx) override {
    paused_ = false;
    ctx.send(broadcast(), unsent_);
  }
  std::string unsent_;
  bool paused_ = false;
};

// README: "a client never receives a message sent before its connect", also when it joins a room
// whose service is paused: its `connect` waits behind the paused handler and the events queued
// before it, and what they send does not reach it.
TEST_F(RoomTest, AClientJoiningAPausedRoomGetsNothingSentBeforeItsConnect) {
  RoomHarness h(make_factory<PausesThenBroadcasts>());
  auto room = h.worker().find_or_create_room("r");
  QueueClient a, b;
  const auto id = room->join(a);
  ASSERT_TRUE(id);
  room->message(*id, MessagePayload("paused"), a);  // pauses
  room->message(*id, MessagePayload("queued"), a);  // waits behind it
  ASSERT_TRUE(room->join(b));                       // its connect waits behind both
  h.worker().ioc.poll();
  EXPECT_EQ(a.delivered, 3u) << "a's welcome and both broadcasts";
  EXPECT_EQ(b.delivered, 1u) << "b's welcome only: both broadcasts were made before its connect";
  room->message(*id, MessagePayload("after"), a);
  h.worker().ioc.poll();
  EXPECT_EQ(b.delivered, 2u) << "what is sent after its connect reaches it";
}

}  // namespace
}  // namespace stateroom::test
