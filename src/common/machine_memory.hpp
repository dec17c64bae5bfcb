// The memory a process on this machine may use, for the defaults of the memory budgets.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>

namespace stateroom::detail {

/// Half the memory this process may use: the lower of the machine's RAM and its cgroup's limit
/// (cgroup v2 `memory.max`, v1 `memory.limit_in_bytes`); at least 64 KiB.
inline std::uint64_t half_the_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  std::uint64_t memory = pages > 0 && page > 0 ? static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page)
                                               : std::uint64_t{4} << 30;
  for (const char* file : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(file);
    std::uint64_t limit = 0;
    if (in >> limit && limit > 0) memory = std::min(memory, limit);  // "max" reads as no number
  }
  return std::max<std::uint64_t>(memory / 2, 65536);
}

}  // namespace stateroom::detail
