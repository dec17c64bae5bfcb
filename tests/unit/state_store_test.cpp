// The directory store of rooms' snapshots (include/stateroom/state_store.hpp).
#include "stateroom/state_store.hpp"

#include "stateroom/memory_budget.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>

namespace stateroom {
namespace {

namespace fs = std::filesystem;

std::vector<std::byte> bytes_of(std::string_view text) {
  std::vector<std::byte> out;
  for (char c : text) out.push_back(static_cast<std::byte>(c));
  return out;
}

/// `size` bytes zstd cannot shrink: a file holding them takes about as much.
std::vector<std::byte> noise(std::size_t size) {
  static std::mt19937 random(42);
  std::vector<std::byte> out(size);
  for (auto& b : out) b = static_cast<std::byte>(random());
  return out;
}

/// A moment apart, so that the rooms' last uses are in a known order.
void tick() { std::this_thread::sleep_for(std::chrono::milliseconds(2)); }

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

// Bytes zstd cannot shrink go into the file as they are, and come back whole; writes_in_flight
// counts the saves not yet written.
TEST_F(StateStoreTest, AnIncompressibleSnapshotComesBackWholeAndIsCountedUntilWritten) {
  std::vector<std::byte> noise(24 << 20);
  std::uint64_t x = 0x9e3779b97f4a7c15;
  for (auto& b : noise) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
  {
    auto store = make_directory_store(dir_);
    EXPECT_EQ(store->writes_in_flight(), 0u);
    for (const char* id : {"a", "b", "c"}) store->save(id, noise);
    // 72 MiB are not compressed, written and synced in the microseconds since.
    EXPECT_GE(store->writes_in_flight(), 1u);
    EXPECT_LE(store->writes_in_flight(), 3u);
    store->flush();
    EXPECT_EQ(store->writes_in_flight(), 0u);
  }
  EXPECT_GT(fs::file_size(file_of("c")), noise.size());
  EXPECT_EQ(found(make_directory_store(dir_)->load("c")), noise);
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
  EXPECT_TRUE(logged("checksum does not match"));
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

/// A file of the store's format for `room` whose header claims `claimed` bytes of snapshot, with
/// its header's checksum made right again: only the claim is a lie.
/// Rewrites `file` (one chunk) to claim a snapshot of `claimed` bytes, its header's checksum made
/// to match.
void claim_size(const fs::path& file, std::string_view room, std::uint64_t claimed) {
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::size_t at = std::string_view("STATEROOM-SNAPSHOT\n").size() + 8 + room.size();
  ASSERT_EQ(bytes[at + 8], 1) << "one chunk";
  for (int i = 0; i < 8; ++i) bytes[at + i] = static_cast<char>(claimed >> (8 * i));
  const auto chunk = static_cast<std::uint32_t>(std::min<std::uint64_t>(claimed, UINT32_MAX));
  for (int i = 0; i < 4; ++i) bytes[at + 12 + i] = static_cast<char>(chunk >> (8 * i));
  const std::size_t header = at + 12 + 16;
  const auto crc = static_cast<std::uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(header)));
  for (int i = 0; i < 4; ++i) bytes[header + i] = static_cast<char>(crc >> (8 * i));
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
  EXPECT_TRUE(logged("a chunk decompresses to another size"));
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
#if defined(__SANITIZE_ADDRESS__)
  // UBSan's vptr check probes memory through a pipe: out of descriptors, it reports every virtual
  // call as a bad one. The release build runs this test.
  GTEST_SKIP() << "a sanitizer build cannot run out of descriptors";
#endif
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

// Files of format 1 (a checksum of the whole file at its end), as servers before wrote them, are
// still read; a byte changed in one is still found.
TEST_F(StateStoreTest, FilesOfTheFormerFormatAreStillRead) {
  const std::string room = "old";
  const std::string snapshot = std::string(5000, 'a') + "the old format";
  std::string file = "STATEROOM-SNAPSHOT\n";
  auto put = [&](std::uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i) file.push_back(static_cast<char>(value >> (8 * i)));
  };
  put(1, 4);
  put(room.size(), 4);
  file += room;
  put(snapshot.size(), 8);
  std::string compressed(ZSTD_compressBound(snapshot.size()), '\0');
  compressed.resize(ZSTD_compress(compressed.data(), compressed.size(), snapshot.data(), snapshot.size(), 3));
  put(compressed.size(), 8);
  file += compressed;
  put(crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(file.data()), static_cast<uInt>(file.size())), 4);
  fs::create_directories(dir_);
  std::ofstream(file_of(room), std::ios::binary) << file;
  EXPECT_EQ(found(make_directory_store(dir_)->load(room)), bytes_of(snapshot));
  file[file.size() / 2] ^= 1;
  std::ofstream(file_of(room), std::ios::binary | std::ios::trunc) << file;
  EXPECT_FALSE(found(make_directory_store(dir_)->load(room)));
  EXPECT_TRUE(logged("its checksum does not match"));

  // Format 2: the header's checksum, then the snapshot as one zstd frame.
  const std::string room2 = "two";
  file = "STATEROOM-SNAPSHOT\n";
  put(2, 4);
  put(room2.size(), 4);
  file += room2;
  put(snapshot.size(), 8);
  put(crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(file.data()), static_cast<uInt>(file.size())), 4);
  file += compressed;
  std::ofstream(file_of(room2), std::ios::binary) << file;
  EXPECT_EQ(found(make_directory_store(dir_)->load(room2)), bytes_of(snapshot));
}

// A snapshot that changed in a few places, even with bytes inserted before them, is written with
// the chunks it shares with the room's last file copied from it, not compressed again; each
// comes back whole.
TEST_F(StateStoreTest, AnAlmostUnchangedSnapshotReusesTheChunksOfItsLastFile) {
  spdlog::set_level(spdlog::level::debug);
  std::vector<std::byte> snapshot = noise(16 << 20);
  auto store = make_directory_store(dir_);
  store->save("big", snapshot);
  store->flush();
  EXPECT_TRUE(logged("wrote room 'big': 16 MiB in 16.0 MiB, 0 bytes of it copied from its last file"));
  snapshot[8 << 20] ^= std::byte{1};                                      // a change in the middle
  snapshot.insert(snapshot.begin(), 4100, std::byte{7});                  // a page inserted at the front
  snapshot.erase(snapshot.end() - 5000, snapshot.end());                  // and some gone at the end
  store->save("big", snapshot);
  store->flush();
  std::uint64_t copied = 0;
  for (const auto& line : sink_->last_formatted())
    if (auto at = line.find("wrote room 'big': "); at != std::string::npos && line.find("MiB of it copied") != std::string::npos)
      copied = static_cast<std::uint64_t>(std::stod(line.substr(line.find(", ", at) + 2)) * (1 << 20));
  spdlog::set_level(spdlog::level::info);
  EXPECT_GT(copied, 13u << 20) << "most chunks are the last file's";
  EXPECT_EQ(found(make_directory_store(dir_)->load("big")), snapshot);
  // A damaged file lends nothing: the next write compresses everything again, and is whole.
  {
    std::fstream f(file_of("big"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x55');  // inside the header, whose checksum then fails
  }
  snapshot[100] ^= std::byte{1};
  store->save("big", snapshot);
  store->flush();
  EXPECT_EQ(found(make_directory_store(dir_)->load("big")), snapshot);
}

// A survey hands over each room asleep with its snapshot's first bytes (uncompressed), large and
// small, and leaves out the rooms alive and the files it cannot read.
TEST_F(StateStoreTest, ASurveyShowsTheHeadOfEachRoomAsleep) {
  std::vector<std::byte> big = noise(3 << 20);  // several zstd blocks, none of them small
  {
    auto store = make_directory_store(dir_);
    store->save("big", big);
    store->save("small", bytes_of("tiny"));
    store->save("awake", bytes_of("in use"));
    store->save("damaged", bytes_of("soon damaged"));
    store->flush();
  }
  fs::resize_file(file_of("damaged"), 30);  // cut inside its header
  auto store = make_directory_store(dir_);
  ASSERT_TRUE(found(store->load("awake")));
  std::map<std::string, std::vector<std::byte>> seen;
  store->survey(64, [&](std::string_view room, std::span<const std::byte> head) {
    seen[std::string(room)].assign(head.begin(), head.end());
    return true;
  });
  ASSERT_EQ(seen.size(), 2u) << "rooms asleep and readable only";
  EXPECT_EQ(seen["big"], std::vector<std::byte>(big.begin(), big.begin() + 64));
  EXPECT_EQ(seen["small"], bytes_of("tiny"));
  std::size_t visits = 0;
  store->survey(64, [&](std::string_view, std::span<const std::byte>) { return ++visits < 1; });
  EXPECT_EQ(visits, 1u) << "a visit that returns false ends the survey";
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

// The bounds of the directory: past --state-max-bytes the room asleep that was used least recently
// goes first, its next load finds nothing; a room alive is never evicted, however long unused.
TEST_F(StateStoreTest, TheByteBoundEvictsTheLeastRecentlyUsedRoomAsleepAndNeverOneAlive) {
  // Four files of 10 KiB do not fit; three do.
  auto store = make_directory_store(dir_, {.max_bytes = 35000});
  store->save("alive", noise(10000));  // used first, and never asleep
  tick();
  for (const char* room : {"old", "mid"}) {
    store->save(room, noise(10000));
    store->asleep(room);
    tick();
  }
  store->flush();
  EXPECT_FALSE(logged("removed:")) << "within the bound, nothing goes";
  store->save("new", noise(10000));
  store->flush();
  EXPECT_TRUE(fs::exists(file_of("alive"))) << "a room alive was evicted";
  EXPECT_FALSE(fs::exists(file_of("old"))) << "the least recently used room asleep should go";
  EXPECT_TRUE(fs::exists(file_of("mid")));
  EXPECT_TRUE(fs::exists(file_of("new")));
  EXPECT_TRUE(logged("state directory: room 'old' (9.8 KiB, unused for 0 s) removed: --state-max-bytes 34.2 KiB "
                     "reached (1 evicted so far)"));
  EXPECT_EQ(store->load("old").status, LoadedState::Status::none) << "an evicted room starts afresh";
  // A load wakes a room: "mid" is kept, "new" (asleep since) goes.
  store->asleep("new");
  tick();
  EXPECT_TRUE(found(store->load("mid")));
  store->save("newer", noise(10000));
  store->flush();
  EXPECT_TRUE(fs::exists(file_of("mid"))) << "a room loaded again was evicted";
  EXPECT_FALSE(fs::exists(file_of("new")));
  EXPECT_TRUE(fs::exists(file_of("alive")));
  EXPECT_TRUE(logged("room 'new'"));
  EXPECT_TRUE(logged("(2 evicted so far)"));
}

TEST_F(StateStoreTest, TheRoomBoundEvictsTheLeastRecentlyUsedRoomAsleepAndNeverOneAlive) {
  auto store = make_directory_store(dir_, {.max_rooms = 3});
  store->save("a", bytes_of("a"));
  store->asleep("a");
  tick();
  store->save("alive", bytes_of("alive"));
  tick();
  store->save("c", bytes_of("c"));
  store->asleep("c");
  tick();
  store->flush();
  store->save("d", bytes_of("d"));
  store->flush();
  EXPECT_FALSE(fs::exists(file_of("a")));
  EXPECT_TRUE(logged("state directory: room 'a' (") && logged("removed: --state-max-rooms 3 reached (1 evicted so far)"));
  store->save("e", bytes_of("e"));
  store->flush();
  EXPECT_TRUE(fs::exists(file_of("alive"))) << "a room alive was evicted";
  EXPECT_FALSE(fs::exists(file_of("c")));
  EXPECT_TRUE(fs::exists(file_of("d")));
  EXPECT_TRUE(fs::exists(file_of("e")));
  EXPECT_FALSE(found(store->load("c")));
  EXPECT_EQ(found(store->load("alive")), bytes_of("alive"));
}

// A directory already past its bounds is brought within them as the store starts, the oldest
// files (by modification time) first; a room with a long id (an h- file) is named from its header.
TEST_F(StateStoreTest, ADirectoryOverItsBoundsAtStartLosesItsOldestFilesFirst) {
  const std::string long_id(300, 'q');
  const std::vector<std::string> rooms = {long_id, "b", "c", "d", "e"};  // oldest first
  {
    auto store = make_directory_store(dir_);
    for (const auto& room : rooms) store->save(room, noise(10000));
    store->flush();
  }
  std::ofstream(fs::path(file_of("aside")) += ".unreadable") << "kept for a look";
  const auto now = fs::file_time_type::clock::now();
  for (std::size_t i = 0; i < rooms.size(); ++i)
    fs::last_write_time(file_of(rooms[i]), now - std::chrono::hours(rooms.size() - i));
  {
    auto store = make_directory_store(dir_, {.max_rooms = 3});  // five files: two go at once
    EXPECT_FALSE(fs::exists(file_of(long_id)));
    EXPECT_FALSE(fs::exists(file_of("b")));
    for (const char* room : {"c", "d", "e"}) EXPECT_TRUE(fs::exists(file_of(room))) << room;
    EXPECT_TRUE(logged("state directory: room '" + long_id + "' (10.1 KiB, unused for 5 h) removed: --state-max-rooms 3 "
                       "reached (1 evicted so far)"));
    EXPECT_TRUE(logged("room 'b' (9.8 KiB, unused for 4 h) removed: --state-max-rooms 3 reached (2 evicted so far)"));
    EXPECT_FALSE(found(store->load("b")));
  }
  {
    auto store = make_directory_store(dir_, {.max_bytes = 15000});  // room for one file
    EXPECT_FALSE(fs::exists(file_of("c")));
    EXPECT_FALSE(fs::exists(file_of("d")));
    EXPECT_TRUE(fs::exists(file_of("e")));
    EXPECT_TRUE(logged("room 'd' (9.8 KiB, unused for 2 h) removed: --state-max-bytes 14.6 KiB reached"));
  }
  EXPECT_TRUE(fs::exists(fs::path(file_of("aside")) += ".unreadable")) << "a file set aside is never evicted";
}

// A file whose room's newer snapshot waits to be written (here: it cannot be) is not evicted,
// however long ago its room was used: the write is about to replace it.
TEST_F(StateStoreTest, AFileAPendingWriteWillReplaceIsNeverEvicted) {
  {
    auto store = make_directory_store(dir_);
    store->save("blocked", bytes_of("old"));
    store->flush();
  }
  fs::create_directories(fs::path(file_of("blocked")) += ".tmp");  // its writes fail
  auto store = make_directory_store(dir_, {.max_rooms = 2});
  store->save("blocked", bytes_of("new"));
  store->asleep("blocked");
  tick();
  store->flush();
  ASSERT_TRUE(logged("state directory: cannot create"));
  for (const char* room : {"x", "y"}) {
    store->save(room, bytes_of(room));
    store->asleep(room);
    tick();
    store->flush();
  }
  EXPECT_TRUE(fs::exists(file_of("blocked"))) << "the file a pending write replaces was evicted";
  EXPECT_FALSE(fs::exists(file_of("x")));
  EXPECT_TRUE(fs::exists(file_of("y")));
  EXPECT_EQ(found(store->load("blocked")), bytes_of("new"));
}

// --state-ttl: a room asleep and unused for longer is removed by the writer (it looks every tenth
// of the TTL); one alive is kept however old its file.
TEST_F(StateStoreTest, RoomsAsleepPastTheTtlAreRemoved) {
  {
    auto store = make_directory_store(dir_);
    for (const char* room : {"stale", "alive", "fresh"}) store->save(room, bytes_of(room));
    store->flush();
  }
  const auto now = fs::file_time_type::clock::now();
  fs::last_write_time(file_of("stale"), now - std::chrono::hours(1));
  fs::last_write_time(file_of("alive"), now - std::chrono::hours(1));
  const auto stale_size = fs::file_size(file_of("stale"));
  auto store = make_directory_store(dir_, {.ttl = std::chrono::seconds(1)});
  EXPECT_EQ(found(store->load("alive")), bytes_of("alive"));  // alive from now on
  const auto gone = [&](const char* room, std::chrono::milliseconds within) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (fs::exists(file_of(room)) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return !fs::exists(file_of(room));
  };
  EXPECT_TRUE(gone("stale", std::chrono::milliseconds(500))) << "a room an hour unused outlived a TTL of 1 s";
  const auto said = [&] {  // the line follows the removal on the writer's thread
    const std::string line = fmt::format("state directory: room 'stale' ({} bytes, unused for 1 h) removed: "
                                         "--state-ttl 1 s passed (1 evicted so far)",
                                         stale_size);
    for (int i = 0; i < 100 && !logged(line); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return logged(line);
  };
  EXPECT_TRUE(said());
  EXPECT_TRUE(fs::exists(file_of("fresh"))) << "a file a moment old was removed";
  EXPECT_TRUE(gone("fresh", std::chrono::milliseconds(1500)));
  // "alive" was last used as long ago as "fresh" was written, and more than the TTL by now.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(fs::exists(file_of("alive"))) << "a room alive was removed for its age";
  store->asleep("alive");
  EXPECT_TRUE(gone("alive", std::chrono::milliseconds(1500)));
  EXPECT_FALSE(found(store->load("stale")));
}

// Snapshots the store holds in memory count against the budget until they are written (or
// replaced, removed, dropped): while the directory cannot take one, it stays counted.
TEST_F(StateStoreTest, SnapshotsHeldInMemoryAreChargedToTheBudget) {
  auto budget = std::make_shared<MemoryBudget>(std::uint64_t{1} << 30);
  fs::create_directories(dir_);
  fs::create_directories(fs::path(file_of("blocked")) += ".tmp");
  {
    auto store = make_directory_store(dir_, {.memory = budget});
    store->save("blocked", noise(1000));
    EXPECT_EQ(budget->used(), 1000u);
    store->flush();
    EXPECT_EQ(budget->used(), 1000u) << "a snapshot that could not be written is still in memory";
    const auto newer = noise(3000);
    store->save("blocked", newer);
    EXPECT_EQ(budget->used(), 3000u) << "a snapshot replaced by a newer one is still charged";
    store->save("removed", noise(500));
    store->remove("removed");
    store->flush();
    EXPECT_EQ(budget->used(), 3000u) << "a snapshot removed is still charged";
    fs::remove(fs::path(file_of("blocked")) += ".tmp");
    store->flush();
    EXPECT_EQ(budget->used(), 0u) << "a snapshot written is still charged";
    EXPECT_EQ(found(make_directory_store(dir_)->load("blocked")), newer);
    fs::create_directories(fs::path(file_of("blocked")) += ".tmp");
    store->save("blocked", noise(2000));
    store->flush();
    EXPECT_EQ(budget->used(), 2000u);
  }
  EXPECT_EQ(budget->used(), 0u) << "a snapshot the store dropped as it went is still charged";
}

// `stateroom dev`'s store holds at most max_bytes, dropping the rooms asleep that were used least
// recently; a room alive keeps its snapshot even when it alone passes the bound.
TEST(MemoryStore, HoldsItsBoundDroppingTheLeastRecentlyUsedRoomsAsleep) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(20);
  spdlog::default_logger()->sinks().push_back(sink);
  auto budget = std::make_shared<MemoryBudget>(std::uint64_t{1} << 30);
  auto store = make_memory_store({.max_bytes = 3000, .memory = budget});
  store->save("alive", noise(1000));  // used first, and never asleep
  tick();
  for (const char* room : {"old", "mid"}) {
    store->save(room, noise(1000));
    store->asleep(room);
    tick();
  }
  EXPECT_EQ(budget->used(), 3000u);
  store->save("new", noise(1000));
  EXPECT_FALSE(found(store->load("old"))) << "the least recently used room asleep should go";
  EXPECT_TRUE(found(store->load("alive"))) << "a room alive was dropped";
  EXPECT_EQ(budget->used(), 3000u);
  store->save("huge", noise(5000));  // alone past the bound: kept, and every room asleep goes first
  EXPECT_TRUE(found(store->load("huge")));
  EXPECT_FALSE(found(store->load("mid")));
  EXPECT_TRUE(found(store->load("new")));
  EXPECT_EQ(budget->used(), 7000u);
  store->remove("huge");
  EXPECT_EQ(budget->used(), 2000u);
  bool said = false;
  for (const auto& line : sink->last_formatted())
    said |= line.find("stateroom dev's in-memory store: room 'old' (1000 bytes, unused for 0 s) removed: its 2.9 KiB "
                      "reached (1 evicted so far)") != std::string::npos;
  EXPECT_TRUE(said);
  auto& sinks = spdlog::default_logger()->sinks();
  sinks.erase(std::remove(sinks.begin(), sinks.end(), sink), sinks.end());
  EXPECT_FALSE(found(make_memory_store()->load("x"))) << "callable without options";
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
