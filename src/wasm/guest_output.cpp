#include "guest_output.hpp"

#include <spdlog/spdlog.h>

namespace stateroom::wasm::detail {

std::ptrdiff_t GuestOutput::on_stdout(void* self, const unsigned char* data, std::size_t len) noexcept {
  auto& out = *static_cast<GuestOutput*>(self);
  try {
    out.write(out.stdout_line_, data, len, false);
  } catch (...) {
    out.stdout_line_.clear();  // the output is lost, not the room
  }
  return static_cast<std::ptrdiff_t>(len);
}

std::ptrdiff_t GuestOutput::on_stderr(void* self, const unsigned char* data, std::size_t len) noexcept {
  auto& out = *static_cast<GuestOutput*>(self);
  try {
    out.write(out.stderr_line_, data, len, true);
  } catch (...) {
    out.stderr_line_.clear();
  }
  return static_cast<std::ptrdiff_t>(len);
}

void GuestOutput::write(std::string& line, const unsigned char* data, std::size_t len, bool error) {
  auto emit = [&] {
    const auto now = std::chrono::steady_clock::now();
    if (now - window_ >= std::chrono::seconds(1)) {
      window_ = now;
      lines_ = 0;
    }
    if (lines_ < max_lines_per_second) {
      ++lines_;
      spdlog::log(error ? spdlog::level::warn : spdlog::level::info, "room '{}' {}: {}", room_id_,
                  error ? "stderr" : "stdout", line);
    } else {
      ++dropped_lines_;
    }
    line.clear();
  };
  for (std::size_t i = 0; i < len; ++i) {
    if (data[i] == '\n') {
      emit();
    } else {
      line.push_back(static_cast<char>(data[i]));
      if (line.size() >= max_line) emit();
    }
  }
}

void GuestOutput::report_dropped() noexcept {
  if (dropped_lines_ == 0) return;
  try {
    spdlog::warn("room '{}': {} lines of guest output dropped (more than {} lines a second)", room_id_,
                 dropped_lines_, max_lines_per_second);
  } catch (...) {
  }
  dropped_lines_ = 0;
}

void GuestOutput::flush() noexcept {
  static constexpr unsigned char newline = '\n';
  try {
    if (!stdout_line_.empty()) write(stdout_line_, &newline, 1, false);
    if (!stderr_line_.empty()) write(stderr_line_, &newline, 1, true);
  } catch (...) {
  }
  report_dropped();
}

}  // namespace stateroom::wasm::detail
