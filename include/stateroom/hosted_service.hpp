// HostedService: what a host of services written in another form (the WebAssembly host) adds to
// the Service interface, for the server. A service written in C++ never needs it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "service.hpp"

namespace stateroom {

/// A service whose handlers can pause part-way and finish later, and which takes the messages
/// that arrived together in one go. The WebAssembly host is one: a guest pauses every millisecond
/// of running so that one busy room never holds up the other rooms of its worker thread, and one
/// guest call for a read's messages costs less than one call each.
///
/// The server asks `pending()` after every handler (and every `resume`); while it is true it holds
/// the room's further events back and calls `resume` from its event loop, after the other ready
/// work. Like every handler, these run on the room's thread.
class HostedService : public Service {
 public:
  /// Whether the last handler paused and has not finished yet.
  virtual bool pending() const noexcept = 0;
  /// Continues the paused handler for a while; `ctx` is the room's context, as in the handler.
  virtual void resume(Context& ctx) = 0;
  /// While pending: how long the server should wait before the next `resume` (zero: after the
  /// other ready work). A service held back from running for a while (the WebAssembly host's CPU
  /// share) says so here instead of being resumed to no effect.
  virtual std::chrono::steady_clock::duration resume_delay() const noexcept { return {}; }
  /// The largest client id the service can be told: a room that has handed it out takes no one
  /// new (they are closed with 1013) until it ends. A module interface with signed 32-bit ids
  /// (WebAssembly v1) stops at 2^31 - 1.
  virtual std::uint32_t last_client_id() const noexcept { return UINT32_MAX; }
  /// Service::snapshot in steps, so that a large state never holds up the other rooms of its
  /// thread: appends about `bytes` more of it to `out` (`first`: a new snapshot begins, after
  /// what `out` holds already) and returns true once it is complete (nothing appended in all:
  /// nothing to keep). The server holds the room's events back between the steps of one
  /// snapshot, and may drop an unfinished one. This default takes it in one step.
  virtual bool snapshot_step(std::vector<std::byte>& out, std::size_t /*bytes*/, bool first) {
    if (first) {
      const auto state = snapshot();
      out.insert(out.end(), state.begin(), state.end());
    }
    return true;
  }
  /// Where a restore in steps stands.
  enum class Restoring : std::uint8_t { more, restored, refused };
  /// Service::restore in steps of about `bytes`, `state` the same at each, until it says
  /// `restored` or `refused` (as restore's true and false). The server holds the room's events
  /// back meanwhile. A room that cannot be restored now calls ctx.unavailable (what it returns
  /// then does not matter). This default takes it in one step.
  virtual Restoring restore_step(std::span<const std::byte> state, std::size_t /*bytes*/, Context& ctx) {
    return restore(state, ctx) ? Restoring::restored : Restoring::refused;
  }
  /// Several messages from `sender` that arrived together (one read of its socket), in order.
  /// Returns how many it took: the server delivers the others later, as it does any event that
  /// finds the service pending. This default hands them to `message` one by one and stops at one
  /// that leaves the service pending.
  virtual std::size_t messages(ClientId sender, std::span<const MessagePayload> payloads, Context& ctx) {
    std::size_t taken = 0;
    while (taken < payloads.size()) {
      message(sender, payloads[taken++], ctx);
      if (pending()) break;
    }
    return taken;
  }
};

}  // namespace stateroom
