// MessageRecipient: who a message from a service goes to.
#pragma once

#include <cstdint>

#include "client_id.hpp"

namespace stateroom {

/// Who receives a message a service sends: everyone in the room, one client, or everyone but one.
/// A bare ClientId converts to "that client".
struct MessageRecipient {
  enum class Kind : std::uint8_t { broadcast = 0, client = 1, everyone_except = 2 };

  Kind kind = Kind::broadcast;
  ClientId id{};  ///< the client (Kind::client) or the one left out (Kind::everyone_except)

  constexpr MessageRecipient() = default;
  constexpr MessageRecipient(Kind k, ClientId c) : kind(k), id(c) {}
  constexpr MessageRecipient(ClientId c) : kind(Kind::client), id(c) {}

  /// Whether a client with id `c` receives a message sent to this recipient.
  constexpr bool includes(ClientId c) const noexcept {
    switch (kind) {
      case Kind::broadcast:
        return true;
      case Kind::client:
        return c == id;
      case Kind::everyone_except:
        return c != id;
    }
    return false;
  }

  friend constexpr bool operator==(MessageRecipient, MessageRecipient) = default;
};

/// Every client in the room.
constexpr MessageRecipient broadcast() noexcept {
  return {};
}
/// One client.
constexpr MessageRecipient client(ClientId id) noexcept {
  return {MessageRecipient::Kind::client, id};
}
/// Every client in the room except `id` (typically the sender).
constexpr MessageRecipient everyone_except(ClientId id) noexcept {
  return {MessageRecipient::Kind::everyone_except, id};
}

}  // namespace stateroom
