// Engine::Impl: the Wasmtime engine, its instance pool and the epoch clock that interrupts guests.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <type_traits>
#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>

#include "stateroom/memory_budget.hpp"
#include "stateroom/wasm.hpp"
#include "wasmtime_util.hpp"

namespace stateroom::wasm {

struct Engine::Impl {
  /// How often the epoch advances: a running guest pauses (and is charged) at this granularity.
  static constexpr std::chrono::milliseconds tick{1};

  explicit Impl(Limits limits);
  ~Impl();

  /// A guest call (or an instantiation running a start function) begins, or ends, on this thread.
  /// The epoch clock ticks only while one is under way, paused ones included: with no guest
  /// running it sleeps, and costs nothing.
  void guest_started() noexcept;
  void guest_finished() noexcept;

  /// Reserves an instance slot; false when the engine already runs `max_instances`.
  bool acquire_instance() noexcept;
  void release_instance() noexcept;

  const Limits limits;
  detail::EngineHandle engine;
  std::atomic<std::uint32_t> live_instances{0};
  /// The linear memory of every room's instance together, against limits.total_memory_bytes:
  /// the Wasmtime wrapper crate's `stateroom_memory_budget_t` (which updates it as memories grow,
  /// and as their stores go) reads it directly. Shared with whatever else counts against it (the
  /// server's snapshots held in memory: Engine::memory_budget).
  const std::shared_ptr<MemoryBudget> memory_budget;
  static_assert(std::atomic<std::uint64_t>::is_always_lock_free && sizeof(MemoryBudget) == 16 &&
                std::is_standard_layout_v<MemoryBudget>);

 private:
  void tick_epochs();
  /// Whether any thread has a guest call under way.
  bool guests_active() const noexcept;

  /// Calls under way, counted per thread so that worker threads never write a shared cache line:
  /// each of the first 63 threads owns a slot (and counts without a locked instruction), any
  /// further threads share the last one.
  struct alignas(64) Slot {
    std::atomic<std::int64_t> active{0};
  };
  static constexpr std::size_t shared_slot = 63;
  std::array<Slot, shared_slot + 1> slots_{};
  static std::size_t slot_index() noexcept;
  std::atomic<bool> idle_{false};  ///< the ticker sleeps until a call begins
  /// A call beginning and the ticker going idle are ordered by an asymmetric fence (membarrier on
  /// the ticker's side) when the kernel has one, else by a full fence on every call.
  const bool asymmetric_;

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread ticker_;
};

}  // namespace stateroom::wasm
