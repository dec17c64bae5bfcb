// CpuShare: a room's guest CPU time over a sliding window, against its share of one core.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

namespace stateroom::wasm::detail {

/// The guest time a room used over the last `window`, kept in ten buckets of a tenth of it each
/// (so the window slides in tenths), against `percent` of the window. Charged at engine ticks;
/// read the clock only through charge() and wait(), so a room under its share costs nothing to
/// check (over()).
class CpuShare {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr int buckets = 10;

  /// `percent` of one core over `window`; 100 (or more) never holds a room back.
  CpuShare(std::chrono::milliseconds window, std::uint32_t percent) noexcept
      : width_(std::chrono::duration_cast<Clock::duration>(window) / buckets),
        limit_(percent >= 100 ? Clock::duration::max()
                              : std::chrono::duration_cast<Clock::duration>(window) * percent / 100) {}

  /// Whether this share can hold a room back at all.
  bool enabled() const noexcept { return limit_ != Clock::duration::max(); }

  /// Adds `used` of guest time at `now`.
  void charge(Clock::time_point now, Clock::duration used) noexcept {
    if (!enabled()) return;
    slide(now);
    used_[current_] += used;
    total_ += used;
    if (total_ > limit_) over_ = true;
  }

  /// Whether the last charge left the room over its share (until wait() finds it under again).
  bool over() const noexcept { return over_; }

  /// The time used over the window ending at `now`.
  Clock::duration used(Clock::time_point now) noexcept {
    slide(now);
    return total_;
  }

  /// How long from `now` until the room's use over the window is within its share again, as far
  /// as the buckets tell (zero: it is now, and over() is false again).
  Clock::duration wait(Clock::time_point now) noexcept {
    slide(now);
    if (total_ <= limit_) {
      over_ = false;
      return {};
    }
    // The oldest buckets leave the window one by one, at the ends of the next tenths.
    Clock::duration left = total_;
    for (int k = 1; k <= buckets; ++k) {
      left -= used_[(current_ + k) % buckets];
      if (left <= limit_) return bucket_start_ + k * width_ - now;
    }
    return bucket_start_ + buckets * width_ - now;
  }

 private:
  /// Moves the window to `now`: the buckets it has passed are emptied.
  void slide(Clock::time_point now) noexcept {
    if (bucket_start_ == Clock::time_point{}) bucket_start_ = now;
    if (now < bucket_start_ + width_) return;
    const auto passed = (now - bucket_start_) / width_;
    if (passed >= buckets) {
      used_.fill({});
      total_ = {};
      current_ = 0;
    } else {
      for (auto i = passed; i > 0; --i) {
        current_ = (current_ + 1) % buckets;
        total_ -= used_[current_];
        used_[current_] = {};
      }
    }
    bucket_start_ += passed * width_;
  }

  const Clock::duration width_;
  const Clock::duration limit_;
  std::array<Clock::duration, buckets> used_{};
  Clock::duration total_{};
  Clock::time_point bucket_start_{};  ///< where the current bucket's tenth began
  int current_ = 0;
  bool over_ = false;
};

}  // namespace stateroom::wasm::detail
