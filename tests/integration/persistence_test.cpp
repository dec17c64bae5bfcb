// Rooms that outlive their server (ServerOptions::state_dir, state_store): what a WebAssembly
// room's snapshot holds, when a room is snapshotted and when not, and what a snapshot of another
// module does.
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
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
  LoadedState load(std::string_view room_id) override {
    std::lock_guard lock(mutex_);
    if (auto it = saved_.find(std::string(room_id)); it != saved_.end()) return LoadedState::found(it->second);
    return LoadedState::none();
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
  void set_aside(std::string_view room_id, std::string_view) override {
    std::lock_guard lock(mutex_);
    saved_.erase(std::string(room_id));
    ++set_aside_;
  }
  void flush() override {}
  std::size_t writes_in_flight() const override { return in_flight; }
  /// What writes_in_flight says: a store behind, or not.
  std::atomic<std::size_t> in_flight{0};
  int set_aside_count() {
    std::lock_guard lock(mutex_);
    return set_aside_;
  }
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
  int saves_ = 0, removes_ = 0, set_aside_ = 0;
};

/// The bytes of a file (empty when there is none).
std::string contents_of(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// The bytes of `file` once it is there (the store writes on a thread of its own).
std::string written(const fs::path& file) {
  for (int i = 0; i < 500 && !fs::exists(file); ++i) std::this_thread::sleep_for(10ms);
  return contents_of(file);
}

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

// A module whose code grows and sets its table: the table comes back, each entry the same
// function (or null), and the room goes on changing it.
TEST_F(PersistenceTest, ATableTheCodeChangesComesBackWithItsFunctions) {
  const std::string tables_path = std::string(STATEROOM_TEST_WASM_DIR) + "/tables.wat";
  auto entries = [](WsClient& c) {
    c.send_text("!R");
    auto r = c.read();
    return r && r->kind == Received::Kind::binary ? r->data : std::string("no answer");
  };
  auto module = load(tables_path);
  EXPECT_EQ(module->persistence_problem(), "");
  {
    TestServer server(module, options());
    auto c = connect(server, "/ws/t");
    ASSERT_TRUE(c);
    EXPECT_EQ(entries(*c), std::string("\x00", 1)) << "one null entry to begin with";
    for (const char* command : {"!1", "!2", "!1", "!Z"}) expect_echo(*c, command);
    EXPECT_EQ(entries(*c), "\x02\x01\x02\x01");
    c->close();
  }
  LogCapture log;
  TestServer server(module, options());
  auto c = connect(server, "/ws/t");
  ASSERT_TRUE(c);
  EXPECT_EQ(entries(*c), "\x02\x01\x02\x01") << "the grown and set table, restored";
  EXPECT_TRUE(log.contains("room 't' restored from its snapshot"));
  expect_echo(*c, "!2");
  EXPECT_EQ(entries(*c), "\x02\x01\x02\x01\x02");
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

// A store that falls behind is handed no periodic snapshot that a later one would replace unwritten:
// they wait until it has caught up, and then the room's state as it is then goes. A hibernation
// does not wait, even behind a room's queued periodic snapshot, and a room unsaved for two
// intervals goes all the same (hibernations keep the store busy too, and must not starve it).
TEST_F(PersistenceTest, PeriodicSnapshotsWaitWhileTheStoreIsBehind) {
  auto store = std::make_shared<RecordingStore>();
  store->in_flight = StateStore::max_writes_in_flight;
  ServerOptions o;
  o.state_store = store;
  o.snapshot_interval = 1s;  // ticks every 250 ms: due after two, late after eight
  o.room_grace = RoomGrace::immediate();
  o.threads = 1;
  TestServer server(load(hostile_path), o);
  auto a = connect(server, "/ws/a");
  auto b = connect(server, "/ws/b");
  ASSERT_TRUE(a && b);
  expect_echo(*a, "!N");
  const auto changed = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(300ms);  // a's periodic snapshot is queued ahead of b's
  expect_echo(*b, "!N");
  std::this_thread::sleep_for(900ms);
  EXPECT_EQ(store->saves(), 0) << "a periodic snapshot was handed to a store that is behind";
  b->close();
  for (int i = 0; i < 100 && !store->holds("b"); ++i) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(store->holds("b")) << "a hibernation waited behind a periodic snapshot for the store";
  EXPECT_FALSE(store->holds("a"));
  for (int i = 0; i < 400 && !store->holds("a"); ++i) std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(store->holds("a")) << "a room unsaved for two intervals still waited for the store";
  EXPECT_GE(std::chrono::steady_clock::now() - changed, 1750ms) << "it went before it was late";
  store->in_flight = 0;
  expect_echo(*a, "!N");
  for (int i = 0; i < 200 && store->saves() < 3; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(store->saves(), 3) << "no periodic snapshot once the store caught up";
}

// A server stopped while a room's handler is paused part-way (a guest kept busy by its timers) lets
// that handler finish and keeps what the room did: nothing it acknowledged is lost.
TEST_F(PersistenceTest, AStopWhileAHandlerIsPausedKeepsTheRoomsState) {
  auto module = load(hostile_path, {.cpu_share_percent = 100, .cpu_window = 200ms});
  ServerOptions o = options();
  {
    TestServer server(module, o);
    auto c = connect(server, "/ws/busy");
    ASSERT_TRUE(c);
    for (int i = 0; i < 3; ++i) expect_echo(*c, "!N");
    expect_echo(*c, "!K");  // from here on its heavy timer handlers keep it busy (paused, mostly)
    std::this_thread::sleep_for(200ms);
  }
  ASSERT_TRUE(fs::exists(dir_ / "r-busy.snapshot")) << "the busy room kept nothing at shutdown";
  TestServer server(module, o);
  auto c = connect(server, "/ws/busy");
  ASSERT_TRUE(c);
  EXPECT_EQ(hidden_state(*c), std::string("\x03\x03", 2));
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

/// Snapshots room `id` of the hostile guest grown to 1.25 MiB, its hidden global at 3.
void snapshot_grown_hostile(const ServerOptions& options, const std::string& id) {
  TestServer server(load(hostile_path), options);
  auto c = connect(server, "/ws/" + id);
  ASSERT_TRUE(c);
  expect_echo(*c, "!H");
  for (int i = 0; i < 3; ++i) expect_echo(*c, "!N");
  c->close();
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
  EXPECT_TRUE(log.contains("room 'r': its snapshot cannot be used (it was made by another build of the service"));
  EXPECT_FALSE(written(dir_ / "r-r.snapshot.unreadable").empty()) << "set aside, not overwritten";
}

constexpr std::uint64_t mib = 1 << 20;

/// Waits for `engine`'s rooms to hold `bytes` of memory in all.
bool memory_in_use_becomes(const wasm::Engine& engine, std::uint64_t bytes) {
  for (int i = 0; i < 500 && engine.memory_in_use() != bytes; ++i) std::this_thread::sleep_for(10ms);
  return engine.memory_in_use() == bytes;
}

/// The budget squeeze: a server whose rooms may hold 3 MiB together; room `r` (1.25 MiB, its hidden
/// global at 3) hibernates, then another client's room `hog` takes 2.25 MiB: `r` no longer fits.
struct BudgetSqueeze {
  explicit BudgetSqueeze(ServerOptions o) : server(module, [&] {
    o.room_grace = RoomGrace::immediate();
    return o;
  }()) {}
  /// Fills the budget as above; false (with a failure reported) when a step did not happen.
  bool squeeze(const fs::path& dir) {
    {
      auto c = connect(server, "/ws/r");
      if (!c) return false;
      expect_echo(*c, "!H");  // 1.25 MiB
      for (int i = 0; i < 3; ++i) expect_echo(*c, "!N");
      c->close();
    }
    EXPECT_TRUE(memory_in_use_becomes(*engine, 0)) << "room r hibernates";
    saved = written(dir / "r-r.snapshot");
    EXPECT_FALSE(saved.empty());
    hog = connect(server, "/ws/hog");
    if (!hog) return false;
    expect_echo(*hog, "!H");
    expect_echo(*hog, "!H");  // 2.25 MiB of the 3
    return !saved.empty();
  }

  std::shared_ptr<wasm::Engine> engine = std::make_shared<wasm::Engine>(
      wasm::Limits{.memory_bytes = 4 * mib, .total_memory_bytes = 3 * mib, .max_instances = 16});
  std::shared_ptr<wasm::Module> module = wasm::Module::load(engine, hostile_path);
  TestServer server;
  std::string saved;  ///< r's file once it hibernated
  std::unique_ptr<WsClient> hog;
};

// Another client's rooms take the memory budget of all rooms while a room with saved state sleeps:
// the room cannot come back now, so it is refused with 1013, its snapshot left as it was (never
// replaced by a fresh room's).
TEST_F(PersistenceTest, ARoomThatDoesNotFitTheBudgetNowIsRefusedAndKeepsItsSnapshot) {
  LogCapture log;  // before the server: it must outlive every thread that logs
  BudgetSqueeze s(options());
  ASSERT_TRUE(s.squeeze(dir_));
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto c = connect(s.server, "/ws/r");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->read_until_closed(5s), 1013) << "attempt " << attempt;
  }
  EXPECT_TRUE(log.wait_for("refused to create room 'r': its snapshot's memory of 1280 KiB does not fit now: the "
                           "memory of all rooms is at its limit of 3 MiB"));
  EXPECT_FALSE(log.contains("room 'r' failed"));
  EXPECT_FALSE(log.contains("room 'r' cannot run now")) << "said twice";
  s.hog->close();
  s.server.server().stop();  // every snapshot is written
  EXPECT_EQ(contents_of(dir_ / "r-r.snapshot"), s.saved) << "the snapshot was replaced";
}

// The same room comes back whole once the other rooms have given their memory back.
TEST_F(PersistenceTest, ARoomRefusedForWantOfMemoryComesBackWholeOnceThereIsRoom) {
  BudgetSqueeze s(options());
  ASSERT_TRUE(s.squeeze(dir_));
  {
    auto c = connect(s.server, "/ws/r");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->read_until_closed(5s), 1013);
  }
  s.hog->close();
  ASSERT_TRUE(memory_in_use_becomes(*s.engine, 0));
  auto c = connect(s.server, "/ws/r");
  ASSERT_TRUE(c);
  EXPECT_EQ(hidden_state(*c), std::string("\x03\x03", 2)) << "its global and its grown memory came back";
}

// A restart with a lower --memory-limit than a room's snapshot needs: the log names the room at
// start, and the room is refused with 1013 when asked for; its file is kept, and a restart with
// the limit it needs brings it back. The same for --total-memory-limit.
TEST_F(PersistenceTest, ARestartWithALowerMemoryLimitKeepsTheRoomsThatNoLongerFit) {
  snapshot_grown_hostile(options(), "r");
  snapshot_hostile(options(), "small");
  const std::string saved = contents_of(dir_ / "r-r.snapshot");
  ASSERT_FALSE(saved.empty());
  {
    LogCapture log;
    TestServer server(load(hostile_path, {.memory_bytes = 2 * mib, .total_memory_bytes = 1 * mib}), options());
    EXPECT_TRUE(log.wait_for("state directory: 1 of the 2 room(s) asleep in " + dir_.string() +
                             " no longer fit this run's limits; their snapshots are kept, and each is refused with "
                             "1013 until the limits take it: 'r' (its memory of 1280 KiB is more than the 1 MiB "
                             "all rooms may have together (--total-memory-limit))"));
  }
  {
    LogCapture log;
    TestServer server(load(hostile_path, {.memory_bytes = 1 * mib}), options());
    EXPECT_TRUE(log.wait_for("no longer fit this run's limits; their snapshots are kept, and each is refused with "
                             "1013 until the limits take it: 'r' (its memory of 1280 KiB is more than the 1 MiB a "
                             "room may have (--memory-limit))"));
    auto c = connect(server, "/ws/r");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->read_until_closed(5s), 1013);
    EXPECT_TRUE(log.wait_for("refused to create room 'r': its snapshot's memory of 1280 KiB is more than the 1 MiB "
                             "a room may have (--memory-limit)"));
    auto other = connect(server, "/ws/other");
    ASSERT_TRUE(other);
    expect_echo(*other, "other rooms are served");
  }
  EXPECT_EQ(contents_of(dir_ / "r-r.snapshot"), saved);
  TestServer server(load(hostile_path), options());
  auto c = connect(server, "/ws/r");
  ASSERT_TRUE(c);
  EXPECT_EQ(hidden_state(*c), std::string("\x03\x03", 2));
}

/// A store whose reads fail for now (an EIO, out of descriptors) as many times as it is told.
class FlakyStore final : public StateStore {
 public:
  explicit FlakyStore(std::shared_ptr<StateStore> inner) : inner_(std::move(inner)) {}
  void fail_next_loads(int n) { failing_ = n; }
  int saves() const { return saves_; }
  LoadedState load(std::string_view room_id) override {
    if (failing_ > 0) {
      --failing_;
      return LoadedState::unavailable("its snapshot cannot be read now: Input/output error");
    }
    return inner_->load(room_id);
  }
  void save(std::string_view room_id, std::vector<std::byte> snapshot) override {
    ++saves_;
    inner_->save(room_id, std::move(snapshot));
  }
  void remove(std::string_view room_id) override { inner_->remove(room_id); }
  void asleep(std::string_view room_id) override { inner_->asleep(room_id); }
  void set_aside(std::string_view room_id, std::string_view why) override { inner_->set_aside(room_id, why); }
  void flush() override { inner_->flush(); }

 private:
  std::shared_ptr<StateStore> inner_;
  std::atomic<int> failing_ = 0, saves_ = 0;
};

// A snapshot that cannot be read now is not "no snapshot": the room is refused with 1013 (nothing
// saved over its file), and comes back whole at a later connect.
TEST_F(PersistenceTest, ASnapshotThatCannotBeReadNowRefusesTheRoomAndLosesNothing) {
  snapshot_grown_hostile(options(), "r");
  const std::string saved = contents_of(dir_ / "r-r.snapshot");
  auto store = std::make_shared<FlakyStore>(make_directory_store(dir_));
  ServerOptions o;
  o.state_store = store;
  o.room_grace = RoomGrace::immediate();
  LogCapture log;  // before the server: it must outlive every thread that logs
  TestServer server(load(hostile_path), o);
  store->fail_next_loads(2);
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto c = connect(server, "/ws/r");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->read_until_closed(5s), 1013);
  }
  EXPECT_TRUE(log.wait_for("refused to create room 'r': its snapshot cannot be read now: Input/output error"));
  EXPECT_EQ(store->saves(), 0);
  store->flush();
  EXPECT_EQ(contents_of(dir_ / "r-r.snapshot"), saved);
  auto c = connect(server, "/ws/r");
  ASSERT_TRUE(c);
  EXPECT_EQ(hidden_state(*c), std::string("\x03\x03", 2));
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
    EXPECT_TRUE(log.contains("restoring it (--on-module-change keep)"));
    EXPECT_TRUE(log.contains("room 'a': its snapshot does not fit this instance: the snapshot has 1 mutable "
                             "globals, the module 2"));
    EXPECT_TRUE(log.contains("room 'a': its snapshot cannot be used (its service did not take it); it is set aside"));
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

// A client that connects to a never-used room and leaves (grace immediate: the room hibernates
// at once) leaves nothing on disk, natively and as WebAssembly; a message makes the room worth a
// file, and a room woken from its file keeps it.
TEST_F(PersistenceTest, ABareConnectAndCloseLeavesNoFile) {
  ServerOptions o = options();
  o.room_grace = RoomGrace::immediate();
  const std::vector<std::pair<std::shared_ptr<ServiceFactory>, std::string>> services = {
      {load(counter_path), "increment"}, {load(hostile_path), "!N"}};
  for (const auto& [factory, message] : services) {
    fs::remove_all(dir_);
    {
      TestServer server(factory, o);
      for (int i = 0; i < 20; ++i) {
        auto c = connect(server, "/ws/bare-" + std::to_string(i));
        ASSERT_TRUE(c);
        c->close();
      }
      auto used = connect(server, "/ws/used");
      ASSERT_TRUE(used);
      used->send_text(message);
      ASSERT_TRUE(used->read()) << message;
      used->close();
    }
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(dir_)) files.push_back(entry.path().filename().string());
    EXPECT_EQ(files, std::vector<std::string>{"r-used.snapshot"});
    {
      TestServer server(factory, o);
      auto c = connect(server, "/ws/used");
      ASSERT_TRUE(c);
      c->close();
    }
    EXPECT_TRUE(fs::exists(dir_ / "r-used.snapshot")) << "a woken room's file went when it slept again";
  }
}

// --- snapshots count against the memory budget ----------------------------------------------------

/// Whether `file` appears within `within`.
bool appears(const fs::path& file, std::chrono::milliseconds within) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    if (fs::exists(file)) return true;
    std::this_thread::sleep_for(10ms);
  }
  return fs::exists(file);
}

const std::string ballast_path = std::string(STATEROOM_WASM_DIR) + "/ballast.wasm";

/// Sends `text` to `c` and returns the text it answers ("no answer" when none).
std::string ask(WsClient& c, const std::string& text) {
  c.send_text(text);
  auto r = c.read();
  return r ? r->data : "no answer";
}

/// The ballast example's rooms with 4 MiB of memory together: `hog` takes 2 MiB of incompressible
/// state and `r` 1 MiB, so that r's snapshot does not fit beside their instances.
struct FullBudget {
  explicit FullBudget(ServerOptions o) : server(module, [&] {
    o.memory_budget = engine->memory_budget();
    return o;
  }()) {}
  bool fill() {
    hog = connect(server, "/ws/hog");
    r = connect(server, "/ws/r");
    if (!hog || !r) return false;
    EXPECT_EQ(ask(*hog, "grow 2"), "size 2");
    EXPECT_EQ(ask(*r, "grow 1"), "size 1");
    EXPECT_EQ(ask(*r, "increment"), "count: 1");
    EXPECT_GT(engine->memory_in_use() + mib, engine->limits().total_memory_bytes) << engine->memory_in_use();
    return true;
  }
  std::shared_ptr<wasm::Engine> engine = std::make_shared<wasm::Engine>(
      wasm::Limits{.memory_bytes = 3 * mib, .total_memory_bytes = 4 * mib, .max_instances = 16});
  std::shared_ptr<wasm::Module> module = wasm::Module::load(engine, ballast_path);
  TestServer server;
  std::unique_ptr<WsClient> hog, r;
};

// A periodic snapshot counts against the memory of all rooms as it is taken: one that does not fit
// waits (said in the log), the room goes on, and it is taken once there is room.
TEST_F(PersistenceTest, APeriodicSnapshotThatDoesNotFitTheMemoryBudgetWaitsForRoom) {
  ServerOptions o = options();
  o.snapshot_interval = 100ms;
  o.room_grace = RoomGrace::immediate();  // the hog's memory goes back as it leaves
  LogCapture log;
  FullBudget b(o);
  ASSERT_TRUE(b.fill());
  // The first of the two that waits is said (the others at most every 10 s).
  EXPECT_TRUE(log.wait_for("does not fit the memory of all rooms", 3s)) << "no line says the snapshot waits";
  EXPECT_FALSE(fs::exists(dir_ / "r-r.snapshot"));
  EXPECT_LE(b.engine->memory_in_use(), 4 * mib);
  EXPECT_EQ(ask(*b.r, "increment"), "count: 2") << "the room goes on meanwhile";
  b.hog->close();
  b.hog.reset();
  EXPECT_TRUE(appears(dir_ / "r-r.snapshot", 3s)) << "the snapshot was not taken once there was room";
}

// A WebAssembly room hibernating exchanges its instance for its snapshot: it may, even with the
// budget full, and its memory goes back as it ends.
TEST_F(PersistenceTest, AWasmRoomHibernatesWithTheMemoryBudgetFull) {
  ServerOptions o = options();
  o.room_grace = RoomGrace::immediate();
  FullBudget b(o);
  ASSERT_TRUE(b.fill());
  const std::uint64_t both = b.engine->memory_in_use();
  b.r->close();
  b.r.reset();
  EXPECT_TRUE(appears(dir_ / "r-r.snapshot", 3s));
  for (int i = 0; i < 300 && b.engine->memory_in_use() > both - mib; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_LE(b.engine->memory_in_use(), both - mib) << "r's instance did not go as it hibernated";
  b.hog->close();
  b.hog.reset();
  ASSERT_TRUE(memory_in_use_becomes(*b.engine, 0));
  auto r = connect(b.server, "/ws/r");
  ASSERT_TRUE(r);
  EXPECT_EQ(ask(*r, "check"), "ok 1 1") << "it came back whole";
}

/// A native service whose snapshot is 1 MiB.
struct Heavy : Service {
  std::vector<std::byte> state = std::vector<std::byte>(1 << 20, std::byte{7});
  void message(ClientId sender, const MessagePayload&, Context& ctx) override { ctx.send(client(sender), "ok"); }
  std::vector<std::byte> snapshot() override { return state; }
  bool restore(std::span<const std::byte> saved, Context&) override {
    state.assign(saved.begin(), saved.end());
    return true;
  }
};

// A native room whose snapshot does not fit the memory budget as it hibernates stays alive (its
// memory is not the budget's to exchange), says so, and hibernates once it fits.
TEST_F(PersistenceTest, ANativeRoomWhoseSnapshotDoesNotFitStaysAliveUntilItDoes) {
  auto budget = std::make_shared<MemoryBudget>(2 * mib);
  ServerOptions o = options();
  o.memory_budget = budget;
  o.room_grace = RoomGrace::immediate();
  LogCapture log;
  TestServer server(std::make_shared<ServiceFactoryOf<Heavy>>(), o);
  ASSERT_TRUE(budget->take(3 * mib / 2));  // what else holds memory: 512 KiB are left
  {
    auto c = connect(server, "/ws/heavy");
    ASSERT_TRUE(c);
    c->send_text("x");
    ASSERT_TRUE(c->read());
    c->close();
  }
  EXPECT_TRUE(log.wait_for("room 'heavy': its snapshot", 3s));
  EXPECT_TRUE(log.contains("it stays alive and hibernates later"));
  EXPECT_FALSE(fs::exists(dir_ / "r-heavy.snapshot"));
  budget->give_back(3 * mib / 2);
  EXPECT_TRUE(appears(dir_ / "r-heavy.snapshot", 5s)) << "it did not hibernate once it fitted";
  EXPECT_TRUE(log.wait_for("room 'heavy'", 1s));
}

// --- another build of the same layout: --on-module-change layout, Server::replace_factory ----------

const std::string echo_path = std::string(STATEROOM_WASM_DIR) + "/echo.wasm";

/// counter.wasm with a custom section appended: other bytes (another identity) and the same data
/// layout, as a rebuild that changed only code has.
std::shared_ptr<wasm::Module> rebuilt_counter() {
  std::ifstream in(counter_path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string name = "rebuilt";
  const std::string body = std::string(1, static_cast<char>(name.size())) + name + "another build";
  bytes += '\0';
  bytes += static_cast<char>(body.size());
  bytes += body;
  return wasm::Module::load_bytes(std::make_shared<wasm::Engine>(wasm::Limits{.max_instances = 16}), bytes,
                                  "counter-rebuilt.wasm");
}

/// hostile.wat with one more function, last (so no table index moves): another build, of the
/// same data layout.
std::shared_ptr<wasm::Module> rebuilt_hostile() {
  std::ifstream in(hostile_path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text.insert(text.rfind(')'), "(func $another_build)");
  return wasm::Module::load_bytes(std::make_shared<wasm::Engine>(wasm::Limits{.max_instances = 16}), text,
                                  "hostile-rebuilt.wat");
}

/// Sends `increment` and returns what the counter said.
std::string increment(WsClient& c) {
  c.send_text("increment");
  auto r = c.read();
  return r ? r->data : "no answer";
}

TEST(DataLayout, ARebuildThatChangedOnlyCodeHasTheSameLayoutAndAnotherIdentity) {
  auto counter = load(counter_path), again = rebuilt_counter(), echo = load(echo_path);
  EXPECT_NE(counter->snapshot_identity(), again->snapshot_identity());
  EXPECT_FALSE(counter->snapshot_layout().empty());
  EXPECT_EQ(counter->snapshot_layout(), again->snapshot_layout());
  EXPECT_NE(counter->snapshot_layout(), echo->snapshot_layout());
  EXPECT_EQ(load(hostile_path)->snapshot_layout(), rebuilt_hostile()->snapshot_layout()) << "a function more";
  EXPECT_NE(load(hostile_path)->snapshot_layout(), hostile_with_another_global()->snapshot_layout())
      << "a global more is another layout";
}

// A hibernated room's snapshot is restored by a rebuild of the same layout under `layout`, and not
// under `fresh` (which says how to), nor under `layout` for another layout.
TEST_F(PersistenceTest, LayoutRestoresTheSnapshotOfABuildWithTheSameDataLayout) {
  ServerOptions o = options();
  o.on_module_change = ServerOptions::OnModuleChange::layout;
  // Counts to 2 in `room` under counter.wasm itself, then stops (the room is snapshotted).
  auto count_to_two = [&](const std::string& room) {
    TestServer server(load(counter_path), o);
    auto c = connect(server, "/ws/" + room);
    ASSERT_TRUE(c);
    EXPECT_EQ(increment(*c), "new value: 1");
    EXPECT_EQ(increment(*c), "new value: 2");
    c->close();
  };
  count_to_two("a");
  {
    LogCapture log;
    TestServer server(rebuilt_counter(), options());  // fresh
    auto c = connect(server, "/ws/a");
    ASSERT_TRUE(c);
    EXPECT_EQ(increment(*c), "new value: 1");
    EXPECT_TRUE(log.contains("; --on-module-change layout would restore it); it is set aside"));
  }
  count_to_two("b");
  {
    LogCapture log;
    TestServer server(rebuilt_counter(), o);
    auto c = connect(server, "/ws/b");
    ASSERT_TRUE(c);
    EXPECT_EQ(increment(*c), "new value: 3");
    EXPECT_TRUE(log.contains("room 'b': its snapshot was made by another build of the service with the same data "
                             "layout; restoring it (--on-module-change layout)"));
  }
  snapshot_hostile(options(), "h");
  LogCapture log;
  TestServer server(hostile_with_another_global(), o);
  auto c = connect(server, "/ws/h");
  ASSERT_TRUE(c);
  EXPECT_EQ(hidden_state(*c), std::string("\x00\x00", 2)) << "another layout starts afresh under layout";
  EXPECT_TRUE(log.contains("another build of the service with another data layout"));
}

// replace_factory(carry_over): a running room moves to a rebuild of the same layout between two
// events, its client still connected and its count going on.
/// The options of `stateroom dev`: a build of the same data layout takes a room's state.
ServerOptions layout_options() {
  ServerOptions o;
  o.on_module_change = ServerOptions::OnModuleChange::layout;
  return o;
}

TEST(CarryOver, ARebuildThatChangedOnlyCodeTakesOverARunningRoomWithItsState) {
  LogCapture log;
  TestServer server(load(counter_path), layout_options());
  auto c = connect(server, "/ws/r");
  ASSERT_TRUE(c);
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(increment(*c), "new value: " + std::to_string(i));
  server.server().replace_factory(rebuilt_counter(), Server::RunningRooms::carry_over);
  ASSERT_TRUE(log.wait_for("room 'r' moved to the new service with its state (1 client(s) stay connected)"));
  EXPECT_EQ(increment(*c), "new value: 4");
  auto d = connect(server, "/ws/r");
  ASSERT_TRUE(d);
  EXPECT_EQ(increment(*d), "new value: 5");
  auto heard = c->read();
  ASSERT_TRUE(heard);
  EXPECT_EQ(heard->data, "new value: 5") << "the first client hears the second's increment";
}

// Under `fresh` (the default of `stateroom serve`) another module does not take the state, even of
// the same layout.
TEST(CarryOver, UnderFreshAnotherModuleStartsTheRoomAfreshEvenOfTheSameLayout) {
  LogCapture log;
  TestServer server(load(counter_path));
  auto c = connect(server, "/ws/r");
  ASSERT_TRUE(c);
  EXPECT_EQ(increment(*c), "new value: 1");
  server.server().replace_factory(rebuilt_counter(), Server::RunningRooms::carry_over);
  ASSERT_TRUE(log.wait_for("room 'r' starts afresh on the new service: the new build is another module "
                           "(--on-module-change fresh)"));
  EXPECT_EQ(increment(*c), "new value: 1");
}

// Another layout: the room starts afresh in place, `init` then a `connect` for each client (the
// echo guest greets it), and its clients stay; and back again.
TEST(CarryOver, ARebuildOfAnotherLayoutStartsARunningRoomAfreshWithItsClients) {
  LogCapture log;
  TestServer server(load(counter_path), layout_options());
  auto c = connect(server, "/ws/r");
  ASSERT_TRUE(c);
  EXPECT_EQ(increment(*c), "new value: 1");
  server.server().replace_factory(load(echo_path), Server::RunningRooms::carry_over);
  auto greeting = c->read();
  ASSERT_TRUE(greeting);
  EXPECT_EQ(greeting->data, "User ClientId(1) connected.") << "the new service's connect for the client";
  EXPECT_TRUE(log.contains("room 'r' starts afresh on the new service: the new build has another data layout"));
  server.server().replace_factory(load(counter_path), Server::RunningRooms::carry_over);
  for (int i = 0; i < 500 && log.count("room 'r' starts afresh") < 2; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(log.count("room 'r' starts afresh"), 2u);
  EXPECT_EQ(increment(*c), "new value: 1") << "a fresh counter";
}

// A native service that keeps nothing starts afresh; a room busy in a handler moves once it
// returns.
TEST(CarryOver, AServiceThatKeepsNothingStartsAfreshAndABusyRoomMovesWhenItsHandlerReturns) {
  {
    LogCapture log;
    TestServer server(std::make_shared<ServiceFactoryOf<Forgetful>>());
    auto c = connect(server, "/ws/f");
    ASSERT_TRUE(c);
    c->send_text("x");
    c->send_text("x");
    ASSERT_TRUE(c->read());
    auto second = c->read();
    ASSERT_TRUE(second);
    EXPECT_EQ(second->data, "2");
    server.server().replace_factory(std::make_shared<ServiceFactoryOf<Forgetful>>(), Server::RunningRooms::carry_over);
    ASSERT_TRUE(log.wait_for("room 'f' starts afresh on the new service: its service keeps no state"));
    c->send_text("x");
    auto after = c->read();
    ASSERT_TRUE(after);
    EXPECT_EQ(after->data, "1");
  }
  LogCapture log;
  TestServer server(load(hostile_path), layout_options());
  auto c = connect(server, "/ws/h");
  ASSERT_TRUE(c);
  expect_echo(*c, "!N");
  expect_echo(*c, "!N");
  constexpr int n = 10;
  for (int i = 0; i < n; ++i) c->send_text("!S" + std::to_string(i));  // each computes long enough to pause
  auto first = c->read(10s);  // the others are queued behind it, each pausing: the room is busy
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->is_text("!S0")) << first->data;
  server.server().replace_factory(rebuilt_hostile(), Server::RunningRooms::carry_over);
  for (int i = 1; i < n; ++i) {
    auto r = c->read(10s);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->is_text("!S" + std::to_string(i))) << r->data;
  }
  ASSERT_TRUE(log.wait_for("room 'h' moved to the new service with its state"));
  EXPECT_TRUE(log.contains("1 room(s) busy in a handler move to it once the handler returns: 'h'"));
  EXPECT_EQ(hidden_state(*c), std::string("\x02\x02", 2)) << "the hidden global and the memory carried over";
}

}  // namespace
}  // namespace stateroom::test
