#include <linux/membarrier.h>
#include <pthread.h>
#include <csignal>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>

#include "engine_impl.hpp"
#include "../common/machine_memory.hpp"

namespace stateroom::wasm {

namespace {

detail::EngineHandle make_engine(const Limits& limits) {
  wasm_config_t* config = wasm_config_new();
  // Guests are interrupted by epochs (a cheap check at loop heads and calls), not fuel.
  wasmtime_config_epoch_interruption_set(config, true);
  // A memory keeps its address as it grows (its pool slot reserves the cap), so the host may keep
  // a guest's memory base across calls.
  wasmtime_config_memory_may_move_set(config, false);
  // One pool slot per room: instantiation then reuses pre-reserved memory instead of mapping it.
  wasmtime_pooling_allocation_config_t* pool = wasmtime_pooling_allocation_config_new();
  // Two instances per room: the guest and its batch module (see InterfaceV2::messages).
  wasmtime_pooling_allocation_config_total_core_instances_set(
      pool, static_cast<std::uint32_t>(std::min<std::uint64_t>(2ull * limits.max_instances, UINT32_MAX)));
  wasmtime_pooling_allocation_config_total_memories_set(pool, limits.max_instances);
  wasmtime_pooling_allocation_config_total_tables_set(pool, limits.max_instances);
  // A paused guest keeps its stack: one per room.
  wasmtime_pooling_allocation_config_total_stacks_set(pool, limits.max_instances);
  wasmtime_pooling_allocation_config_max_memory_size_set(pool, static_cast<std::size_t>(limits.memory_bytes));
  wasmtime_pooling_allocation_strategy_set(config, pool);
  wasmtime_pooling_allocation_config_delete(pool);
  wasm_engine_t* engine = wasm_engine_new_with_config(config);
  if (!engine) throw std::runtime_error("the WebAssembly runtime could not start (see the log above)");
  return detail::EngineHandle(engine);
}

/// Whether the kernel provides the heavy half of an asymmetric fence (membarrier, Linux 4.14+) to
/// this process.
bool register_heavy_barrier() noexcept {
  const long commands = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (commands < 0 || !(commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return false;
  return syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

}  // namespace

Engine::Impl::Impl(Limits limits_in)
    : limits(limits_in),
      engine(make_engine(limits)),
      memory_budget(std::make_shared<MemoryBudget>(limits.total_memory_bytes)),
      asymmetric_(register_heavy_barrier()) {
  ticker_ = std::thread([this] { tick_epochs(); });
}

Engine::Impl::~Impl() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  ticker_.join();
}

void Engine::Impl::tick_epochs() {
  pthread_setname_np(pthread_self(), "stateroom-epoch");
  // A helper thread never takes the process's signals (a SIGTERM here would kill the server).
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  std::unique_lock lock(mutex_);
  auto next = std::chrono::steady_clock::now() + tick;
  for (;;) {
    if (!guests_active()) {
      // Idle: announce it, then look again, so that a call beginning meanwhile either sees the
      // announcement (and wakes us) or is seen here.
      idle_.store(true);
      // With the asymmetric fence, the workers' half costs nothing and this half makes every
      // thread's earlier stores (a call beginning) visible before the look below.
      if (asymmetric_) syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
      if (!guests_active()) {
        wake_.wait(lock, [this] { return stopping_ || !idle_.load(); });
        if (stopping_) return;
        next = std::chrono::steady_clock::now() + tick;
      }
      idle_.store(false);
    }
    if (wake_.wait_until(lock, next, [this] { return stopping_; })) return;
    wasmtime_engine_increment_epoch(engine.get());
    next += tick;
    const auto now = std::chrono::steady_clock::now();
    if (next < now) next = now + tick;  // after a stall, do not catch up in a burst
  }
}

std::size_t Engine::Impl::slot_index() noexcept {
  static std::atomic<std::size_t> next_thread{0};
  thread_local const std::size_t index =
      std::min(next_thread.fetch_add(1, std::memory_order_relaxed), shared_slot);
  return index;
}

bool Engine::Impl::guests_active() const noexcept {
  for (const Slot& s : slots_)
    if (s.active.load(std::memory_order_relaxed) != 0) return true;
  return false;
}

void Engine::Impl::guest_started() noexcept {
  const std::size_t index = slot_index();
  std::atomic<std::int64_t>& active = slots_[index].active;
  if (index == shared_slot) {
    active.fetch_add(1);  // a full fence too
  } else {
    // This thread's own slot: a plain increment, then the light half of the fence.
    active.store(active.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (asymmetric_) {
      std::atomic_signal_fence(std::memory_order_seq_cst);
    } else {
      std::atomic_thread_fence(std::memory_order_seq_cst);
    }
  }
  if (idle_.load(std::memory_order_relaxed)) {
    {
      std::lock_guard lock(mutex_);
      idle_.store(false);
    }
    wake_.notify_all();
  }
}

void Engine::Impl::guest_finished() noexcept {
  const std::size_t index = slot_index();
  std::atomic<std::int64_t>& active = slots_[index].active;
  if (index == shared_slot) {
    active.fetch_sub(1);
  } else {
    active.store(active.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  }
}

bool Engine::Impl::acquire_instance() noexcept {
  std::uint32_t live = live_instances.load(std::memory_order_relaxed);
  do {
    if (live >= limits.max_instances) return false;
  } while (!live_instances.compare_exchange_weak(live, live + 1, std::memory_order_relaxed));
  return true;
}

void Engine::Impl::release_instance() noexcept { live_instances.fetch_sub(1, std::memory_order_relaxed); }

Engine::Engine(Limits limits) {
  if (limits.memory_bytes < 65536)
    throw std::invalid_argument("the memory limit must be at least 64 KiB (one WebAssembly page)");
  if (limits.memory_bytes > (std::uint64_t{1} << 32))
    throw std::invalid_argument("the memory limit must be at most 4 GiB (a 32-bit WebAssembly memory)");
  if (limits.cpu_time_per_event.count() <= 0) throw std::invalid_argument("the CPU time limit must be positive");
  if (limits.cpu_share_percent < 1 || limits.cpu_share_percent > 100)
    throw std::invalid_argument("the CPU share must be 1 to 100 percent");
  if (limits.cpu_window < std::chrono::milliseconds(100))
    throw std::invalid_argument("the CPU share's window must be at least 100 ms");
  if (limits.max_instances == 0) throw std::invalid_argument("the instance limit must be at least 1");
  if (limits.total_memory_bytes == 0) limits.total_memory_bytes = ::stateroom::detail::half_the_memory();
  if (limits.total_memory_bytes < 65536)
    throw std::invalid_argument("the total memory limit must be at least 64 KiB (one WebAssembly page)");
  impl_ = std::make_unique<Impl>(limits);
}

Engine::~Engine() = default;

const Limits& Engine::limits() const noexcept { return impl_->limits; }

std::uint32_t Engine::live_instances() const noexcept {
  return impl_->live_instances.load(std::memory_order_relaxed);
}

std::shared_ptr<MemoryBudget> Engine::memory_budget() const noexcept { return impl_->memory_budget; }

std::uint64_t Engine::memory_in_use() const noexcept {
  return impl_->memory_budget->used();
}

}  // namespace stateroom::wasm
