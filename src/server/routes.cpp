#include "routes.hpp"

#include "stateroom/codec.hpp"

namespace stateroom::server {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Route bad_request(std::string reason) {
  return Route{Route::Kind::bad_request, {}, std::move(reason)};
}

}  // namespace

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find('?'));
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = hex_value(s[i + 1]);
    const int lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

Route route(std::string_view target, std::string_view default_room) {
  const std::string_view path = path_of(target);
  if (path == "/status") return Route{Route::Kind::status, {}, {}};
  if (path == "/ws") return Route{Route::Kind::websocket, std::string(default_room), {}};
  constexpr std::string_view ws_prefix = "/ws/";
  if (!path.starts_with(ws_prefix)) return Route{};
  const std::string_view raw = path.substr(ws_prefix.size());
  if (raw.find('/') != std::string_view::npos) return Route{};
  if (raw.empty()) return bad_request("empty room id");
  auto id = percent_decode(raw);
  if (!id) return bad_request("malformed percent-encoding in room id");
  if (id->empty()) return bad_request("empty room id");
  if (id->size() > max_room_id_bytes) {
    return bad_request("room id longer than " + std::to_string(max_room_id_bytes) + " bytes");
  }
  if (!codec::is_valid_utf8(*id)) return bad_request("room id is not valid UTF-8");
  return Route{Route::Kind::websocket, std::move(*id), {}};
}

}  // namespace stateroom::server
