// Service: the interface a Stateroom service implements, and the factory that builds one per room.
//
// This header is freestanding: it needs no Boost, no exceptions and no RTTI, so the same service
// source compiles natively and for wasm32-wasi.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "client_id.hpp"
#include "context.hpp"
#include "message_payload.hpp"
#include "message_recipient.hpp"

namespace stateroom {

/// One room's state and its event handlers. Every handler defaults to doing nothing. A room's
/// handlers are called one at a time on one thread, so a service needs no locks.
///
/// Order within a room: `init` runs once, before the first `connect`. A client's `connect` runs
/// before any of its `message`s, and its `disconnect` after the last one; a client receives only
/// messages sent after its `connect` began. `timer` runs when the timer set through
/// Context::set_timer expires.
class Service {
 public:
  virtual ~Service() = default;

  /// The room was created (before the first client's `connect`).
  virtual void init(Context&) {}
  /// `client` joined the room. It already receives messages sent to it from here on.
  virtual void connect(ClientId /*client*/, Context&) {}
  /// `client` left the room (closed, timed out, was too slow, or the server is shutting down).
  /// It no longer receives messages.
  virtual void disconnect(ClientId /*client*/, Context&) {}
  /// `sender` sent `payload` (its kind tells a text frame from a binary one).
  virtual void message(ClientId /*sender*/, const MessagePayload& /*payload*/, Context&) {}
  /// The timer armed with Context::set_timer expired.
  virtual void timer(Context&) {}

  /// Persistence (a server with a state directory, ServerOptions::state_dir): the room's state as
  /// bytes. Called between handlers, never during one: when the room hibernates (empty past its
  /// grace period), when the server shuts down, and every snapshot interval while events happen.
  /// Empty, the default: nothing to keep, and the room starts afresh (with `init`) next time.
  /// The room keeps its own part itself: its next client id and its pending timer.
  virtual std::vector<std::byte> snapshot() { return {}; }
  /// Instead of `init`, for a room that comes back from a snapshot: `state` is what an earlier
  /// snapshot() returned. The clients connected when it was taken are gone: each gets its
  /// `disconnect` right after this. Returns false when `state` cannot be used (the room then
  /// starts afresh with a new service and `init`, and the server says why in its log).
  virtual bool restore(std::span<const std::byte> /*state*/, Context&) { return false; }
};

/// A connection asking to join a room: its WebSocket upgrade request, as the server read it. A
/// view, valid only during ServiceFactory::admit: copy what you keep.
class ConnectionRequest {
 public:
  /// The room it asks for, percent-decoded (the default room for `/ws`).
  virtual std::string_view room_id() const noexcept = 0;
  /// The path of the request target as sent, not decoded: `/ws/lobby`.
  virtual std::string_view path() const noexcept = 0;
  /// The query string after `?` as sent, not decoded (`token=...&user=7`); empty when there is none.
  virtual std::string_view query() const noexcept = 0;
  /// The value of header `name` (any case), the first one when it is repeated; empty when absent.
  virtual std::string_view header(std::string_view name) const noexcept = 0;
  /// The peer's IP address: `203.0.113.7` (IPv4, also when it came over an IPv6 socket) or
  /// `2001:db8::1`. Behind a reverse proxy it is the proxy's.
  virtual std::string_view remote_address() const noexcept = 0;

 protected:
  ~ConnectionRequest() = default;
};

/// What ServiceFactory::admit decides about a connection.
struct Verdict {
  enum class Kind : std::uint8_t {
    accept,        ///< the upgrade goes ahead
    unauthorized,  ///< answered 401: the request does not show who it is from (no or unreadable credentials)
    forbidden,     ///< answered 403: it does, and they may not join this room
  };
  Kind kind = Kind::accept;
  /// A refusal's reason, one line: the body of the response (and the log's).
  std::string reason{};

  static Verdict accept() { return {}; }
  static Verdict unauthorized(std::string reason) { return {Kind::unauthorized, std::move(reason)}; }
  static Verdict forbidden(std::string reason) { return {Kind::forbidden, std::move(reason)}; }
  bool accepted() const noexcept { return kind == Kind::accept; }
};

/// Builds the service of each new room. `create` and `admit` may be called from several threads
/// at once.
class ServiceFactory {
 public:
  virtual ~ServiceFactory() = default;

  /// Whether `request` may join its room, decided before the WebSocket upgrade: a refusal is
  /// answered 401 or 403 with the verdict's reason as the body, the connection is closed, and
  /// nothing of the room runs. Called for every upgrade on the worker thread that read it (not
  /// necessarily the room's), after the server's own checks (the route, the handshake, the
  /// allowed origins and the auth token): it holds up that worker's rooms while it runs, so it
  /// should decide from the request alone. The default accepts every connection.
  virtual Verdict admit(const ConnectionRequest& /*request*/) { return Verdict::accept(); }

  /// Builds the service for room `room_id`. `ctx` is the new room's context (valid only during
  /// this call). Returns nullptr when the service cannot be built, after reporting why through
  /// `ctx.fail(reason)`.
  virtual std::unique_ptr<Service> create(std::string_view room_id, Context& ctx) = 0;

  /// What made the snapshots of its rooms' services: a snapshot made under another identity is
  /// not restored (unless the server is told to keep state across module changes). A WebAssembly
  /// module's is the SHA-256 of its bytes; the default (empty) says nothing, and every snapshot of
  /// the same room id is restored.
  virtual std::string snapshot_identity() const { return {}; }
  /// What the snapshots of its rooms depend on, where another identity may still share it: a
  /// snapshot made under another identity but the same non-empty layout is restored when the
  /// server is told so (`--on-module-change layout`, the default of `stateroom dev`), and when
  /// Server::replace_factory carries running rooms over. A WebAssembly module's covers its static
  /// data, globals and tables, so a rebuild that changed only code keeps its rooms' state. Empty
  /// (the default): identities alone decide.
  virtual std::string snapshot_layout() const { return {}; }
  /// Why a snapshot of one of its rooms' services cannot be restored under this run's limits (a
  /// WebAssembly room's memory larger than --memory-limit allows, say): the server asks at start,
  /// for each room its store keeps, so that the log names the rooms a restart with lower limits
  /// leaves out (their snapshots are kept; each is refused with 1013 until the limits allow it).
  /// `head` is the snapshot's beginning, at most `snapshot_head_bytes`. Nothing (the default): it
  /// fits, or its beginning does not say.
  virtual std::optional<std::string> snapshot_misfit(std::span<const std::byte> /*head*/) const {
    return std::nullopt;
  }
  static constexpr std::size_t snapshot_head_bytes = 64;
};

/// A service type a factory can build: default-constructible, or constructible from
/// `(std::string_view room_id, Context& ctx)` like the original's `new(room_id, ctx)`.
template <class T>
concept ServiceType = std::is_base_of_v<Service, T> &&
    (std::is_constructible_v<T, std::string_view, Context&> || std::is_default_constructible_v<T>);

/// The factory of a service type.
template <ServiceType T>
class ServiceFactoryOf final : public ServiceFactory {
 public:
  std::unique_ptr<Service> create(std::string_view room_id, Context& ctx) override {
    if constexpr (std::is_constructible_v<T, std::string_view, Context&>) {
      return std::make_unique<T>(room_id, ctx);
    } else {
      (void)room_id;
      (void)ctx;
      return std::make_unique<T>();
    }
  }
};

/// A shared factory for service type `T`.
template <ServiceType T>
std::shared_ptr<ServiceFactory> make_factory() {
  return std::make_shared<ServiceFactoryOf<T>>();
}

}  // namespace stateroom

/// Marks `T` as the service of this program or module: one line that does the right thing for the
/// target being compiled. Compiled to WebAssembly it emits the module interface (see the guest SDK);
/// compiled natively it provides the factory that the `stateroom::main` library serves, so linking
/// `stateroom::main` turns the file into a complete server with the standard command line.
#if defined(__wasm__)
#include "guest.hpp"
#define STATEROOM_SERVICE(T) STATEROOM_WASM(T)
#else
namespace stateroom {
/// Defined by STATEROOM_SERVICE; called by the `stateroom::main` library.
std::shared_ptr<ServiceFactory> main_service_factory();
}  // namespace stateroom
#define STATEROOM_SERVICE(T)                                                       \
  std::shared_ptr<::stateroom::ServiceFactory> stateroom::main_service_factory() { \
    return ::stateroom::make_factory<T>();                                         \
  }
#endif
