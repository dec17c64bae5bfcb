// Static path resolution and MIME types.
#include "../../src/server/static_files.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

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

TEST(MimeTypes, ByExtension) {
  EXPECT_EQ(mime_type("index.HTML"), "text/html; charset=utf-8");
  EXPECT_EQ(mime_type("x.wasm"), "application/wasm");
  EXPECT_EQ(mime_type("x.svg"), "image/svg+xml");
  EXPECT_EQ(mime_type("README"), "application/octet-stream");
  EXPECT_EQ(mime_type("x.unknown"), "application/octet-stream");
}

}  // namespace
}  // namespace stateroom::server
