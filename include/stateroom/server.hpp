// Server: the HTTP + WebSocket server that hosts the rooms of one service factory.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "service.hpp"
#include "memory_budget.hpp"
#include "state_store.hpp"

namespace stateroom {

/// How long an empty room is kept before it is destroyed.
struct RoomGrace {
  /// `nullopt`: never destroy an empty room.
  std::optional<std::chrono::milliseconds> delay = std::chrono::seconds(300);

  static RoomGrace never() { return {std::nullopt}; }
  static RoomGrace immediate() { return {std::chrono::milliseconds(0)}; }
  static RoomGrace after(std::chrono::milliseconds d) { return {d}; }

  friend bool operator==(const RoomGrace&, const RoomGrace&) = default;
};

/// Everything a server can be told. Every field has a default suited to production.
struct ServerOptions {
  std::string host = "0.0.0.0";          ///< address to listen on ("::" for every IPv6 address)
  std::uint16_t port = 8080;             ///< 0 picks a free port (see Server::port)
  unsigned threads = 0;                  ///< worker threads; 0 = one per core
  std::string default_room = "default";  ///< the room `GET /ws` joins
  RoomGrace room_grace{};                ///< 300 s by default, so a page reload finds its room again
  /// Largest message a client may send; a larger one closes the client with 1009.
  std::size_t max_message_bytes = 1 << 20;
  /// Bytes queued for one client beyond which it is closed with 1008 (a reader too slow for the
  /// room); the room never blocks on a slow reader. Every message counts, the first one too, with
  /// its frame header and 16 bytes of bookkeeping, so a flood of empty messages is bounded like a
  /// flood of large ones. Larger than `max_message_bytes`, so that an echo of the largest message
  /// fits.
  std::size_t max_queued_bytes = 4 << 20;
  /// Largest message a room may send. A room that sends a larger one fails (its clients are closed
  /// with 1011 and the reason is logged) rather than have every recipient closed for a message
  /// that cannot be delivered. 0: as large as an empty send queue holds (`max_queued_bytes` less
  /// the frame's header and bookkeeping); a larger value than that is refused at start.
  std::size_t max_send_bytes = 0;
  /// Bytes of messages a room holds while its service is busy (a WebAssembly guest paused part-way
  /// through a long handler). Past it, the clients sending more stop being read until the room has
  /// worked through half of it: TCP then slows the senders down, and nothing is dropped.
  std::size_t max_room_queue_bytes = 4 << 20;
  /// A client whose socket takes no bytes for this long while data waits for it is dropped.
  std::chrono::milliseconds write_timeout = std::chrono::seconds(30);
  /// A client that has sent nothing for this long gets a ping.
  std::chrono::milliseconds ping_interval = std::chrono::seconds(30);
  /// A client that has sent nothing (not even a pong) for this long is closed.
  std::chrono::milliseconds idle_timeout = std::chrono::seconds(120);
  /// Time an HTTP request (the WebSocket upgrade too) may take to arrive once its first byte has:
  /// a client trickling its headers holds its connection this long at most. Between requests a
  /// kept-alive connection may stay silent for 30 s.
  std::chrono::milliseconds request_timeout = std::chrono::seconds(10);
  /// How long a close handshake (and a graceful shutdown) may take before the socket is dropped.
  std::chrono::milliseconds close_timeout = std::chrono::seconds(5);
  /// Connections open at once (HTTP and WebSocket); past it a new connection is answered 503 and
  /// closed. 0: derived from the descriptor limit, which the server raises to its hard limit when
  /// it starts (90 % of it, keeping at least 32 descriptors for everything else).
  std::size_t max_connections = 0;
  /// Connections open at once from one IP address; 0 = no limit. Loopback clients (a proxy in
  /// front, a load generator) are not counted against it.
  std::size_t max_connections_per_ip = 1000;
  /// Rooms alive at once, across every worker; a client whose room would be one more is closed with
  /// 1013 (try again later). For WebAssembly rooms it is also the number of instances.
  std::size_t max_rooms = 1000;
  /// Rooms alive that clients from one IP address created; past it such a client is closed with
  /// 1013 (loopback clients, a proxy in front, are not counted). 0 = no limit.
  std::size_t max_rooms_per_ip = 100;
  /// New rooms one IP address may create per second (bursts of twice as many); past it its client
  /// is closed with 1013. 0 = no limit. Loopback clients are not counted against it.
  std::uint32_t max_new_rooms_per_ip = 20;
  /// permessage-deflate (RFC 7692) with the clients that offer it. Off by default: compression
  /// costs CPU per message, and pays off for large, repetitive messages (JSON state) on slow links.
  /// The server compresses each of its messages on its own, once per broadcast however many
  /// recipients; a client may keep its context between messages (its decompressor then costs the
  /// connection 2^compression_window_bits bytes plus about 7 KiB). An inflated message counts
  /// against `max_message_bytes`, so a small compressed message cannot grow past it.
  bool compression = false;
  /// The LZ77 window of compressed messages in both directions, 9 to 15 bits (512 B to 32 KiB).
  int compression_window_bits = 15;
  /// Messages shorter than this are sent uncompressed (compressing them gains little); so is any
  /// message that compression would not make smaller.
  std::size_t compression_threshold = 256;
  /// Bytes per second the compressed messages of one remote address's clients may inflate to
  /// together, on average (an IPv6 address: its /64; a loopback client: each connection on its
  /// own); bursts up to a second's worth, or one largest message when that is more; 0 = no bound.
  /// A client past it is closed with 1008 and one log line: a small message that inflates to
  /// `max_message_bytes` costs milliseconds of a core, so this bounds what one address's deflate
  /// bombs cost, however many connections it opens (16 MiB a second: a few percent of a core).
  std::size_t max_inflate_rate = 16 << 20;
  /// Files served at `/` (directories serve their index.html); empty = none.
  std::string static_dir{};
  /// Files served at `/client`; empty = none.
  std::string client_dir{};
  /// Origins whose pages may connect, as browsers send them in the `Origin` header:
  /// `https://example.com`, `http://localhost:8080` (scheme and host in any case, a default port
  /// or not), or `*` for any. An upgrade with another Origin is answered 403. One without an
  /// Origin header is let through: browsers always send it, and a program that is not a browser
  /// could send any (the check keeps other sites' pages out; a token keeps strangers out).
  /// Empty: no check.
  std::vector<std::string> allowed_origins{};
  /// The key of the HMAC-SHA256 tokens every upgrade must then carry, in `?token=` or an
  /// `Authorization: Bearer` header (the format: docs/auth.md): none or a malformed one is
  /// answered 401; a bad signature, an expired token or one for another room, 403. At least 16
  /// bytes (32 random ones are best). Empty: no token needed.
  std::string auth_token_secret{};

  /// Persistence: the directory where rooms' snapshots are kept (one file per room, see
  /// make_directory_store). A room is snapshotted when it hibernates (empty past its grace
  /// period: its service is dropped, its snapshot kept, and the next connect brings it back with
  /// `connect`, not `init`), when the server stops, and every `snapshot_interval` while events
  /// happen in it. Only services that snapshot (Service::snapshot; every WebAssembly module but
  /// those Module::persistence_problem names) are kept. Empty: nothing is kept (unless `state_store` is set).
  std::string state_dir{};
  /// The bytes `state_dir`'s files may take together (compressed, as stored). Past it, the
  /// snapshots of the rooms that are not alive and were used least recently are removed (one log
  /// line each) until the files are within it; such a room starts afresh at its next connect.
  /// 4 GiB by default, sized to a small deployment.
  std::uint64_t state_max_bytes = std::uint64_t{4} << 30;
  /// The rooms (files) `state_dir` may hold; past it, the same. 100,000 by default.
  std::size_t state_max_rooms = 100000;
  /// A room not alive and not used for longer than this loses its snapshot (checked every tenth of
  /// it, at least once a minute); 0, the default: snapshots are kept however old.
  std::chrono::seconds state_ttl{0};
  /// A store of your own instead of `state_dir`'s (another process's, a database).
  std::shared_ptr<StateStore> state_store{};
  /// How often a room with events since its last snapshot is snapshotted again (what a crash
  /// can lose at most); 0: only when it hibernates and when the server stops.
  std::chrono::milliseconds snapshot_interval{30000};
  /// A snapshot made by another module (ServiceFactory::snapshot_identity) than the one serving
  /// now: `fresh` starts its room afresh (with a log line saying so); `layout` restores it when
  /// the module has the same data layout (ServiceFactory::snapshot_layout: a rebuild that changed
  /// only code), else starts afresh; `keep` restores it anyway.
  enum class OnModuleChange : std::uint8_t { fresh, layout, keep };
  OnModuleChange on_module_change = OnModuleChange::fresh;
  /// What the rooms' snapshots count against while they are held in memory (being taken, read
  /// back, or waiting for the store to write them): give it the WebAssembly engine's
  /// (wasm::Engine::memory_budget) so that snapshots and instances share one bound. A periodic
  /// snapshot that does not fit waits for the next interval; a room whose snapshot does not fit
  /// as it hibernates stays alive (a WebAssembly room exchanges its instance for its snapshot, and
  /// always may). Null: a budget of half the machine's memory, for the snapshots alone.
  std::shared_ptr<MemoryBudget> memory_budget{};
};

/// Whether `entry` can stand in ServerOptions::allowed_origins: `*`, or `scheme://host[:port]`
/// with no path.
bool is_origin_entry(std::string_view entry) noexcept;

/// Why a call failed, when it did.
class [[nodiscard]] Status {
 public:
  /// Success.
  Status() = default;
  /// A failure, whatever `message` holds (an empty one reads "unknown error").
  static Status error(std::string message) {
    Status s;
    s.failed_ = true;
    s.message_ = message.empty() ? "unknown error" : std::move(message);
    return s;
  }
  bool ok() const noexcept { return !failed_; }
  explicit operator bool() const noexcept { return ok(); }
  /// One line saying what went wrong; empty when ok.
  const std::string& message() const noexcept { return message_; }

 private:
  bool failed_ = false;
  std::string message_;
};

/// Serves the rooms of one service factory over HTTP and WebSocket:
///   GET /ws/{room_id}  joins room `room_id` (percent-decoded, 1 to 256 bytes of UTF-8)
///   GET /ws            joins the default room
///   GET /status        200 `ok`
///   anything else      static files when configured, otherwise 404
/// Rooms are spread over worker threads; each room's handlers run on one of them.
class Server {
 public:
  Server(std::shared_ptr<ServiceFactory> factory, ServerOptions options);
  ~Server();  ///< stops the server (gracefully) if it is still running; not from one of its threads
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Binds the listening socket and starts the worker threads.
  Status start();
  /// The port listened on (useful with `port = 0`); 0 before a successful start.
  std::uint16_t port() const noexcept;
  /// Graceful shutdown: stops accepting, closes every client with 1001 after delivering its
  /// `disconnect`, destroys the rooms and joins the workers. Safe from any thread; idempotent.
  /// From one of the server's own threads (a service's handler) it starts the shutdown and
  /// returns at once: the rooms end after the handler, and `wait` (or the destructor) on another
  /// thread returns once the workers are done.
  void stop();
  /// Blocks until the server has stopped (after `stop`, from any thread or a handler). On one of
  /// the server's own threads it would wait for itself, and returns at once.
  void wait();
  /// What replace_factory does with the rooms already running.
  enum class RunningRooms : std::uint8_t {
    /// A running room keeps its service until it becomes empty; it then ends at once (whatever
    /// its grace period), so its next connect starts on the new factory.
    keep_until_empty,
    /// Each room moves to the new factory's service between two events, its clients staying
    /// connected: with its service's state when `on_module_change` lets the new factory take the
    /// old one's snapshot (the same ServiceFactory::snapshot_identity; under `layout` the same
    /// non-empty snapshot_layout, for a WebAssembly module a rebuild that changed only code;
    /// under `keep` any), else afresh (`init`, then a `connect` for each client). What
    /// `stateroom dev` does on every rebuild, under `layout`.
    carry_over,
  };
  /// Builds rooms created from now on with `factory`, and treats the running ones as `running`
  /// says. Logs what became of them. Safe from any thread.
  void replace_factory(std::shared_ptr<ServiceFactory> factory,
                       RunningRooms running = RunningRooms::keep_until_empty);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Starts a server, runs it until SIGINT or SIGTERM, then shuts down gracefully. Returns the
/// process exit code: 0 after a clean shutdown, 1 when the server could not start (the reason is
/// logged). `listening`, if given, is called once the server listens (its port() is known).
int serve(std::shared_ptr<ServiceFactory> factory, ServerOptions options = {},
          const std::function<void(Server&)>& listening = {});

/// `serve` for a service type: `return stateroom::serve<Counter>({.port = 8080});`
template <ServiceType T>
int serve(ServerOptions options = {}) {
  return serve(make_factory<T>(), std::move(options));
}

/// The log levels, most verbose first.
inline constexpr std::array<std::string_view, 7> log_levels{"trace", "debug", "info", "warn",
                                                            "error", "critical", "off"};
/// Whether `name` is one of `log_levels`.
bool is_log_level(std::string_view name) noexcept;
/// The levels as a phrase: "trace, debug, info, warn, error, critical or off".
std::string log_level_names();

/// Sets the log level (one of `log_levels`). Returns false (and changes nothing) for another name.
bool set_log_level(std::string_view level);

}  // namespace stateroom
