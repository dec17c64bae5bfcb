// The directory store of rooms' snapshots (include/stateroom/state_store.hpp).
#include "stateroom/state_store.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
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

/// What a load found (nothing when it found none or could not read it now).
std::optional<std::vector<std::byte>> found(LoadedState loaded) {
  if (!loaded.is_found()) return std::nullopt;
  return std::move(loaded.snapshot);
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
    auto loaded = found(store->load(id));
    ASSERT_TRUE(loaded) << id;
    EXPECT_EQ(*loaded, bytes_of("state of " + id)) << id;
  }
  EXPECT_FALSE(found(store->load("never saved")));
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
  EXPECT_EQ(found(store->load("r")), bytes_of("two"));
  store->flush();
  EXPECT_EQ(found(make_directory_store(dir_)->load("r")), bytes_of("two"));
  store->remove("r");
  EXPECT_FALSE(found(store->load("r")));
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
  EXPECT_EQ(found(make_directory_store(dir_)->load("big")), big);
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
    EXPECT_FALSE(found(store->load(id))) << id;
    EXPECT_FALSE(fs::exists(file_of(id))) << id << " should be set aside";
    EXPECT_TRUE(fs::exists(fs::path(file_of(id)) += ".unreadable")) << id;
  }
  EXPECT_TRUE(logged("room 'corrupt': its snapshot"));
  EXPECT_TRUE(logged("its checksum does not match"));
  EXPECT_TRUE(logged("room 'empty': its snapshot"));
  EXPECT_FALSE(found(store->load("corrupt"))) << "asked again: nothing, and no second warning needed";
  EXPECT_EQ(found(store->load("mine")), bytes_of(std::string(1000, 'z') + "mine"));
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
  EXPECT_EQ(found(store->load("blocked")), bytes_of("kept"));
  store->save("fine", bytes_of("also"));
  store->flush();
  EXPECT_EQ(found(make_directory_store(dir_)->load("fine")), bytes_of("also"));
  // Once the directory takes it, the next flush (the server's, as it stops) writes it after all.
  fs::remove(fs::path(file_of("blocked")) += ".tmp");
  store->flush();
  EXPECT_EQ(found(make_directory_store(dir_)->load("blocked")), bytes_of("kept")) << "a failed write was not tried again";
}

TEST_F(StateStoreTest, AStoreThatCannotWriteSaysWhatIsLostWhenItGoes) {
  fs::create_directories(dir_);
  fs::create_directories(fs::path(file_of("blocked")) += ".tmp");
  make_directory_store(dir_)->save("blocked", bytes_of("kept"));
  EXPECT_TRUE(logged("the state of 1 room(s) could not be written to " + fs::absolute(dir_).string() +
                     " and is lost: 'blocked'"));
}

/// A file of `store`'s format for `room` whose header claims `claimed` bytes of snapshot, with its
/// checksum made right again: only the claim is a lie.
void claim_size(const fs::path& file, std::string_view room, std::uint64_t claimed) {
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::size_t at = std::string_view("STATEROOM-SNAPSHOT\n").size() + 8 + room.size();
  for (int i = 0; i < 8; ++i) bytes[at + i] = static_cast<char>(claimed >> (8 * i));
  bytes.resize(bytes.size() - 4);
  const auto crc = static_cast<std::uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size())));
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>(crc >> (8 * i)));
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
}

std::size_t peak_rss_kib() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<std::size_t>(usage.ru_maxrss);
}

// A file is not trusted: what it claims is checked before anything is allocated, and only regular
// files are read. A claim past the limits refuses the room for now and keeps the file (a run with
// lower limits); a claim its data does not bear out, a FIFO, a link to /dev/zero, a directory are
// set aside, and nothing blocks or ends the process.
TEST_F(StateStoreTest, TamperedFilesAreCheckedBeforeAnythingIsAllocated) {
  {
    auto store = make_directory_store(dir_);
    for (const char* id : {"claims-6GiB", "claims-1GiB"}) store->save(id, bytes_of(std::string(100, 'x')));
    store->flush();
  }
  claim_size(file_of("claims-6GiB"), "claims-6GiB", std::uint64_t{6} << 30);
  claim_size(file_of("claims-1GiB"), "claims-1GiB", std::uint64_t{1} << 30);
  ASSERT_EQ(::mkfifo(file_of("fifo").c_str(), 0644), 0);
  fs::create_symlink("/dev/zero", file_of("zero"));
  fs::create_directories(file_of("directory"));

  const std::size_t rss_before = peak_rss_kib();
  auto store = make_directory_store(dir_);
  const auto big = store->load("claims-6GiB");
  EXPECT_EQ(big.status, LoadedState::Status::unavailable);
  EXPECT_NE(big.error.find("it holds 6 GiB of state, more than the 4160 MiB a room may have now"), std::string::npos)
      << big.error;
  EXPECT_TRUE(fs::exists(file_of("claims-6GiB"))) << "a snapshot past today's limits is kept";

  const auto lying = store->load("claims-1GiB");  // within the limits, but its data yields 100 bytes
  EXPECT_EQ(lying.status, LoadedState::Status::none);
  EXPECT_TRUE(fs::exists(fs::path(file_of("claims-1GiB")) += ".unreadable"));
  EXPECT_TRUE(logged("it decompresses to"));
  EXPECT_LT(peak_rss_kib() - rss_before, 64u * 1024) << "a claim cost memory before it was checked";

  for (const char* id : {"fifo", "zero", "directory"}) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(store->load(id).status, LoadedState::Status::none) << id;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1)) << id;
    EXPECT_TRUE(fs::exists(fs::symlink_status(fs::path(file_of(id)) += ".unreadable"))) << id << " not set aside";
  }
  EXPECT_TRUE(logged("it is a symbolic link, not a regular file"));
  EXPECT_TRUE(logged("it is not a regular file"));
}

// A file that cannot be read now (out of descriptors here; EIO and EACCES alike) is not "none":
// the room must not start and overwrite it. The file is left as it is and read once it can be.
TEST_F(StateStoreTest, AFileThatCannotBeReadNowIsUnavailableAndKept) {
  {
    auto store = make_directory_store(dir_);
    store->save("r", bytes_of("count 5"));
    store->flush();
  }
  auto store = make_directory_store(dir_);
  rlimit before{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &before), 0);
  rlimit tight = before;
  tight.rlim_cur = 256;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  std::vector<int> taken;  // every descriptor left: the next open fails with EMFILE
  for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) taken.push_back(fd);
  const auto loaded = store->load("r");
  for (int fd : taken) ::close(fd);
  ::setrlimit(RLIMIT_NOFILE, &before);
  EXPECT_EQ(loaded.status, LoadedState::Status::unavailable);
  EXPECT_NE(loaded.error.find("Too many open files"), std::string::npos) << loaded.error;
  EXPECT_TRUE(fs::exists(file_of("r")));
  EXPECT_EQ(found(store->load("r")), bytes_of("count 5"));
}

// A snapshot its room could not use is set aside, not overwritten by the room's next snapshot.
TEST_F(StateStoreTest, ASnapshotSetAsideIsKeptForALookAndNotLoadedAgain) {
  auto store = make_directory_store(dir_);
  store->save("r", bytes_of("old"));
  store->flush();
  const auto old_size = fs::file_size(file_of("r"));
  store->set_aside("r", "its service did not take it");
  EXPECT_FALSE(found(store->load("r")));
  store->flush();
  EXPECT_FALSE(fs::exists(file_of("r")));
  EXPECT_EQ(fs::file_size(fs::path(file_of("r")) += ".unreadable"), old_size);
  store->save("r", bytes_of("new"));
  store->flush();
  EXPECT_EQ(found(make_directory_store(dir_)->load("r")), bytes_of("new"));
  EXPECT_EQ(fs::file_size(fs::path(file_of("r")) += ".unreadable"), old_size) << "the old one was overwritten";
  // A save right behind the set_aside, before the writer got to either: the file is set aside
  // first all the same.
  fs::remove(fs::path(file_of("r")) += ".unreadable");
  const auto new_size = fs::file_size(file_of("r"));
  store->set_aside("r", "refused again");
  store->save("r", bytes_of("newer"));
  EXPECT_EQ(found(store->load("r")), bytes_of("newer"));
  store->flush();
  EXPECT_EQ(fs::file_size(fs::path(file_of("r")) += ".unreadable"), new_size);
  EXPECT_EQ(found(make_directory_store(dir_)->load("r")), bytes_of("newer"));
  EXPECT_TRUE(logged("room 'r': its snapshot cannot be used (its service did not take it)"));
}

// A crash in the middle of a write leaves a temporary file beside the last whole snapshot: a
// store that starts removes it, and the snapshot is as it was.
TEST_F(StateStoreTest, AStartRemovesTheTemporaryFilesOfWritesCutShort) {
  {
    auto store = make_directory_store(dir_);
    store->save("r", bytes_of("whole"));
    store->flush();
  }
  std::ofstream(fs::path(file_of("r")) += ".tmp") << "half a snapshot";
  std::ofstream(fs::path(file_of("other")) += ".tmp") << "half of another";
  std::ofstream(dir_ / "notes.tmp") << "not ours";
  auto store = make_directory_store(dir_);
  EXPECT_FALSE(fs::exists(fs::path(file_of("r")) += ".tmp"));
  EXPECT_FALSE(fs::exists(fs::path(file_of("other")) += ".tmp"));
  EXPECT_TRUE(fs::exists(dir_ / "notes.tmp")) << "a file that is not the store's was removed";
  EXPECT_TRUE(logged("removed 2 temporary file(s)"));
  EXPECT_EQ(found(store->load("r")), bytes_of("whole"));
}

TEST(MemoryStore, KeepsTheLastSnapshotOfEachRoomUntilRemoved) {
  auto store = make_memory_store();
  EXPECT_FALSE(found(store->load("a")));
  store->save("a", bytes_of("one"));
  store->save("a", bytes_of("two"));
  store->save(std::string("b\0", 2), bytes_of("other"));
  EXPECT_EQ(found(store->load("a")), bytes_of("two"));
  EXPECT_EQ(found(store->load(std::string("b\0", 2))), bytes_of("other"));
  EXPECT_FALSE(found(store->load("b")));
  store->remove("a");
  store->flush();
  EXPECT_FALSE(found(store->load("a")));
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
