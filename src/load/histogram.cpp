#include "histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace stateroom::load {

namespace {

constexpr unsigned linear_bits = 8;  // values below 2^8 have a bucket each
constexpr std::uint64_t linear = std::uint64_t{1} << linear_bits;
constexpr std::uint64_t per_octave = linear / 2;  // buckets to each power of two above
constexpr unsigned top_bits = 40;                 // values from 2^40 share the last bucket
constexpr std::size_t bucket_count = linear + (top_bits - linear_bits) * per_octave;

}  // namespace

Histogram::Histogram() : counts_(bucket_count, 0) {}

std::size_t Histogram::bucket_of(std::uint64_t value) noexcept {
  if (value < linear) return static_cast<std::size_t>(value);
  value = std::min(value, (std::uint64_t{1} << top_bits) - 1);
  // The top linear_bits bits of the value pick the bucket within its octave.
  const unsigned shift = static_cast<unsigned>(std::bit_width(value)) - linear_bits;
  return static_cast<std::size_t>(linear + (shift - 1) * per_octave + ((value >> shift) - per_octave));
}

std::uint64_t Histogram::bucket_upper(std::size_t bucket) noexcept {
  if (bucket < linear) return bucket;
  const std::size_t above = bucket - linear;
  const unsigned shift = static_cast<unsigned>(above / per_octave) + 1;
  const std::uint64_t top = per_octave + above % per_octave;
  return ((top + 1) << shift) - 1;
}

void Histogram::record(std::uint64_t value) noexcept {
  ++counts_[bucket_of(value)];
  ++count_;
  max_ = std::max(max_, value);
  sum_ += value;
}

void Histogram::merge(const Histogram& other) noexcept {
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

double Histogram::mean() const noexcept {
  return count_ == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(count_);
}

std::uint64_t Histogram::quantile(double q) const noexcept {
  if (count_ == 0) return 0;
  const double wanted = std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(count_));
  const std::uint64_t rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(wanted));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(bucket_upper(i), max_);
  }
  return max_;
}

}  // namespace stateroom::load
