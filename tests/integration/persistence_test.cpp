// Rooms that outlive their server (ServerOptions::state_dir, state_store): what a WebAssembly
// room's snapshot holds, when a room is snapshotted and when not, and what a snapshot of another
// module does.
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <thread>

#include "../support/log_capture.hpp"
#include "../support/probe_service.hpp"
#include "../support/ws_client.hpp"
#include "stateroom/state_store.hpp"
#include "stateroom/wasm.hpp"

namespace stateroom::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string hostile_path = std::string(STATEROOM_TEST_WASM_DIR) + "/hostile.wat";
const std::string counter_path = std::string(STATEROOM_WASM_DIR) + "/counter.wasm";

std::shared_ptr<wasm::Module> load(const std::string& path, wasm::Limits limits = {}) {
  limits.max_instances = 16;
  return wasm::Module::load(std::make_shared<wasm::Engine>(limits), path);
}

/// A store in memory that records what the rooms do with it.
class RecordingStore final : public StateStore {
 public:
  std::optional<std::vector<std::byte>> load(std::string_view room_id) override {
    std::lock_guard lock(mutex_);
    if (auto it = saved_.find(std::string(room_id)); it != saved_.end()) return it->second;
    return std::nullopt;
  }
  void save(std::string_view room_id, std::vector<std::byte> snapshot) override {
    std::lock_guard lock(mutex_);
    saved_[std::string(room_id)] = std::move(snapshot);
    ++saves_;
  }
  void remove(std::string_view room_id) override {
    std::lock_guard lock(mutex_);
    saved_.erase(std::string(room_id));
    ++removes_;
  }
  void flush() override {}
  int saves() {
    std::lock_guard lock(mutex_);
    return saves_;
  }
  int removes() {
    std::lock_guard lock(mutex_);
    return removes_;
  }
  bool holds(const std::string& room_id) {
    std::lock_guard lock(mutex_);
    return saved_.contains(room_id);
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::vector<std::byte>> saved_;
  int saves_ = 0, removes_ = 0;
};

/// The hostile guest's `!R`: its hidden global and the last byte of its memory.
std::string hidden_state(WsClient& c) {
  c.send_text("!R");
  auto r = c.read();
  if (!r || r->kind != Received::Kind::binary) return "no answer";
  return r->data;
}

class PersistenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("stateroom-persist-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  ServerOptions options() const {
    ServerOptions o;
    o.state_dir = dir_.string();
    return o;
  }
  fs::path dir_;
};

// Everything a guest's state is made of comes back: memory grown past its initial size, a mutable
// global it does not export, and (through the restored allocator) the host's event block.
TEST_F(PersistenceTest, AWasmRoomComesBackWithItsGrownMemoryAndHiddenGlobals) {
  auto module = load(hostile_path);
  {
    TestServer server(module, options());
    auto c = connect(server, "/ws/r");
    ASSERT_TRUE(c);
    expect_echo(*c, "!H");  // 4 pages -> 20: the last byte now lies in grown memory
    for (int i = 0; i < 3; ++i) expect_echo(*c, "!N");
    EXPECT_EQ(hidden_state(*c), std::string("\x03\x03", 2));
    c->close();
  }  // graceful stop: the room is snapshotted
  EXPECT_TRUE(fs::exists(dir_ / "r-r.snapshot"));
  LogCapture log;
  TestServer server(module, options());
  auto c = connect(server, "/ws/r");
  ASSERT_TRUE(c);
  EXPECT_EQ(hidden_state(*c), std::string("\x03\x03", 2)) << "the global and the grown memory's byte";
  expect_echo(*c, "!N");
  EXPECT_EQ(hidden_state(*c), std::string("\x04\x04", 2));
  expect_echo(*c, "an echo through the restored event block");
  EXPECT_TRUE(log.contains("room 'r' restored from its snapshot"));
  auto fresh = connect(server, "/ws/other");
  ASSERT_TRUE(fresh);
  EXPECT_EQ(hidden_state(*fresh), std::string("\x00\x00", 2)) << "a room without a snapshot starts afresh";
}

// A periodic snapshot is taken between events only: while the guest is in a call (here one that
// never ends, paused every millisecond) nothing is saved, and its room's failure forgets it.
TEST_F(PersistenceTest, ARoomIsNeverSnapshottedMidCall) {
  auto store = std::make_shared<RecordingStore>();
  auto module = load(hostile_path, {.cpu_time_per_event = 600ms});
  ServerOptions o;
  o.state_store = store;
  o.snapshot_interval = 20ms;
  TestServer server(module, o);
  auto c = connect(server, "/ws/hog");
  ASSERT_TRUE(c);
  expect_echo(*c, "!N");
  for (int i = 0; i < 250 && !store->holds("hog"); ++i) std::this_thread::sleep_for(4ms);
  ASSERT_TRUE(store->holds("hog")) << "no periodic snapshot";
  std::this_thread::sleep_for(100ms);  // no events: no more snapshots
  const int before = store->saves();
  c->send_text("!L");
  EXPECT_EQ(c->read_until_closed(5s), 1011);
  EXPECT_EQ(store->saves(), before) << "a snapshot was taken while the guest was in a call";
  EXPECT_FALSE(store->holds("hog")) << "a failed room keeps its snapshot";
  EXPECT_EQ(store->removes(), 1);
}

/// Hostile.wat with one more mutable global: another module, of another layout.
std::shared_ptr<wasm::Module> hostile_with_another_global() {
  std::ifstream in(hostile_path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string memory = "(memory (export \"memory\") 4)";
  text.replace(text.find(memory), memory.size(), memory + " (global $extra (mut i64) (i64.const 7))");
  return wasm::Module::load_bytes(std::make_shared<wasm::Engine>(wasm::Limits{.max_instances = 16}), text,
                                  "hostile-extra.wat");
}

/// Snapshots room `id` of the hostile guest with its hidden global at 1.
void snapshot_hostile(const ServerOptions& options, const std::string& id) {
  TestServer server(load(hostile_path), options);
  auto c = connect(server, "/ws/" + id);
  ASSERT_TRUE(c);
  expect_echo(*c, "!N");
  c->close();
}

// A snapshot another module made starts its room afresh, and says so.
TEST_F(PersistenceTest, ASnapshotOfAnotherModuleStartsTheRoomAfresh) {
  snapshot_hostile(options(), "r");
  LogCapture log;
  TestServer server(hostile_with_another_global(), options());
  auto c = connect(server, "/ws/r");
  ASSERT_TRUE(c);
  EXPECT_EQ(hidden_state(*c), std::string("\x00\x00", 2));
  EXPECT_TRUE(log.contains("room 'r': its snapshot was made by another build of the service"));
}

// With keep, a snapshot another module made is restored when it fits: one whose globals differ
// does not (the room starts afresh with a new instance); one that fits but breaks the new module
// fails its room once, and the snapshot is forgotten with it.
TEST_F(PersistenceTest, KeepRestoresAnotherModulesSnapshotWhenItFits) {
  ServerOptions keep = options();
  keep.on_module_change = ServerOptions::OnModuleChange::keep;
  snapshot_hostile(options(), "a");
  {
    LogCapture log;
    TestServer server(hostile_with_another_global(), keep);
    auto c = connect(server, "/ws/a");
    ASSERT_TRUE(c);
    EXPECT_EQ(hidden_state(*c), std::string("\x00\x00", 2)) << "a fresh instance, not a half-restored one";
    EXPECT_TRUE(log.contains("restoring it anyway"));
    EXPECT_TRUE(log.contains("room 'a': its snapshot does not fit this instance: the snapshot has 1 mutable "
                             "globals, the module 2"));
    EXPECT_TRUE(log.contains("room 'a': its service did not take its snapshot; the room starts afresh"));
  }
  snapshot_hostile(options(), "b");
  TestServer server(load(counter_path), keep);  // one mutable global too (its stack pointer): it fits
  auto c = connect(server, "/ws/b");
  ASSERT_TRUE(c);
  c->send_text("increment");
  EXPECT_EQ(c->read_until_closed(5s), 1011) << "the counter with hostile's memory and stack pointer";
  c = connect(server, "/ws/b");
  ASSERT_TRUE(c);
  c->send_text("increment");
  auto r = c->read();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->is_text("new value: 1")) << "the failed room's snapshot was not forgotten: " << r->data;
}

// A thousand rooms hibernate (empty: grace immediate) and wake on their next connect, each with its
// own count, from snapshots that reached the directory.
TEST_F(PersistenceTest, AThousandRoomsHibernateAndWakeWithTheirState) {
  ServerOptions o = options();
  o.room_grace = RoomGrace::immediate();
  auto module = load(counter_path);
  constexpr int rooms = 1000;
  auto count_of = [](int i) { return i % 7 + 1; };
  /// `times` increments in room `i`; the last value it answered.
  auto increment = [](TestServer& server, int i, int times) {
    auto c = connect(server, "/ws/room-" + std::to_string(i));
    if (!c) return std::string("no connection");
    for (int k = 0; k < times; ++k) c->send_text("increment");
    std::string last;
    for (int k = 0; k < times; ++k) {
      auto r = c->read();
      if (!r) return std::string("no answer");
      last = r->data;
    }
    c->close();
    return last;
  };
  {
    TestServer server(module, o);
    for (int i = 0; i < rooms; ++i)
      ASSERT_EQ(increment(server, i, count_of(i)), "new value: " + std::to_string(count_of(i))) << i;
  }
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir_)) ++files;
  EXPECT_EQ(files, static_cast<std::size_t>(rooms));
  TestServer server(module, o);
  for (int i = 0; i < rooms; ++i)
    ASSERT_EQ(increment(server, i, 1), "new value: " + std::to_string(count_of(i) + 1)) << "room " << i;
}

/// A native service that keeps nothing.
struct Forgetful : Service {
  int count = 0;
  void message(ClientId sender, const MessagePayload&, Context& ctx) override {
    ctx.send(client(sender), std::to_string(++count));
  }
};

TEST_F(PersistenceTest, AServiceThatKeepsNothingLeavesNoFile) {
  {
    TestServer server(std::make_shared<ServiceFactoryOf<Forgetful>>(), options());
    auto c = connect(server, "/ws/f");
    ASSERT_TRUE(c);
    c->send_text("x");
    ASSERT_TRUE(c->read());
    c->close();
  }
  EXPECT_TRUE(fs::is_empty(dir_)) << "a file for a service that keeps nothing";
}

}  // namespace
}  // namespace stateroom::test
