#include "static_files.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include "routes.hpp"

namespace stateroom::server {

namespace fs = std::filesystem;

namespace {

// Whether `path` is `root` or lies below it; both canonical.
bool is_within(const fs::path& root, const fs::path& path) {
  auto r = root.begin();
  auto p = path.begin();
  for (; r != root.end(); ++r, ++p) {
    if (p == path.end() || *r != *p) return false;
  }
  return true;
}

}  // namespace

StaticLookup resolve_static(const fs::path& root, std::string_view url_path) {
  auto decoded = percent_decode(url_path);
  if (!decoded || decoded->find('\0') != std::string::npos) {
    return {StaticLookup::Kind::bad_request, {}, {}};
  }
  // Build the relative path segment by segment; `..` never takes part, whatever its encoding.
  fs::path relative;
  std::string_view rest = *decoded;
  while (!rest.empty()) {
    const auto slash = rest.find('/');
    const std::string_view segment = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (segment.empty() || segment == ".") continue;
    if (segment == ".." || segment.find('\\') != std::string_view::npos) {
      return {StaticLookup::Kind::forbidden, {}, {}};
    }
    relative /= fs::path(std::string(segment));
  }

  std::error_code ec;
  const fs::path canonical_root = fs::canonical(root, ec);
  if (ec) return {StaticLookup::Kind::not_found, {}, {}};
  fs::path target = fs::weakly_canonical(canonical_root / relative, ec);
  if (ec) return {StaticLookup::Kind::not_found, {}, {}};
  if (!is_within(canonical_root, target)) return {StaticLookup::Kind::forbidden, {}, {}};

  if (fs::is_directory(target, ec)) {
    if (!decoded->empty() && decoded->back() != '/') {
      // The location must stay a path on this server: one that starts with "//" is a
      // network-path reference (`//sub/` is the host `sub`), so leading slashes collapse to one.
      std::string_view path = url_path;
      while (path.starts_with("//")) path.remove_prefix(1);
      return {StaticLookup::Kind::redirect, {}, std::string(path) + "/"};
    }
    target = fs::weakly_canonical(target / "index.html", ec);
    if (ec || !is_within(canonical_root, target)) return {StaticLookup::Kind::forbidden, {}, {}};
  }
  if (!fs::is_regular_file(target, ec)) return {StaticLookup::Kind::not_found, {}, {}};
  return {StaticLookup::Kind::file, std::move(target), {}};
}

std::string_view mime_type(std::string_view filename) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 30> types{{
      {".html", "text/html; charset=utf-8"},
      {".htm", "text/html; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".json", "application/json"},
      {".map", "application/json"},
      {".wasm", "application/wasm"},
      {".txt", "text/plain; charset=utf-8"},
      {".md", "text/markdown; charset=utf-8"},
      {".csv", "text/csv; charset=utf-8"},
      {".xml", "application/xml"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".webp", "image/webp"},
      {".avif", "image/avif"},
      {".ico", "image/vnd.microsoft.icon"},
      {".pdf", "application/pdf"},
      {".woff", "font/woff"},
      {".woff2", "font/woff2"},
      {".ttf", "font/ttf"},
      {".otf", "font/otf"},
      {".mp3", "audio/mpeg"},
      {".ogg", "audio/ogg"},
      {".wav", "audio/wav"},
      {".mp4", "video/mp4"},
      {".webm", "video/webm"},
  }};
  const auto dot = filename.rfind('.');
  if (dot == std::string_view::npos) return "application/octet-stream";
  std::string ext(filename.substr(dot));
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const auto& [e, type] : types) {
    if (e == ext) return type;
  }
  return "application/octet-stream";
}

}  // namespace stateroom::server
