// CPU time and memory of processes, from /proc (Linux) and getrusage.
#pragma once

#include <cstdint>
#include <optional>

namespace stateroom::load {

/// One reading of a process's counters.
struct ProcessSample {
  std::uint64_t cpu_us = 0;     ///< user + system CPU time of all its threads, in microseconds
  std::uint64_t rss_bytes = 0;  ///< resident set size (VmRSS)
};

/// Reads /proc/PID/stat and /proc/PID/status; nothing when the process is gone or unreadable.
std::optional<ProcessSample> sample_process(int pid);

/// This process's user + system CPU time (all threads), in microseconds.
std::uint64_t own_cpu_us();

}  // namespace stateroom::load
