// GuestOutput: what a room's guest writes to stdout and stderr, as log lines tagged with the room.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace stateroom::wasm::detail {

/// Splits a guest's output into lines (at most max_line bytes each) and logs them with the room's
/// id: stdout at info, stderr at warn. At most max_lines_per_second reach the log; the others are
/// counted, and `report_dropped` says how many in one line. Never throws into the guest's call.
class GuestOutput {
 public:
  static constexpr std::size_t max_line = 4096;
  static constexpr std::uint64_t max_lines_per_second = 100;

  explicit GuestOutput(std::string room_id) : room_id_(std::move(room_id)) {}
  ~GuestOutput() { flush(); }
  GuestOutput(const GuestOutput&) = delete;
  GuestOutput& operator=(const GuestOutput&) = delete;

  /// WASI's stdout/stderr callbacks: every byte is taken (what cannot be logged is lost, not the room).
  static std::ptrdiff_t on_stdout(void* self, const unsigned char* data, std::size_t len) noexcept;
  static std::ptrdiff_t on_stderr(void* self, const unsigned char* data, std::size_t len) noexcept;

  /// Whether lines were dropped since the last report.
  bool dropped() const noexcept { return dropped_lines_ != 0; }
  /// Logs how many lines the rate limit dropped, if any, and starts counting anew.
  void report_dropped() noexcept;
  /// Logs the unfinished lines, then the report.
  void flush() noexcept;

 private:
  void write(std::string& line, const unsigned char* data, std::size_t len, bool error);

  const std::string room_id_;
  std::string stdout_line_, stderr_line_;
  std::chrono::steady_clock::time_point window_{};  ///< the second the rate limit counts in
  std::uint64_t lines_ = 0;                         ///< lines logged in it
  std::uint64_t dropped_lines_ = 0;                 ///< lines dropped since last reported
};

}  // namespace stateroom::wasm::detail
