// CallScheduler: runs a room's events as guest calls that pause at every engine tick.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "cpu_share.hpp"
#include "engine_impl.hpp"
#include "guest_memory.hpp"
#include "guest_output.hpp"
#include "stateroom/service.hpp"

// Our Wasmtime wrapper crate's typed calls (see third_party/wasmtime/src/lib.rs).
struct stateroom_typed_func_t;
struct stateroom_call_t;

namespace stateroom::wasm::detail {

class GuestInstance;

/// What Wasmtime says about a failed guest call (or instantiation), as the room's one-line reason.
std::string explain_failure(std::string raw, const Limits& limits);

/// Every event becomes a short plan of steps: make the guest's block hold the event, deliver it
/// (and, for a room's first event, the guest's start-up and version check). The guest calls run on
/// a separate stack that pauses every engine tick, so a long-running guest leaves the plan
/// `pending()` and the room resumes it later; the guest's time on one event is charged against the
/// CPU allowance at every tick. Anything the guest gets wrong ends the room through Context::fail
/// with the reason, and the scheduler then runs nothing more.
///
/// One block in guest memory, allocated with the guest's allocator and kept for the instance's
/// life, carries every event: an event is then a single guest call (both interfaces let the host
/// free a block whenever it likes, and guests read their event without keeping it).
class CallScheduler {
 public:
  using Clock = std::chrono::steady_clock;

  /// One step of an event's plan.
  enum class Step : std::uint8_t {
    initialize,     ///< call `_initialize`, when the module exports it
    check_version,  ///< read the version globals through memory (GuestInstance::check_versions)
    stage,          ///< make the block hold the event (free a smaller one, allocate a larger one)
    deliver,        ///< put the event in the block (unless it is there already), call the entry
  };

  /// The guest export that the deliver step calls, and its arguments.
  struct Entry {
    wasmtime_func_t func{};
    /// `func` typed as `(i32, i32) -> ()` (see typed()): called on the block and the event's
    /// length without a type check or argument vector. Null: `func` is called untyped.
    stateroom_typed_func_t* typed = nullptr;
    std::array<std::int32_t, 2> args{};  ///< the leading arguments
    std::uint8_t arg_count = 0;
    bool takes_event = false;   ///< then the block's address and the event's length follow them
    std::uint32_t records = 0;  ///< non-zero: the event is this many records, passed instead of its length
  };

  /// `guest` is asked for the version check; `output` is flushed when the room fails.
  CallScheduler(Engine::Impl& runtime, GuestOutput& output, GuestInstance& guest) noexcept
      : runtime_(runtime),
        output_(output),
        guest_(guest),
        share_(runtime.limits.cpu_window, runtime.limits.cpu_share_percent) {}
  ~CallScheduler() { stop(); }
  CallScheduler(const CallScheduler&) = delete;
  CallScheduler& operator=(const CallScheduler&) = delete;

  // --- setting up ---------------------------------------------------------------------------------

  /// Before instantiation: the store the calls run in; its epoch deadlines come here.
  void attach(wasmtime_store_t* store) noexcept;
  /// Instantiates `pre` in the store. Instantiation cannot pause; a start function still gets the
  /// per-event allowance. The reason when it fails.
  std::optional<std::string> instantiate(const wasmtime_instance_pre_t* pre, wasmtime_instance_t& instance);
  /// After instantiation: the guest's memory, its allocator, and `_initialize` (null: none).
  void bind(GuestMemory& memory, const wasmtime_func_t& malloc, const wasmtime_func_t& free,
            const wasmtime_func_t* initialize) noexcept;
  /// `func` typed as `(i32, i32) -> ()`, for an Entry; null when it is not of that type (or the
  /// wrapper crate is not there). The scheduler keeps it for the calls that use it (two at most).
  stateroom_typed_func_t* typed(const wasmtime_func_t& func);
  /// Ends the call in flight (unwinding the guest's stack) and frees what calls hold, before the
  /// store goes.
  void stop() noexcept;

  // --- events -------------------------------------------------------------------------------------

  /// Where to write an event of `size` bytes before running its plan: the block when it holds it,
  /// else a host buffer. Null when no block can hold it: the room (`ctx`) has then failed.
  std::uint8_t* event_space(std::size_t size, Context& ctx);
  /// The event is a copy of `bytes`.
  void set_event(std::string_view bytes);
  /// Runs the event's plan: `steps`, delivering to `entry`, as far as it goes without pausing.
  void run(std::initializer_list<Step> steps, const Entry& entry, Context& ctx);
  /// The usual plan: stage and deliver (deliver alone when the entry takes no event).
  void deliver(const Entry& entry, Context& ctx);
  /// For loading, without a room: runs `steps` to their end. The reason when the guest failed.
  std::optional<std::string> run_to_end(std::initializer_list<Step> steps);

  /// Whether a call paused and the plan has not finished, or the room is held back (over its CPU
  /// share) with the plan waiting.
  bool pending() const noexcept { return future_ != nullptr || typed_call_ != nullptr || held_; }
  /// Continues the plan for a while (unless the room is still held back).
  void resume(Context& ctx);
  /// While held back: how long until the room's use is within its share again.
  Clock::duration resume_delay() const noexcept { return held_ ? hold_for_ : Clock::duration{}; }

  // --- for the guest's imports --------------------------------------------------------------------

  /// The guest block that carries events (address and size; 0, 0 before the first), which lives in
  /// guest memory: a snapshot keeps it, and a restored instance takes it back.
  std::pair<std::uint32_t, std::uint32_t> block() const noexcept { return {block_ptr_, block_size_}; }
  void set_block(std::uint32_t ptr, std::uint32_t size) noexcept {
    block_ptr_ = ptr;
    block_size_ = size;
  }

  /// The room, while a handler or resume runs (null while loading: there is no room to act on).
  Context* room() const noexcept { return ctx_; }
  /// Records `reason` as the cause of the trap it returns (the room fails with it).
  wasm_trap_t* fault(std::string reason);

  // --- the memory budget of all rooms ---------------------------------------------------------------

  /// Called by the store's limiter (`env`: the scheduler) when the budget of all rooms refuses a
  /// growth of the guest's memory to `desired` bytes, just before the growth traps: the room
  /// fails with budget_refusal(desired) as its reason.
  static void on_budget_refused(void* env, std::uint64_t desired) noexcept;
  /// Whether the budget refused this guest memory (at instantiation: the room cannot start now).
  bool budget_refused() const noexcept { return budget_refused_; }
  /// The reason for a room whose memory of `desired` bytes the budget cannot hold.
  std::string budget_refusal(std::uint64_t desired) const;

 private:
  /// The smallest block allocated in the guest for the host's events.
  static constexpr std::uint32_t min_block_size = 1024;
  /// Past this an event cannot be handed over: the block, a 32-bit size grown in powers of two.
  static constexpr std::uint64_t max_block_size = std::uint64_t{1} << 31;

  void plan(std::initializer_list<Step> steps, const Entry& entry) noexcept;
  /// Runs a new event's plan as far as it goes without pausing.
  void begin(Context& ctx);
  /// Advances the plan: polls the call in flight, starts the next steps. Stops when the plan is
  /// done, a call pauses, or the room failed.
  void advance();
  /// Marks the start of a slice of the call in flight, before each poll.
  void start_slice() noexcept;
  /// Whether the room must wait before running more (over its CPU share); fails it when it has
  /// waited for a whole window. Reads the clock only when the last tick found it over its share.
  bool held_back();
  void start_call(const wasmtime_func_t& func, const std::int32_t* args, std::size_t nargs,
                  std::size_t nresults);
  /// Checks the call that just finished; false (room failed) on a trap.
  bool finish_call();
  void fail(std::string reason);
  static wasmtime_error_t* on_deadline(wasmtime_context_t*, void* self, std::uint64_t* delta,
                                       wasmtime_update_deadline_kind_t* kind) noexcept;

  Engine::Impl& runtime_;
  GuestOutput& output_;
  GuestInstance& guest_;
  wasmtime_context_t* context_ = nullptr;
  GuestMemory* memory_ = nullptr;
  wasmtime_func_t malloc_{}, free_{}, initialize_{};
  bool has_initialize_ = false;
  std::array<stateroom_typed_func_t*, 2> typed_{};

  // The plan of the event being handled.
  std::array<Step, 4> steps_{};
  std::uint8_t step_count_ = 0, next_step_ = 0;
  Step current_step_ = Step::deliver;
  Entry entry_{};
  std::string buffer_;          ///< the event's bytes, for the block (unless written there already)
  std::uint32_t in_block_ = 0;  ///< the event's size when it was written into the block directly
  std::uint32_t block_ptr_ = 0;
  std::uint32_t block_size_ = 0;
  bool freeing_block_ = false;  ///< the staging call in flight frees the block (else allocates it)

  // The call in flight; Wasmtime holds on to these until the future is deleted.
  wasmtime_call_future_t* future_ = nullptr;
  stateroom_call_t* typed_call_ = nullptr;  ///< or this, for an entry's typed function
  wasmtime_func_t call_func_{};
  std::array<wasmtime_val_t, 4> call_args_{};
  std::array<wasmtime_val_t, 1> call_results_{};
  wasm_trap_t* call_trap_ = nullptr;
  wasmtime_error_t* call_error_ = nullptr;

  Context* ctx_ = nullptr;  ///< the room, while a handler or resume runs
  bool failed_ = false;
  std::string failure_;              ///< why the room failed
  std::string fault_;                ///< why the host made the guest trap, when it did
  bool budget_refused_ = false;      ///< the memory budget refused a growth (see on_budget_refused)
  bool synchronous_ = false;         ///< outside a pausable call (instantiation): deadlines cannot pause
  Clock::duration event_time_{};     ///< guest time spent on the current event
  Clock::time_point slice_start_{};  ///< the slice's start; zero while a call's first slice runs
  bool call_polled_ = false;         ///< the call in flight was polled before (it paused)

  // The CPU share (Limits::cpu_share_percent over cpu_window).
  CpuShare share_;
  bool held_ = false;                ///< held back: the plan waits for the share
  bool told_held_ = false;           ///< the log has said that this room is held back
  Clock::duration hold_for_{};       ///< while held: until the share allows it again
  Clock::time_point held_since_{};   ///< while held: since when
  Clock::duration held_total_{};     ///< held back in all, since the last window without a hold
  Clock::time_point released_at_{};  ///< when the last hold ended
};

}  // namespace stateroom::wasm::detail
