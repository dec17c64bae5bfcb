// Static path resolution, MIME types, and the file thread that reads static files.
#include "../../src/server/static_files.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <fstream>
#include <thread>

#include "../../src/server/file_reader.hpp"

namespace stateroom::server {
namespace {

namespace fs = std::filesystem;

class StaticFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() / ("stateroom-static-" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::create_directories(root / "www/sub");
    std::ofstream(root / "www/index.html") << "i";
    std::ofstream(root / "www/sub/index.html") << "s";
    std::ofstream(root / "www/a b.txt") << "a";
    std::ofstream(root / "outside.txt") << "o";
    fs::create_symlink(root / "outside.txt", root / "www/out.txt");
    fs::create_symlink(root / "www/a b.txt", root / "www/in.txt");
  }
  void TearDown() override { fs::remove_all(root); }
  StaticLookup get(std::string_view p) { return resolve_static(root / "www", p); }
  fs::path root;
};

TEST_F(StaticFiles, Resolves) {
  EXPECT_EQ(get("/").kind, StaticLookup::Kind::file);
  EXPECT_EQ(get("/").path.filename(), "index.html");
  EXPECT_EQ(get("/a%20b.txt").kind, StaticLookup::Kind::file);
  EXPECT_EQ(get("/sub/").path, fs::canonical(root / "www/sub/index.html"));
  EXPECT_EQ(get("/sub").kind, StaticLookup::Kind::redirect);
  EXPECT_EQ(get("/sub").location, "/sub/");
  EXPECT_EQ(get("/in.txt").kind, StaticLookup::Kind::file) << "a symlink inside the root is fine";
  EXPECT_EQ(get("/nope").kind, StaticLookup::Kind::not_found);
  EXPECT_EQ(get("//sub//./index.html").kind, StaticLookup::Kind::file);
}

TEST_F(StaticFiles, RefusesEscapes) {
  for (std::string_view p : {"/../outside.txt", "/%2e%2e/outside.txt", "/sub/../../outside.txt", "/out.txt",
                             "/..%2foutside.txt", "/sub/..\\..\\outside.txt"}) {
    EXPECT_EQ(get(p).kind, StaticLookup::Kind::forbidden) << p;
  }
  EXPECT_EQ(get("/x%00y").kind, StaticLookup::Kind::bad_request);
  EXPECT_EQ(get("/%").kind, StaticLookup::Kind::bad_request);
}

TEST_F(StaticFiles, ADirectoryRedirectStaysOnThisServer) {
  // `//sub` once redirected to `//sub/`, which a browser reads as the host `sub` (found by the
  // http_route fuzz target).
  for (std::string_view p : {"//sub", "///sub", "//.", "//./sub"}) {
    const StaticLookup found = get(p);
    EXPECT_EQ(found.kind, StaticLookup::Kind::redirect) << p;
    EXPECT_TRUE(found.location.starts_with("/") && !found.location.starts_with("//")) << p << " -> " << found.location;
  }
  EXPECT_EQ(get("//sub").location, "/sub/");
  EXPECT_EQ(get("///sub").location, "/sub/");
  EXPECT_EQ(get("//sub//.").location, "/sub//./");
}

/// The answers of a FileReader, run on the test's thread as a worker's would be.
struct Answers {
  boost::asio::io_context ioc;
  /// Runs answers until `done()` holds.
  template <class Done>
  void run_until(Done done) {
    while (!done()) {
      ioc.run_one();
      ioc.restart();
    }
  }
};

std::string pattern(std::size_t size) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

TEST_F(StaticFiles, TheFileThreadOpensAndReadsAFileInPiecesAndAnswersOnTheCallersExecutor) {
  const std::string content = pattern(2 * FileReader::piece_size + 12345);
  std::ofstream(root / "www/big.bin", std::ios::binary) << content;
  FileReader files;
  Answers answers;
  std::shared_ptr<OpenedFile> opened;
  std::thread::id answered_on;
  files.open((root / "www").string(), "/big.bin", answers.ioc.get_executor(), [&](std::shared_ptr<OpenedFile> f) {
    answered_on = std::this_thread::get_id();
    opened = std::move(f);
  });
  EXPECT_FALSE(opened) << "open answers later, never from inside the call";
  answers.run_until([&] { return opened != nullptr; });
  EXPECT_EQ(answered_on, std::this_thread::get_id());
  ASSERT_EQ(opened->lookup.kind, StaticLookup::Kind::file);
  EXPECT_EQ(opened->error, "");
  EXPECT_EQ(opened->size, content.size());
  ASSERT_EQ(opened->piece.size(), FileReader::piece_size);
  std::string got = opened->piece;
  while (got.size() < content.size()) {
    bool answered = false;
    files.read(opened, got.size(), answers.ioc.get_executor(), [&](std::string piece, std::string error) {
      EXPECT_EQ(error, "");
      got += piece;
      answered = true;
    });
    answers.run_until([&] { return answered; });
    if (HasFailure()) return;
  }
  EXPECT_EQ(got, content);
}

TEST_F(StaticFiles, TheFileThreadReportsWhatIsNotAFileAndAFileThatShrinks) {
  FileReader files;
  Answers answers;
  std::vector<std::shared_ptr<OpenedFile>> opened;
  for (const char* path : {"/missing", "/sub", "/../outside.txt", "/index.html"}) {
    files.open((root / "www").string(), path, answers.ioc.get_executor(),
               [&](std::shared_ptr<OpenedFile> f) { opened.push_back(std::move(f)); });
  }
  answers.run_until([&] { return opened.size() == 4; });
  EXPECT_EQ(opened[0]->lookup.kind, StaticLookup::Kind::not_found);
  EXPECT_EQ(opened[1]->lookup.kind, StaticLookup::Kind::redirect);
  EXPECT_EQ(opened[1]->lookup.location, "/sub/");
  EXPECT_EQ(opened[2]->lookup.kind, StaticLookup::Kind::forbidden);
  EXPECT_EQ(opened[3]->lookup.kind, StaticLookup::Kind::file);
  EXPECT_EQ(opened[3]->piece, "i");
  EXPECT_EQ(opened[3]->fd, -1) << "a file read whole at once is closed at once";

  // A file cut short while it is being served: the next piece reports it.
  std::ofstream(root / "www/shrinks.bin", std::ios::binary) << pattern(FileReader::piece_size + 100);
  std::shared_ptr<OpenedFile> file;
  files.open((root / "www").string(), "/shrinks.bin", answers.ioc.get_executor(),
             [&](std::shared_ptr<OpenedFile> f) { file = std::move(f); });
  answers.run_until([&] { return file != nullptr; });
  ASSERT_EQ(file->error, "");
  ASSERT_GE(file->fd, 0);
  fs::resize_file(root / "www/shrinks.bin", FileReader::piece_size);
  std::optional<std::string> error;
  files.read(file, file->piece.size(), answers.ioc.get_executor(),
             [&](std::string, std::string e) { error = std::move(e); });
  answers.run_until([&] { return error.has_value(); });
  EXPECT_EQ(*error, "the file shrank while it was being served");
}

TEST(MimeTypes, ByExtension) {
  EXPECT_EQ(mime_type("index.HTML"), "text/html; charset=utf-8");
  EXPECT_EQ(mime_type("x.wasm"), "application/wasm");
  EXPECT_EQ(mime_type("x.svg"), "image/svg+xml");
  EXPECT_EQ(mime_type("README"), "application/octet-stream");
  EXPECT_EQ(mime_type("x.unknown"), "application/octet-stream");
}

}  // namespace
}  // namespace stateroom::server
