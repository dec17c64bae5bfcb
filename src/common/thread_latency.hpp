// Asks the kernel's scheduler to run the calling thread soon after it wakes.
#pragma once

#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>

namespace stateroom::detail {

/// Gives the calling thread (when it runs under SCHED_OTHER; its nice value kept) a slice of `slice`: under Linux's
/// EEVDF scheduler (6.12 and later) a thread with a short slice has an early deadline, so it runs
/// soon after it wakes instead of waiting for a busy neighbour's longer slice to end; its share of
/// the CPU stays what its nice value gives. Earlier kernels ignore the slice. Returns whether the
/// kernel took the request (a failure changes nothing).
inline bool request_short_slice(std::chrono::microseconds slice) noexcept {
  // struct sched_attr of sched_setattr(2); glibc 2.36 has no wrapper for it.
  struct Attr {
    std::uint32_t size;
    std::uint32_t sched_policy;
    std::uint64_t sched_flags;
    std::int32_t sched_nice;
    std::uint32_t sched_priority;
    std::uint64_t sched_runtime;
    std::uint64_t sched_deadline;
    std::uint64_t sched_period;
  };
  // A policy the operator chose (chrt: batch, idle, real-time) stays as it is.
  if (::sched_getscheduler(0) != SCHED_OTHER) return false;
  errno = 0;
  const int nice = ::getpriority(PRIO_PROCESS, 0);  // this thread's (Linux: per thread)
  if (nice == -1 && errno != 0) return false;
  Attr attr{};
  attr.size = sizeof attr;
  attr.sched_policy = 0;  // SCHED_OTHER
  attr.sched_nice = nice;
  attr.sched_runtime = static_cast<std::uint64_t>(std::chrono::nanoseconds(slice).count());
  return ::syscall(SYS_sched_setattr, 0, &attr, 0) == 0;
}

}  // namespace stateroom::detail
