// Static file serving: resolving a URL path inside a root directory, safely, and MIME types.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace stateroom::server {

/// The outcome of resolving a URL path against a static root.
struct StaticLookup {
  enum class Kind {
    file,        ///< `path` is a regular file inside the root
    redirect,    ///< a directory named without its trailing slash: redirect to `location` (below the mount)
    not_found,   ///< nothing there
    forbidden,   ///< the path tries to leave the root (`..`, encoded variants, symlinks out)
    bad_request  ///< malformed percent-encoding or a NUL byte
  };
  Kind kind = Kind::not_found;
  std::filesystem::path path;
  std::string location;
};

/// Resolves `url_path` (already stripped of its mount prefix and query; percent-encoded) inside
/// `root`. Directories resolve to their index.html. Anything that would land outside the
/// canonical root, through `..` segments or symlinks, is forbidden.
StaticLookup resolve_static(const std::filesystem::path& root, std::string_view url_path);

/// The Content-Type for a file name, by extension; `application/octet-stream` when unknown.
std::string_view mime_type(std::string_view filename);

}  // namespace stateroom::server
