#include "admission.hpp"

#include <spdlog/spdlog.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <string>
#include <utility>

namespace stateroom::server {

namespace {

constexpr std::size_t max_tracked_addresses = 4096;  ///< before idle rate buckets are dropped

/// Takes one unit of `counter` unless it is at `limit` (0: no limit).
bool take(std::atomic<std::size_t>& counter, std::size_t limit) noexcept {
  if (limit == 0) {
    counter.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  std::size_t n = counter.load(std::memory_order_relaxed);
  do {
    if (n >= limit) return false;
  } while (!counter.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  return true;
}

/// ::ffff:a.b.c.d, the form an IPv4 address takes here.
bool is_v4_mapped(const PeerAddress& a) noexcept {
  static constexpr std::uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a.data(), mapped, 12) == 0;
}

/// The key of `a`'s per-address budgets: IPv6 by its /64, which is one host's (SLAAC, RFC 7421: a
/// client may use any of its 2^64 addresses); IPv4 as it is.
PeerAddress budget_key(const PeerAddress& a) noexcept {
  if (is_v4_mapped(a)) return a;
  PeerAddress key = a;
  std::fill(key.begin() + 8, key.end(), std::uint8_t{0});
  return key;
}

}  // namespace

PeerAddress peer_address(const boost::asio::ip::address& address) noexcept {
  const auto v6 = address.is_v4() ? boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, address.to_v4())
                                  : address.to_v6();
  return v6.to_bytes();
}

bool is_loopback(const PeerAddress& a) noexcept {
  if (is_v4_mapped(a)) return a[12] == 127;
  return std::all_of(a.begin(), a.end() - 1, [](std::uint8_t b) { return b == 0; }) && a[15] == 1;
}

std::string_view format_peer_address(const PeerAddress& a, std::array<char, 46>& buffer) noexcept {
  const bool v4 = is_v4_mapped(a);
  if (!::inet_ntop(v4 ? AF_INET : AF_INET6, a.data() + (v4 ? 12 : 0), buffer.data(), buffer.size())) return {};
  return buffer.data();
}

void RefusalLog::report(Refusal why, std::string_view detail) {
  const auto now = std::chrono::steady_clock::now();
  std::uint64_t more = 0;
  {
    std::lock_guard lock(mutex_);
    Entry& e = entries_[static_cast<std::size_t>(why)];
    if (e.logged && now - e.last < interval) {
      ++e.suppressed;
      return;
    }
    more = std::exchange(e.suppressed, 0);
    e.last = now;
    e.logged = true;
  }
  if (more == 0) {
    spdlog::warn("{}", detail);
  } else {
    spdlog::warn("{} ({} more like it in the last {} s)", detail, more, interval.count());
  }
}

ConnectionTicket::ConnectionTicket(ConnectionTicket&& other) noexcept
    : admission_(std::exchange(other.admission_, nullptr)),
      address_(other.address_),
      per_address_(std::exchange(other.per_address_, false)) {}

ConnectionTicket& ConnectionTicket::operator=(ConnectionTicket&& other) noexcept {
  if (this != &other) {
    release();
    admission_ = std::exchange(other.admission_, nullptr);
    address_ = other.address_;
    per_address_ = std::exchange(other.per_address_, false);
  }
  return *this;
}

ConnectionTicket::~ConnectionTicket() { release(); }

void ConnectionTicket::release() noexcept {
  if (!admission_) return;
  admission_->release(*this);
  admission_ = nullptr;
  per_address_ = false;
}

std::size_t Admission::Hash::operator()(const PeerAddress& a) const noexcept {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;
  std::memcpy(&hi, a.data(), 8);
  std::memcpy(&lo, a.data() + 8, 8);
  return std::hash<std::uint64_t>{}(hi * 0x9E3779B97F4A7C15ull ^ lo);
}

std::optional<ConnectionTicket> Admission::admit(const PeerAddress& address, Refusal* refused) {
  if (!take(connections_, limits_.connections)) {
    if (refused) *refused = Refusal::connections;
    return std::nullopt;
  }
  ConnectionTicket ticket;
  ticket.admission_ = this;
  ticket.address_ = address;
  if ((limits_.connections_per_ip != 0 || limits_.inflate_per_ip_per_second != 0) && !is_loopback(address)) {
    std::lock_guard lock(mutex_);
    AddressState& state = per_address_[budget_key(address)];
    if (limits_.connections_per_ip != 0 && state.connections >= limits_.connections_per_ip) {
      ticket.admission_ = nullptr;
      connections_.fetch_sub(1, std::memory_order_relaxed);
      if (refused) *refused = Refusal::connections_per_ip;
      return std::nullopt;
    }
    ++state.connections;
    ticket.per_address_ = true;
  }
  return ticket;
}

void Admission::release(const ConnectionTicket& ticket) noexcept {
  connections_.fetch_sub(1, std::memory_order_relaxed);
  if (!ticket.per_address_) return;
  std::lock_guard lock(mutex_);
  if (auto it = per_address_.find(budget_key(ticket.address_));
      it != per_address_.end() && --it->second.connections == 0) {
    per_address_.erase(it);
  }
}

bool Admission::inflate_allowed(const ConnectionTicket& ticket) {
  if (!ticket.per_address_ || limits_.inflate_per_ip_per_second == 0) return true;
  std::lock_guard lock(mutex_);
  const auto it = per_address_.find(budget_key(ticket.address_));
  if (it == per_address_.end()) return true;
  TokenBucket& bucket = it->second.inflate;
  bucket.refill(static_cast<double>(limits_.inflate_per_ip_per_second), static_cast<double>(limits_.inflate_burst),
                std::chrono::steady_clock::now());
  return bucket.tokens > 0;
}

void Admission::inflated(const ConnectionTicket& ticket, std::size_t bytes) {
  if (!ticket.per_address_ || limits_.inflate_per_ip_per_second == 0) return;
  std::lock_guard lock(mutex_);
  if (auto it = per_address_.find(budget_key(ticket.address_)); it != per_address_.end())
    it->second.inflate.tokens -= static_cast<double>(bytes);
}

std::optional<Refusal> Admission::admit_room(const PeerAddress* creator) {
  if (!take(rooms_, limits_.rooms)) return Refusal::rooms;
  if (creator == nullptr || is_loopback(*creator)) return std::nullopt;
  if (limits_.rooms_per_ip) {
    std::lock_guard lock(mutex_);
    std::size_t& alive = rooms_by_address_[budget_key(*creator)];
    if (alive >= limits_.rooms_per_ip) {
      rooms_.fetch_sub(1, std::memory_order_relaxed);
      return Refusal::rooms_per_ip;
    }
    ++alive;
  }
  if (auto refused = take_room_creation(*creator)) {
    room_ended(creator);
    return refused;
  }
  return std::nullopt;
}

void Admission::room_ended(const PeerAddress* creator) noexcept {
  rooms_.fetch_sub(1, std::memory_order_relaxed);
  if (creator == nullptr || !limits_.rooms_per_ip || is_loopback(*creator)) return;
  std::lock_guard lock(mutex_);
  auto it = rooms_by_address_.find(budget_key(*creator));
  if (it != rooms_by_address_.end() && --it->second == 0) rooms_by_address_.erase(it);
}

std::optional<Refusal> Admission::take_room_creation(const PeerAddress& creator) {
  const std::uint32_t rate = limits_.new_rooms_per_ip_per_second;
  if (rate == 0) return std::nullopt;
  // A token bucket per address: `rate` new rooms a second, and bursts of twice that.
  const double burst = 2.0 * rate;
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex_);
  auto& bucket = new_rooms_[budget_key(creator)];
  bucket.refill(rate, burst, now);
  if (bucket.tokens < 1.0) return Refusal::room_creations_per_ip;
  bucket.tokens -= 1.0;
  if (new_rooms_.size() > max_tracked_addresses) {
    // Forget the addresses whose bucket has filled up again: they are as good as new.
    for (auto i = new_rooms_.begin(); i != new_rooms_.end();) {
      i->second.refill(rate, burst, now);
      i = i->second.tokens >= burst ? new_rooms_.erase(i) : std::next(i);
    }
  }
  return std::nullopt;
}

}  // namespace stateroom::server
