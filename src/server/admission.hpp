// Admission: the server's budgets for connections and rooms, and the log of what they refuse.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>

namespace stateroom::server {

/// A peer's IP address: IPv4 as its IPv6-mapped form. The per-address budgets count an IPv6 peer
/// by its /64 (one host's share of a network: a client may use any address in it).
using PeerAddress = std::array<std::uint8_t, 16>;
PeerAddress peer_address(const boost::asio::ip::address& address) noexcept;
/// 127.0.0.0/8, ::1, and IPv4-mapped loopback: local processes (a proxy in front, a load generator,
/// health checks), which the per-address budgets do not count.
bool is_loopback(const PeerAddress& address) noexcept;

/// The address in text: `203.0.113.7` for IPv4 (mapped or not), `2001:db8::1` otherwise.
/// Written into `buffer`; no allocation.
std::string_view format_peer_address(const PeerAddress& address, std::array<char, 46>& buffer) noexcept;

/// What a budget or a check refused, or what went wrong taking a connection.
enum class Refusal : std::uint8_t {
  connections,            ///< --max-connections reached
  connections_per_ip,     ///< --max-connections-per-ip reached
  rooms,                  ///< --max-rooms reached
  room_creations_per_ip,  ///< --max-new-rooms-per-ip spent for this second
  rooms_per_ip,           ///< --max-rooms-per-ip alive from the address
  accept_failed,          ///< accept failed (out of descriptors): accepting pauses
  origin,                 ///< an upgrade from a page whose origin is not in --allowed-origins
  token,                  ///< an upgrade without a valid token (--auth-token-secret)
  refused_by_service,     ///< an upgrade the service factory's admit refused
  room_unavailable,       ///< a room whose service could not start for want of a shared budget
};
inline constexpr std::size_t refusal_kinds = 10;

/// At most one line per cause every 10 seconds, saying how many more there were. Thread-safe.
class RefusalLog {
 public:
  static constexpr std::chrono::seconds interval{10};
  void report(Refusal why, std::string_view detail);

 private:
  struct Entry {
    std::chrono::steady_clock::time_point last{};
    std::uint64_t suppressed = 0;
    bool logged = false;
  };
  std::mutex mutex_;
  std::array<Entry, refusal_kinds> entries_{};
};

/// A token bucket: `rate` tokens a second, holding `capacity` at most; a new one is full.
struct TokenBucket {
  double tokens = 0;
  std::chrono::steady_clock::time_point refilled{};
  /// Adds what `rate` gave since the last refill (a bucket never refilled: fills it).
  void refill(double rate, double capacity, std::chrono::steady_clock::time_point now) noexcept {
    tokens = refilled == std::chrono::steady_clock::time_point{}
                 ? capacity
                 : std::min(capacity, tokens + rate * std::chrono::duration<double>(now - refilled).count());
    refilled = now;
  }
};

class Admission;

/// A connection's place in the budgets, given back when the ticket goes (on any thread). A
/// default-constructed ticket holds no place.
class ConnectionTicket {
 public:
  ConnectionTicket() = default;
  ConnectionTicket(ConnectionTicket&& other) noexcept;
  ConnectionTicket& operator=(ConnectionTicket&& other) noexcept;
  ~ConnectionTicket();
  const PeerAddress& address() const noexcept { return address_; }
  /// Whether its address is counted: a remote one (loopback is not) under a per-address budget.
  bool per_address() const noexcept { return per_address_; }

 private:
  friend class Admission;
  void release() noexcept;
  Admission* admission_ = nullptr;
  PeerAddress address_{};
  bool per_address_ = false;  ///< counted against the address's budget
};

/// The budgets (0: none), shared by every worker. Connections are admitted on the accepting thread
/// and released wherever they end; rooms are admitted on their worker. A refusal is logged.
class Admission {
 public:
  struct Limits {
    std::size_t connections = 0;
    std::size_t connections_per_ip = 0;
    std::size_t rooms = 0;
    std::uint32_t new_rooms_per_ip_per_second = 0;
    std::size_t rooms_per_ip = 0;  ///< rooms alive that one address created
    /// Bytes a second the compressed messages of all of one address's connections may inflate to,
    /// in bursts of `inflate_burst` (--max-inflate-rate; loopback connections each on their own).
    std::uint64_t inflate_per_ip_per_second = 0;
    std::uint64_t inflate_burst = 0;
  };

  void configure(const Limits& limits) { limits_ = limits; }
  const Limits& limits() const noexcept { return limits_; }

  /// A new connection from `address`: its ticket, or the budget it would exceed.
  std::optional<ConnectionTicket> admit(const PeerAddress& address, Refusal* refused);
  std::size_t connections() const noexcept { return connections_.load(std::memory_order_relaxed); }

  /// A room is to be created for a client at `creator` (none: not for a client): nothing, or the
  /// budget it would exceed. Each room admitted is given back with room_ended, with its creator.
  std::optional<Refusal> admit_room(const PeerAddress* creator);
  void room_ended(const PeerAddress* creator = nullptr) noexcept;
  std::size_t rooms() const noexcept { return rooms_.load(std::memory_order_relaxed); }

  /// Whether the connection of `ticket` (per_address()) may inflate another compressed message
  /// now: its address has inflated less than its budget; `inflated` then charges what it did.
  bool inflate_allowed(const ConnectionTicket& ticket);
  void inflated(const ConnectionTicket& ticket, std::size_t bytes);

  RefusalLog log;

 private:
  friend class ConnectionTicket;
  void release(const ConnectionTicket& ticket) noexcept;
  /// Spends one of `creator`'s new-room tokens (--max-new-rooms-per-ip), or says why not.
  std::optional<Refusal> take_room_creation(const PeerAddress& creator);

  struct Hash {
    std::size_t operator()(const PeerAddress& a) const noexcept;
  };

  Limits limits_{};
  std::atomic<std::size_t> connections_{0};
  std::atomic<std::size_t> rooms_{0};
  std::mutex mutex_;  ///< guards the per-address maps
  /// What an address's connections share: how many there are, and the inflate budget.
  struct AddressState {
    std::size_t connections = 0;
    TokenBucket inflate{};
  };
  std::unordered_map<PeerAddress, AddressState, Hash> per_address_;
  std::unordered_map<PeerAddress, TokenBucket, Hash> new_rooms_;
  std::unordered_map<PeerAddress, std::size_t, Hash> rooms_by_address_;  ///< rooms alive (remote creators)
};

}  // namespace stateroom::server
