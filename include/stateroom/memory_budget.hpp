// MemoryBudget: the bytes a server's rooms may hold in memory together (--total-memory-limit).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace stateroom {

/// A bound on memory that several parts of a server count against: the linear memory of every
/// WebAssembly room's instance (the engine takes it as memories grow), and the rooms' snapshots
/// while they are held in memory (being taken, or waiting for the state store to write them).
/// Thread-safe: every method may be called from any thread. The WebAssembly runtime reads its
/// layout directly (`used`, then `limit`): keep the two fields first and in this order.
class MemoryBudget {
 public:
  explicit MemoryBudget(std::uint64_t limit) noexcept : limit_(limit) {}
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  /// Takes `bytes` when they fit under the limit; false (nothing taken) when they do not.
  bool take(std::uint64_t bytes) noexcept {
    std::uint64_t now = used_.load(std::memory_order_relaxed);
    do {
      if (bytes > limit_ || now > limit_ - bytes) return false;
    } while (!used_.compare_exchange_weak(now, now + bytes, std::memory_order_relaxed));
    return true;
  }
  /// Takes `bytes` even past the limit: for memory that replaces as much given back right after
  /// (a room's snapshot as its instance goes), so that the total passes the limit only briefly.
  void take_anyway(std::uint64_t bytes) noexcept { used_.fetch_add(bytes, std::memory_order_relaxed); }
  /// Gives back `bytes` taken before.
  void give_back(std::uint64_t bytes) noexcept { used_.fetch_sub(bytes, std::memory_order_relaxed); }

  std::uint64_t used() const noexcept { return used_.load(std::memory_order_relaxed); }
  std::uint64_t limit() const noexcept { return limit_; }

 private:
  std::atomic<std::uint64_t> used_{0};
  std::uint64_t limit_;
};

/// Bytes taken from a budget, given back when it goes (moved, not copied). An empty charge (no
/// budget) counts nothing.
class MemoryCharge {
 public:
  MemoryCharge() = default;
  MemoryCharge(MemoryBudget* budget, std::uint64_t bytes) noexcept : budget_(budget), bytes_(budget ? bytes : 0) {}
  MemoryCharge(MemoryCharge&& other) noexcept : budget_(other.budget_), bytes_(other.bytes_) { other.bytes_ = 0; }
  MemoryCharge& operator=(MemoryCharge&& other) noexcept {
    if (this != &other) {
      release();
      budget_ = other.budget_;
      bytes_ = other.bytes_;
      other.bytes_ = 0;
    }
    return *this;
  }
  ~MemoryCharge() { release(); }
  std::uint64_t bytes() const noexcept { return bytes_; }
  /// Counts `bytes` more, already taken from `budget` (the one this charge is of, or it becomes
  /// this charge's when it had none).
  void add(MemoryBudget& budget, std::uint64_t bytes) noexcept {
    budget_ = &budget;
    bytes_ += bytes;
  }
  /// Gives the bytes back now.
  void release() noexcept {
    if (budget_ && bytes_) budget_->give_back(bytes_);
    bytes_ = 0;
  }

 private:
  MemoryBudget* budget_ = nullptr;
  std::uint64_t bytes_ = 0;
};

}  // namespace stateroom
