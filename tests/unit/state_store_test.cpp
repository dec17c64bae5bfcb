// The directory store of rooms' snapshots (include/stateroom/state_store.hpp).
#include "stateroom/state_store.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

namespace stateroom {
namespace {

namespace fs = std::filesystem;

std::vector<std::byte> bytes_of(std::string_view text) {
  std::vector<std::byte> out;
  for (char c : text) out.push_back(static_cast<std::byte>(c));
  return out;
}

/// Room ids of every awkward kind.
std::vector<std::string> awkward_ids() {
  return {"lobby", "..", ".", "/", "a/b", "../../etc/passwd", "%41", "A", "a", "with space", "tab\there",
          std::string("nul\0byte", 8), "h-0123", "r-lobby", "é", "日本語", std::string(256, 'x'),
          std::string(255, 'x') + "y", std::string(100, '/'), "-", "_"};
}

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("stateroom-store-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    sink_ = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(100);
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  void TearDown() override {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
    fs::remove_all(dir_);
  }
  bool logged(const std::string& text) const {
    for (const auto& line : sink_->last_formatted())
      if (line.find(text) != std::string::npos) return true;
    return false;
  }
  fs::path file_of(std::string_view room) const { return dir_ / state_file_name(room); }

  fs::path dir_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

TEST_F(StateStoreTest, FileNamesAreSafeDistinctAndReadable) {
  EXPECT_EQ(state_file_name("lobby"), "r-lobby.snapshot");
  EXPECT_EQ(state_file_name(".."), "r-%2E%2E.snapshot");
  EXPECT_EQ(state_file_name("a/b"), "r-a%2Fb.snapshot");
  EXPECT_EQ(state_file_name("é"), "r-%C3%A9.snapshot");
  EXPECT_EQ(state_file_name(std::string(256, 'x')).size(), 2 + 64 + 9);  // h-, SHA-256 in hex, .snapshot
  std::set<std::string> names;
  for (const auto& id : awkward_ids()) {
    const std::string name = state_file_name(id);
    EXPECT_TRUE(names.insert(name).second) << "two ids share " << name;
    EXPECT_EQ(name.find('/'), std::string::npos) << name;
    EXPECT_FALSE(name.starts_with('.')) << name;
    EXPECT_LE(name.size(), 255u) << name;
  }
}

TEST_F(StateStoreTest, EveryAwkwardRoomIdRoundTripsThroughTheDisk) {
  {
    auto store = make_directory_store(dir_);
    for (const auto& id : awkward_ids()) store->save(id, bytes_of("state of " + id));
    store->flush();
  }
  auto store = make_directory_store(dir_);  // a fresh store: only the files remain
  for (const auto& id : awkward_ids()) {
    auto loaded = store->load(id);
    ASSERT_TRUE(loaded) << id;
    EXPECT_EQ(*loaded, bytes_of("state of " + id)) << id;
  }
  EXPECT_FALSE(store->load("never saved"));
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    ++files;
    EXPECT_EQ(entry.path().parent_path(), dir_) << "a file outside the directory";
  }
  EXPECT_EQ(files, awkward_ids().size());
}

TEST_F(StateStoreTest, ASaveIsSeenAtOnceAndTheLastOneWins) {
  auto store = make_directory_store(dir_);
  store->save("r", bytes_of("one"));
  store->save("r", bytes_of("two"));
  EXPECT_EQ(store->load("r"), bytes_of("two"));
  store->flush();
  EXPECT_EQ(make_directory_store(dir_)->load("r"), bytes_of("two"));
  store->remove("r");
  EXPECT_FALSE(store->load("r"));
  store->flush();
  EXPECT_FALSE(fs::exists(file_of("r")));
}

TEST_F(StateStoreTest, ALargeSnapshotIsCompressedAndComesBackWhole) {
  std::vector<std::byte> big(16 << 20);
  for (std::size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<std::byte>(i / 4096);
  {
    auto store = make_directory_store(dir_);
    store->save("big", big);
    store->flush();
  }
  EXPECT_LT(fs::file_size(file_of("big")), 1u << 20) << "zstd should make 16 MiB of mostly zeros small";
  EXPECT_EQ(make_directory_store(dir_)->load("big"), big);
}

TEST_F(StateStoreTest, CorruptTruncatedAndForeignFilesAreRefusedOnceAndSetAside) {
  {
    auto store = make_directory_store(dir_);
    for (const char* id : {"corrupt", "truncated", "mine"}) store->save(id, bytes_of(std::string(1000, 'z') + id));
    store->save("empty", bytes_of("x"));
    store->flush();
  }
  {  // a flipped byte in the middle
    std::fstream f(file_of("corrupt"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(file_of("corrupt")) / 2));
    f.put('\x7f');
  }
  fs::resize_file(file_of("truncated"), fs::file_size(file_of("truncated")) - 3);
  fs::copy_file(file_of("mine"), file_of("theirs"));  // room "mine"'s file under another room's name
  fs::resize_file(file_of("empty"), 0);

  auto store = make_directory_store(dir_);
  for (const char* id : {"corrupt", "truncated", "theirs", "empty"}) {
    EXPECT_FALSE(store->load(id)) << id;
    EXPECT_FALSE(fs::exists(file_of(id))) << id << " should be set aside";
    EXPECT_TRUE(fs::exists(fs::path(file_of(id)) += ".unreadable")) << id;
  }
  EXPECT_TRUE(logged("room 'corrupt': its snapshot"));
  EXPECT_TRUE(logged("its checksum does not match"));
  EXPECT_TRUE(logged("room 'empty': its snapshot"));
  EXPECT_FALSE(store->load("corrupt")) << "asked again: nothing, and no second warning needed";
  EXPECT_EQ(store->load("mine"), bytes_of(std::string(1000, 'z') + "mine"));
}

TEST_F(StateStoreTest, AFailingWriteIsReportedAndTheStateStaysInMemory) {
  fs::create_directories(dir_);
  // A directory where the temporary file should go: creating it fails (as root too).
  fs::create_directories(fs::path(file_of("blocked")) += ".tmp");
  auto store = make_directory_store(dir_);
  store->save("blocked", bytes_of("kept"));
  store->flush();
  EXPECT_TRUE(logged("state directory: cannot create"));
  EXPECT_TRUE(logged("the room's state stays in memory"));
  EXPECT_EQ(store->load("blocked"), bytes_of("kept"));
  store->save("fine", bytes_of("also"));
  store->flush();
  EXPECT_EQ(make_directory_store(dir_)->load("fine"), bytes_of("also"));
  // Once the directory takes it, the next flush (the server's, as it stops) writes it after all.
  fs::remove(fs::path(file_of("blocked")) += ".tmp");
  store->flush();
  EXPECT_EQ(make_directory_store(dir_)->load("blocked"), bytes_of("kept")) << "a failed write was not tried again";
}

TEST_F(StateStoreTest, AStoreThatCannotWriteSaysWhatIsLostWhenItGoes) {
  fs::create_directories(dir_);
  fs::create_directories(fs::path(file_of("blocked")) += ".tmp");
  make_directory_store(dir_)->save("blocked", bytes_of("kept"));
  EXPECT_TRUE(logged("the state of 1 room(s) could not be written to " + fs::absolute(dir_).string() +
                     " and is lost: 'blocked'"));
}

TEST(MemoryStore, KeepsTheLastSnapshotOfEachRoomUntilRemoved) {
  auto store = make_memory_store();
  EXPECT_FALSE(store->load("a"));
  store->save("a", bytes_of("one"));
  store->save("a", bytes_of("two"));
  store->save(std::string("b\0", 2), bytes_of("other"));
  EXPECT_EQ(store->load("a"), bytes_of("two"));
  EXPECT_EQ(store->load(std::string("b\0", 2)), bytes_of("other"));
  EXPECT_FALSE(store->load("b"));
  store->remove("a");
  store->flush();
  EXPECT_FALSE(store->load("a"));
}

TEST_F(StateStoreTest, ADirectoryThatCannotBeMadeIsAClearError) {
  fs::create_directories(dir_);
  std::ofstream(dir_ / "a-file") << "x";
  try {
    make_directory_store(dir_ / "a-file");
    ADD_FAILURE() << "a file made a store";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("a-file"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace stateroom
