// Routing of request targets: which endpoint a path names, and room ids.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace stateroom::server {

/// Longest room id accepted, in bytes after percent-decoding.
inline constexpr std::size_t max_room_id_bytes = 256;

/// What a request target names.
struct Route {
  enum class Kind { status, websocket, other, bad_request };
  Kind kind = Kind::other;
  std::string room_id;  ///< Kind::websocket: the decoded room id
  std::string reason;   ///< Kind::bad_request: one line saying why
};

/// Routes `target` (path and optional query): `/status`, `/ws` (the default room) and
/// `/ws/{room_id}`. A `/ws/...` target whose id is empty, badly encoded, too long or not UTF-8 is
/// a bad request; one with more segments (`/ws/a/b`) is `other`.
Route route(std::string_view target, std::string_view default_room);

/// Decodes %XX escapes. Returns nothing for a malformed escape. `+` is kept as it is.
std::optional<std::string> percent_decode(std::string_view s);

/// `target` without its query string.
std::string_view path_of(std::string_view target);

}  // namespace stateroom::server
