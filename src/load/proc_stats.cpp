#include "proc_stats.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

namespace stateroom::load {

namespace {

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::optional<std::uint64_t> number(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end == text.data()) return std::nullopt;
  return value;
}

// utime + stime (fields 14 and 15 of /proc/PID/stat), in clock ticks. The command name (field 2)
// is in parentheses and may hold spaces, so fields are counted from the last ')'.
std::optional<std::uint64_t> cpu_ticks(std::string_view stat) {
  const auto close = stat.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  std::string_view rest = stat.substr(close + 1);
  std::uint64_t ticks = 0;
  for (int field = 3; field <= 15; ++field) {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    const auto end = rest.find(' ');
    if (field >= 14) {
      auto value = number(rest.substr(0, end));
      if (!value) return std::nullopt;
      ticks += *value;
    }
    if (end == std::string_view::npos) return field == 15 ? std::optional(ticks) : std::nullopt;
    rest.remove_prefix(end);
  }
  return ticks;
}

std::optional<std::uint64_t> rss_kib(std::string_view status) {
  constexpr std::string_view key = "\nVmRSS:";
  const auto at = status.find(key);
  if (at == std::string_view::npos) return std::nullopt;
  return number(status.substr(at + key.size()));
}

std::uint64_t micros(const timeval& t) {
  return static_cast<std::uint64_t>(t.tv_sec) * 1000000 + static_cast<std::uint64_t>(t.tv_usec);
}

}  // namespace

std::optional<ProcessSample> sample_process(int pid) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/";
  const auto stat = read_file(dir + "stat");
  const auto status = read_file(dir + "status");
  if (!stat || !status) return std::nullopt;
  const auto ticks = cpu_ticks(*stat);
  const auto rss = rss_kib(*status);
  if (!ticks || !rss) return std::nullopt;
  const auto hz = static_cast<std::uint64_t>(sysconf(_SC_CLK_TCK));
  return ProcessSample{.cpu_us = *ticks * 1000000 / hz, .rss_bytes = *rss * 1024};
}

std::uint64_t own_cpu_us() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return micros(usage.ru_utime) + micros(usage.ru_stime);
}

}  // namespace stateroom::load
