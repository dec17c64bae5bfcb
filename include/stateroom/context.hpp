// Context: what a service can do to the world, handed to every handler.
#pragma once

#include <cstdint>
#include <string_view>

#include "message_payload.hpp"
#include "message_recipient.hpp"

namespace stateroom {

/// The room a handler runs in, as seen by its service. A context is only valid during the handler
/// call that received it (and, for the service constructor, during construction); it must not be
/// stored or used from another thread.
class Context {
 public:
  /// Queues `payload` for `to`. Text payloads go out as text frames and binary ones as binary
  /// frames. Recipients receive the room's sends in the order the service made them. A message to
  /// a client id that is not connected is dropped. The bytes are taken before `send` returns, so
  /// `payload` may be a view of anything alive during the call (the message being handled, too).
  /// Never blocks: a client whose queue overflows is disconnected (see
  /// ServerOptions::max_queued_bytes).
  virtual void send(MessageRecipient to, const MessagePayload& payload) = 0;

  /// Arms the room's one timer to call Service::timer after `ms` milliseconds. A new call replaces
  /// a pending timer; `0` fires as soon as possible (it does not cancel).
  virtual void set_timer(std::uint32_t ms) = 0;

  /// Ends the room after the current handler returns: every client is closed with WebSocket code
  /// 1011 and the service is destroyed. The next connect to the room id starts a fresh service.
  /// For a service that finds its state unusable; `reason` goes to the server log.
  virtual void fail(std::string_view reason) = 0;

  /// Like fail(), for a room that cannot run now for want of something all rooms share (memory,
  /// instance slots) rather than for a fault of its own: its clients are closed with 1013 (try
  /// again later) instead of 1011. A factory's `create` refusing a room for that reason calls it.
  virtual void unavailable(std::string_view reason) { fail(reason); }

 protected:
  Context() = default;
  Context(const Context&) = default;
  Context& operator=(const Context&) = default;
  ~Context() = default;
};

}  // namespace stateroom
