#include "call_scheduler.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "../common/text.hpp"
#include "guest_instance.hpp"

#if STATEROOM_WASMTIME_WRAPPER
// The typed calls of our Wasmtime wrapper crate (third_party/wasmtime/src/lib.rs): no type check
// or argument vector per event.
extern "C" stateroom_typed_func_t* stateroom_typed_func_new(const wasmtime_context_t* context,
                                                            const wasmtime_func_t* func);
extern "C" void stateroom_typed_func_delete(stateroom_typed_func_t* func);
extern "C" stateroom_call_t* stateroom_typed_func_call_async(wasmtime_context_t* context,
                                                             const stateroom_typed_func_t* func,
                                                             std::int32_t a, std::int32_t b,
                                                             wasmtime_error_t** error);
extern "C" bool stateroom_call_poll(stateroom_call_t* call);
extern "C" void stateroom_call_delete(stateroom_call_t* call);
#endif

namespace stateroom::wasm::detail {

namespace {

using ::stateroom::detail::format_bytes;

std::uint32_t u32(const wasmtime_val_t& v) noexcept {
  return static_cast<std::uint32_t>(v.of.i32);
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

std::string explain_failure(std::string raw, const Limits& limits) {
  // The cause alone: Wasmtime's backtrace stays out of the one-line reason.
  std::string_view text = raw;
  if (auto at = text.rfind("Caused by:"); at != std::string_view::npos) {
    text.remove_prefix(at + 10);
  } else if (auto nl = text.find('\n'); nl != std::string_view::npos) {
    text = text.substr(0, nl);
  }
  std::string cause = trim(text);
  if (cause.starts_with("0: ")) cause.erase(0, 3);
  if (cause.find("growing memory") != std::string::npos || cause.find("grow memory") != std::string::npos)
    return fmt::format("the guest's memory reached its limit of {} ({})", format_bytes(limits.memory_bytes),
                       cause);
  return "the guest trapped: " + cause;
}

// --- setting up -----------------------------------------------------------------------------------

void CallScheduler::attach(wasmtime_store_t* store) noexcept {
  context_ = wasmtime_store_context(store);
  wasmtime_store_epoch_deadline_callback(store, on_deadline, this, nullptr);
}

std::optional<std::string> CallScheduler::instantiate(const wasmtime_instance_pre_t* pre,
                                                      wasmtime_instance_t& instance) {
  synchronous_ = true;
  event_time_ = {};
  slice_start_ = Clock::now();
  wasmtime_context_set_epoch_deadline(context_, 1);
  wasm_trap_t* trap = nullptr;
  runtime_.guest_started();
  wasmtime_error_t* error = wasmtime_instance_pre_instantiate(pre, context_, &instance, &trap);
  runtime_.guest_finished();
  synchronous_ = false;
  // The error or trap is taken (and freed) even when the host's own reason replaces its message.
  if (error) {
    std::string message = take_message(error);
    return "instantiating the module failed: " + (fault_.empty() ? message : fault_);
  }
  if (trap) {
    std::string message = take_message(trap);
    return fault_.empty() ? explain_failure(std::move(message), runtime_.limits) : fault_;
  }
  return std::nullopt;
}

void CallScheduler::bind(GuestMemory& memory, const wasmtime_func_t& malloc, const wasmtime_func_t& free,
                         const wasmtime_func_t* initialize) noexcept {
  memory_ = &memory;
  malloc_ = malloc;
  free_ = free;
  has_initialize_ = initialize != nullptr;
  if (initialize) initialize_ = *initialize;
}

stateroom_typed_func_t* CallScheduler::typed([[maybe_unused]] const wasmtime_func_t& func) {
#if STATEROOM_WASMTIME_WRAPPER
  for (stateroom_typed_func_t*& slot : typed_) {
    if (slot) continue;
    slot = stateroom_typed_func_new(context_, &func);
    return slot;
  }
#endif
  return nullptr;
}

void CallScheduler::stop() noexcept {
  // Deleting an unfinished call unwinds the guest's stack first.
  if (future_) wasmtime_call_future_delete(future_);
#if STATEROOM_WASMTIME_WRAPPER
  if (typed_call_) stateroom_call_delete(typed_call_);
#endif
  if (future_ || typed_call_) runtime_.guest_finished();
  future_ = nullptr;
  typed_call_ = nullptr;
#if STATEROOM_WASMTIME_WRAPPER
  for (stateroom_typed_func_t* func : typed_)
    if (func) stateroom_typed_func_delete(func);
#endif
  typed_.fill(nullptr);
  if (call_trap_) wasm_trap_delete(call_trap_);
  if (call_error_) wasmtime_error_delete(call_error_);
  call_trap_ = nullptr;
  call_error_ = nullptr;
}

// --- events ---------------------------------------------------------------------------------------

std::uint8_t* CallScheduler::event_space(std::size_t size, Context& ctx) {
  // The block is a 32-bit guest allocation grown in powers of two: an event past 2 GiB, or past
  // the guest's whole memory, cannot be handed over (the server refuses such a message size).
  const std::uint64_t fits = std::min<std::uint64_t>(runtime_.limits.memory_bytes, max_block_size);
  if (size >= fits) {
    ctx_ = &ctx;  // outside a call: the room hears of it here
    fail(fmt::format("an event of {} bytes does not fit in the guest's memory", size));
    ctx_ = nullptr;
    return nullptr;
  }
  // Between calls the host may write the guest's memory; a block that holds the event takes it
  // directly. Otherwise `buffer_` keeps it while the block is replaced (calls that may pause).
  if (!failed_ && size > 0 && size <= block_size_) {
    if (std::uint8_t* target = memory_->at(context_, block_ptr_, static_cast<std::uint32_t>(size))) {
      in_block_ = static_cast<std::uint32_t>(size);
      return target;
    }
  }
  in_block_ = 0;
  buffer_.resize(size);
  return reinterpret_cast<std::uint8_t*>(buffer_.data());
}

void CallScheduler::set_event(std::string_view bytes) {
  in_block_ = 0;
  buffer_.assign(bytes);
}

void CallScheduler::plan(std::initializer_list<Step> steps, const Entry& entry) noexcept {
  step_count_ = 0;
  for (Step s : steps) steps_[step_count_++] = s;
  next_step_ = 0;
  entry_ = entry;
}

void CallScheduler::run(std::initializer_list<Step> steps, const Entry& entry, Context& ctx) {
  plan(steps, entry);
  begin(ctx);
}

void CallScheduler::deliver(const Entry& entry, Context& ctx) {
  if (entry.takes_event) {
    plan({Step::stage, Step::deliver}, entry);
  } else {
    plan({Step::deliver}, entry);
  }
  begin(ctx);
}

std::optional<std::string> CallScheduler::run_to_end(std::initializer_list<Step> steps) {
  plan(steps, Entry{});
  do {
    advance();  // loading may wait for the guest: it pauses at engine ticks like any other call
  } while (pending() && !failed_);
  if (failed_) return failure_;
  return std::nullopt;
}

void CallScheduler::begin(Context& ctx) {
  if (failed_) return;
  event_time_ = {};
  resume(ctx);
}

void CallScheduler::resume(Context& ctx) {
  ctx_ = &ctx;
  if (!share_.over() || !held_back()) advance();
  ctx_ = nullptr;
  if (output_.dropped() && !pending()) output_.report_dropped();  // once per event, when it ends
}

bool CallScheduler::held_back() {
  const auto now = Clock::now();
  const auto wait = share_.wait(now);
  if (wait == Clock::duration{}) {
    if (held_) {
      held_total_ += now - held_since_;
      released_at_ = now;
      held_ = false;
    }
    return false;
  }
  const auto window = runtime_.limits.cpu_window;
  if (!held_) {
    // A whole window without being held back starts the count again.
    if (released_at_ == Clock::time_point{} || now - released_at_ > window) held_total_ = {};
    held_ = true;
    held_since_ = now;
    if (!told_held_) {
      told_held_ = true;
      spdlog::warn("room '{}': its guest used more than its CPU share ({} % of a core over {} ms): held back",
                   guest_.room_id(), runtime_.limits.cpu_share_percent, window.count());
    }
  }
  const auto held_for = std::chrono::duration_cast<std::chrono::milliseconds>(held_total_ + (now - held_since_));
  if (held_for >= window) {
    held_ = false;
    fail(fmt::format("the guest kept using more than its CPU share ({} % of a core over {} ms) and was held "
                     "back for {} ms",
                     runtime_.limits.cpu_share_percent, window.count(), held_for.count()));
    return true;
  }
  hold_for_ = wait;
  return true;
}

void CallScheduler::start_slice() noexcept {
  // A call's first slice is not timed: it ends at the first engine tick, and reading the clock for
  // every call would cost as much as a short event's guest code. A call is thus charged from its
  // first tick on (at most one tick less than it ran); a resumed call is timed from its resumption.
  slice_start_ = call_polled_ ? Clock::now() : Clock::time_point{};
  call_polled_ = true;
}

void CallScheduler::advance() {
  while (!failed_) {
    if (future_) {
      start_slice();
      if (!wasmtime_call_future_poll(future_)) return;  // paused: the room resumes us later
      wasmtime_call_future_delete(future_);
      future_ = nullptr;
      runtime_.guest_finished();
      if (!finish_call()) return;
    }
#if STATEROOM_WASMTIME_WRAPPER
    if (typed_call_) {
      start_slice();
      if (!stateroom_call_poll(typed_call_)) return;
      stateroom_call_delete(typed_call_);
      typed_call_ = nullptr;
      runtime_.guest_finished();
      if (!finish_call()) return;
    }
#endif
    if (next_step_ == step_count_) return;
    current_step_ = steps_[next_step_++];
    const auto size = static_cast<std::int32_t>(in_block_ ? in_block_ : buffer_.size());
    switch (current_step_) {
      case Step::initialize:
        if (has_initialize_) start_call(initialize_, {}, 0, 0);
        break;
      case Step::check_version:
        if (auto error = guest_.check_versions()) {
          fail(std::move(*error));
          return;
        }
        break;
      case Step::stage: {
        if (in_block_ || buffer_.size() <= block_size_) break;  // the block holds it: no call
        --next_step_;                                           // once the block is replaced, stage again
        if (block_size_ > 0) {
          const std::int32_t args[] = {static_cast<std::int32_t>(block_ptr_),
                                       static_cast<std::int32_t>(block_size_)};
          freeing_block_ = true;
          start_call(free_, args, 2, 0);
        } else {
          // Grown in powers of two, so a room's messages soon all fit.
          std::uint32_t grown = min_block_size;
          while (grown < buffer_.size()) grown *= 2;
          const std::int32_t args[] = {static_cast<std::int32_t>(grown)};
          block_size_ = grown;  // what the allocation is for, until it returns
          start_call(malloc_, args, 1, 1);
        }
        break;
      }
      case Step::deliver: {
        std::int32_t args[4];
        std::size_t n = 0;
        for (std::size_t i = 0; i < entry_.arg_count; ++i) args[n++] = entry_.args[i];
        if (entry_.takes_event) {
          std::uint8_t* target = memory_->at(context_, block_ptr_, static_cast<std::uint32_t>(size));
          if (!target) {
            fail(fmt::format("the guest's block at {} no longer lies inside its memory", block_ptr_));
            return;
          }
          if (size && !in_block_) std::memcpy(target, buffer_.data(), static_cast<std::size_t>(size));
          in_block_ = 0;
          args[n++] = static_cast<std::int32_t>(block_ptr_);
          args[n++] = entry_.records ? static_cast<std::int32_t>(entry_.records) : size;
        }
#if STATEROOM_WASMTIME_WRAPPER
        if (entry_.typed) {
          call_error_ = nullptr;
          call_polled_ = false;
          wasmtime_context_set_epoch_deadline(context_, 1);
          runtime_.guest_started();
          typed_call_ =
              stateroom_typed_func_call_async(context_, entry_.typed, args[0], args[1], &call_error_);
          break;
        }
#endif
        start_call(entry_.func, args, n, 0);
        break;
      }
    }
  }
}

void CallScheduler::start_call(const wasmtime_func_t& func, const std::int32_t* args, std::size_t nargs,
                               std::size_t nresults) {
  call_func_ = func;
  for (std::size_t i = 0; i < nargs; ++i) {
    call_args_[i].kind = WASMTIME_I32;
    call_args_[i].of.i32 = args[i];
  }
  call_trap_ = nullptr;
  call_error_ = nullptr;
  call_polled_ = false;
  wasmtime_context_set_epoch_deadline(context_, 1);
  runtime_.guest_started();
  future_ = wasmtime_func_call_async(context_, &call_func_, call_args_.data(), nargs, call_results_.data(),
                                     nresults, &call_trap_, &call_error_);
}

bool CallScheduler::finish_call() {
  if (call_trap_ || call_error_) {
    std::string raw = call_trap_ ? take_message(call_trap_) : take_message(call_error_);
    call_trap_ = nullptr;
    call_error_ = nullptr;
    fail(fault_.empty() ? explain_failure(std::move(raw), runtime_.limits) : fault_);
    return false;
  }
  if (current_step_ == Step::stage) {
    if (freeing_block_) {
      freeing_block_ = false;
      block_ptr_ = 0;
      block_size_ = 0;
      return true;
    }
    block_ptr_ = u32(call_results_[0]);
    if (!memory_->at(context_, block_ptr_, block_size_)) {
      fail(fmt::format("the guest's allocator returned {} for {} bytes, outside its memory", block_ptr_,
                       block_size_));
      return false;
    }
  }
  return true;
}

void CallScheduler::fail(std::string reason) {
  failed_ = true;
  output_.flush();
  failure_ = std::move(reason);
  // Memory the other rooms hold is no fault of this one: it cannot run now (1013), and its last
  // snapshot stands.
  if (ctx_) budget_refused_ ? ctx_->unavailable(failure_) : ctx_->fail(failure_);
}

wasm_trap_t* CallScheduler::fault(std::string reason) {
  fault_ = std::move(reason);
  return wasmtime_trap_new(fault_.data(), fault_.size());
}

// --- the memory budget of all rooms -----------------------------------------------------------------

void CallScheduler::on_budget_refused(void* env, std::uint64_t desired) noexcept {
  auto& self = *static_cast<CallScheduler*>(env);
  self.budget_refused_ = true;
  try {
    self.fault_ = self.budget_refusal(desired);
  } catch (...) {
    self.fault_.clear();  // the trap's own message says it
  }
}

std::string CallScheduler::budget_refusal(std::uint64_t desired) const {
  const auto& budget = *runtime_.memory_budget;
  return fmt::format("the memory of all rooms is at its limit of {} ({} in use; this room's would grow to {})",
                     format_bytes(budget.limit()), format_bytes(budget.used()), format_bytes(desired));
}

// --- deadlines ------------------------------------------------------------------------------------

wasmtime_error_t* CallScheduler::on_deadline(wasmtime_context_t*, void* data, std::uint64_t* delta,
                                             wasmtime_update_deadline_kind_t* kind) noexcept {
  auto& self = *static_cast<CallScheduler*>(data);
  const auto now = Clock::now();
  // The share is charged the slice when it was timed, else a tick: a tick lands in a call with the
  // odds of its length, so short untimed calls are charged what they use on average.
  const auto slice = self.slice_start_ != Clock::time_point{} ? now - self.slice_start_ : Clock::duration{};
  self.event_time_ += slice;
  self.share_.charge(now, self.slice_start_ != Clock::time_point{} ? slice : Clock::duration(Engine::Impl::tick));
  self.slice_start_ = now;
  const auto allowance = self.runtime_.limits.cpu_time_per_event;
  if (self.event_time_ >= allowance) {
    try {
      self.fault_ =
          fmt::format("the guest ran past its CPU time allowance of {} ms for one event", allowance.count());
    } catch (...) {
      self.fault_.clear();  // the error's own message says it
    }
    return wasmtime_error_new(self.fault_.empty() ? "the guest ran past its CPU time allowance"
                                                  : self.fault_.c_str());
  }
  *delta = 1;
  *kind = self.synchronous_ ? WASMTIME_UPDATE_DEADLINE_CONTINUE : WASMTIME_UPDATE_DEADLINE_YIELD;
  return nullptr;
}

}  // namespace stateroom::wasm::detail
