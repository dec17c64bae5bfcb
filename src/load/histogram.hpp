// Histogram: latencies in log-linear buckets, in the manner of HdrHistogram but small.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace stateroom::load {

/// Counts values (nanoseconds) in buckets that are exact below 256 and then 128 to each power of
/// two, so a reported value is within 0.8% of the true one. Values from 2^40 (about 18 minutes) up
/// fall into the last bucket.
class Histogram {
 public:
  Histogram();

  void record(std::uint64_t value) noexcept;
  /// Adds every value recorded in `other`.
  void merge(const Histogram& other) noexcept;

  std::uint64_t count() const noexcept { return count_; }
  /// The largest value recorded, exactly (0 when empty).
  std::uint64_t max() const noexcept { return max_; }
  /// The mean of the values recorded (0 when empty).
  double mean() const noexcept;
  /// The smallest value that at least a fraction `q` (0 to 1) of the values do not exceed, as the
  /// upper end of its bucket (never above max()). 0 when empty.
  std::uint64_t quantile(double q) const noexcept;

 private:
  static std::size_t bucket_of(std::uint64_t value) noexcept;
  static std::uint64_t bucket_upper(std::size_t bucket) noexcept;

  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t sum_ = 0;  // nanoseconds: overflows after centuries of latency
};

}  // namespace stateroom::load
