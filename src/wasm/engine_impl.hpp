// Engine::Impl: the Wasmtime engine, its instance pool and the epoch clock that interrupts guests.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "stateroom/wasm.hpp"
#include "wasmtime_util.hpp"

namespace stateroom::wasm {

struct Engine::Impl {
  /// How often the epoch advances: a running guest pauses (and is charged) at this granularity.
  static constexpr std::chrono::milliseconds tick{1};

  explicit Impl(Limits limits);
  ~Impl();

  /// Reserves an instance slot; false when the engine already runs `max_instances`.
  bool acquire_instance() noexcept;
  void release_instance() noexcept;

  const Limits limits;
  detail::EngineHandle engine;
  std::atomic<std::uint32_t> live_instances{0};

 private:
  void tick_epochs();

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread ticker_;
};

}  // namespace stateroom::wasm
