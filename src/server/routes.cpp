#include "routes.hpp"

#include <cstdint>

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

bool is_valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<std::uint8_t>(s[i]);
    std::size_t extra = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto cc = static_cast<std::uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
    static constexpr std::uint32_t min_for_length[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_for_length[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
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
  if (!is_valid_utf8(*id)) return bad_request("room id is not valid UTF-8");
  return Route{Route::Kind::websocket, std::move(*id), {}};
}

}  // namespace stateroom::server
