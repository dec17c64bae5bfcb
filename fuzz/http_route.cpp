// http_route: what the server does with a request's target before any room or file is touched
// (src/server/routes.hpp, static_files.hpp, protocol/handshake.hpp), the input being the target.
//   route(): /status, /ws (the default room), /ws/{id}: an id is non-empty, at most 256 bytes, valid
//     UTF-8 and the percent-decoding of its segment; anything else under /ws/ with one segment is a
//     bad request with a reason, and other paths are `other`.
//   path_of() and percent_decode() against a reference decoder, and a round trip of every byte
//     percent-encoded.
//   resolve_static() on the path, as the server serves a static directory at /, in a fixture
//     directory with files, a directory without index.html, and symlinks inside and out of the
//     root: a file found is a regular file below the canonical root and never one outside it
//     (through `..`, encodings or symlinks); a path with a `..` segment is forbidden; a redirect
//     adds a slash to a directory's path and stays on this server (its location does not start
//     with `//`, which a browser reads as another host).
//   is_valid_client_key() on the target's first 24 bytes against a reference (22 base64 characters
//     and "=="), and mime_type() of its last segment.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "common.hpp"
#include "protocol/handshake.hpp"
#include "server/routes.hpp"
#include "server/static_files.hpp"

using namespace stateroom;
using namespace stateroom::server;
namespace fs = std::filesystem;

namespace {

fs::path fixture;       // the temporary directory holding the two below
fs::path root;          // the static root: fixture/www, canonical
fs::path outside;       // fixture/outside: never served

void remove_fixture() {
  std::error_code ec;
  fs::remove_all(fixture, ec);
}

void make_fixture() {
  fixture = fuzz::scratch_directory() / ("stateroom-fuzz-http-" + std::to_string(::getpid()));
  fs::remove_all(fixture);
  fs::create_directories(fixture / "www/sub/deeper");
  fs::create_directories(fixture / "www/empty");
  fs::create_directories(fixture / "outside/dir");
  std::ofstream(fixture / "www/index.html") << "index";
  std::ofstream(fixture / "www/a.txt") << "a";
  std::ofstream(fixture / "www/a b.txt") << "a b";
  std::ofstream(fixture / "www/%41.txt") << "percent";
  std::ofstream(fixture / "www/sub/index.html") << "sub";
  std::ofstream(fixture / "www/sub/page.css") << "css";
  std::ofstream(fixture / "www/sub/deeper/x.js") << "js";
  std::ofstream(fixture / "outside/secret.txt") << "secret";
  std::ofstream(fixture / "outside/dir/index.html") << "secret index";
  fs::create_symlink("../outside/secret.txt", fixture / "www/link_secret");
  fs::create_symlink("../outside/dir", fixture / "www/link_dir");
  fs::create_symlink("../outside", fixture / "www/link_out");
  fs::create_symlink("sub", fixture / "www/link_in");
  fs::create_symlink("../../a.txt", fixture / "www/sub/deeper/up.txt");
  fs::create_symlink("/", fixture / "www/link_root");
  root = fs::canonical(fixture / "www");
  outside = fs::canonical(fixture / "outside");
  std::atexit(remove_fixture);
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// RFC 3986 percent-decoding: "%" and two hex digits is a byte; a "%" without them is malformed.
std::optional<std::string> reference_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    if (s[i] != '%') {
      out += s[i++];
      continue;
    }
    if (s.size() - i < 3 || hex(s[i + 1]) < 0 || hex(s[i + 2]) < 0) return std::nullopt;
    out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
    i += 3;
  }
  return out;
}

bool has_dotdot_segment(std::string_view path) {
  while (true) {
    const auto slash = path.find('/');
    if (path.substr(0, slash) == "..") return true;
    if (slash == std::string_view::npos) return false;
    path.remove_prefix(slash + 1);
  }
}

bool below(const fs::path& dir, const fs::path& p) {
  const std::string d = dir.string() + "/", s = p.string();
  return s == dir.string() || s.starts_with(d);
}

void check_route(std::string_view target) {
  const std::string_view path = path_of(target);
  FUZZ_CHECK(target.starts_with(path));
  FUZZ_CHECK(path.find('?') == std::string_view::npos);
  FUZZ_CHECK(path.size() == target.size() || target[path.size()] == '?');

  const Route r = route(target, "the-default");
  if (path == "/status") {
    FUZZ_CHECK(r.kind == Route::Kind::status);
    return;
  }
  if (path == "/ws") {
    FUZZ_CHECK(r.kind == Route::Kind::websocket && r.room_id == "the-default");
    return;
  }
  if (!path.starts_with("/ws/") || path.substr(4).find('/') != std::string_view::npos) {
    FUZZ_CHECK(r.kind == Route::Kind::other);
    return;
  }
  const std::string_view raw = path.substr(4);
  const auto id = reference_decode(raw);
  const bool good = id && !id->empty() && id->size() <= max_room_id_bytes && fuzz::reference_utf8(*id);
  if (good) {
    FUZZ_CHECK(r.kind == Route::Kind::websocket);
    FUZZ_CHECK(r.room_id == *id);
  } else {
    FUZZ_CHECK(r.kind == Route::Kind::bad_request);
    FUZZ_CHECK(!r.reason.empty());
  }
}

void check_decode(std::string_view s) {
  FUZZ_CHECK(percent_decode(s) == reference_decode(s));
  static const char digits[] = "0123456789ABCDEF";
  std::string encoded;
  for (unsigned char c : s) {
    encoded += '%';
    encoded += digits[c >> 4];
    encoded += (c & 1) ? static_cast<char>(std::tolower(digits[c & 15])) : digits[c & 15];
  }
  FUZZ_CHECK(percent_decode(encoded) == std::string(s));
}

void check_static(std::string_view url_path) {
  const StaticLookup found = resolve_static(fixture / "www", url_path);
  const auto decoded = reference_decode(url_path);
  if (!decoded || decoded->find('\0') != std::string::npos) {
    FUZZ_CHECK(found.kind == StaticLookup::Kind::bad_request);
    return;
  }
  FUZZ_CHECK(found.kind != StaticLookup::Kind::bad_request);
  if (has_dotdot_segment(*decoded)) FUZZ_CHECK(found.kind == StaticLookup::Kind::forbidden);
  switch (found.kind) {
    case StaticLookup::Kind::file: {
      std::error_code ec;
      FUZZ_CHECK(fs::is_regular_file(found.path, ec));
      FUZZ_CHECK(fs::canonical(found.path, ec) == found.path);
      FUZZ_CHECK(below(root, found.path));
      FUZZ_CHECK(!below(outside, found.path));
      break;
    }
    case StaticLookup::Kind::redirect: {
      FUZZ_CHECK(!decoded->empty() && decoded->back() != '/');
      FUZZ_CHECK(found.location.ends_with("/"));
      FUZZ_CHECK(!found.location.starts_with("//"));
      // What the redirect leads to is the same directory, which then serves its index (or nothing).
      const StaticLookup then = resolve_static(fixture / "www", found.location);
      FUZZ_CHECK(then.kind == StaticLookup::Kind::file || then.kind == StaticLookup::Kind::not_found ||
                 then.kind == StaticLookup::Kind::forbidden);
      break;
    }
    case StaticLookup::Kind::not_found:
    case StaticLookup::Kind::forbidden:
    case StaticLookup::Kind::bad_request:
      break;
  }
  FUZZ_CHECK(!server::mime_type(url_path.substr(url_path.rfind('/') + 1)).empty());
}

bool is_base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

void check_key(std::string_view key) {
  bool expected = key.size() == 24 && key[22] == '=' && key[23] == '=';
  for (std::size_t i = 0; expected && i < 22; ++i) expected = is_base64_char(key[i]);
  FUZZ_CHECK(protocol::is_valid_client_key(key) == expected);
  if (expected) FUZZ_CHECK(protocol::accept_key(key).size() == 28);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  make_fixture();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view target(reinterpret_cast<const char*>(data), size);
  check_route(target);
  check_decode(target);
  check_static(path_of(target));
  check_key(target.substr(0, 24));
  return 0;
}
