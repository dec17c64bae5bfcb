// ClientId: the identity of one client within one room.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace stateroom {

/// Identifies a client within a room. Ids are per room, start at 1 and are never reused in that
/// room, so a service may keep them as keys after the client has left.
struct ClientId {
  std::uint32_t value = 0;

  constexpr ClientId() = default;
  constexpr explicit ClientId(std::uint32_t v) : value(v) {}

  friend constexpr bool operator==(ClientId, ClientId) = default;
  friend constexpr auto operator<=>(ClientId, ClientId) = default;
};

/// Formats an id the way the original Stateroom's `{:?}` does: `ClientId(7)`.
inline std::string to_string(ClientId id) {
  return "ClientId(" + std::to_string(id.value) + ")";
}

/// Streams `ClientId(7)` into any output stream, without making this header include <ostream>.
template <class Stream>
auto operator<<(Stream& os, ClientId id) -> decltype(os << std::uint32_t{}) {
  return os << "ClientId(" << id.value << ")";
}

}  // namespace stateroom

template <>
struct std::hash<stateroom::ClientId> {
  std::size_t operator()(stateroom::ClientId id) const noexcept {
    return std::hash<std::uint32_t>{}(id.value);
  }
};
