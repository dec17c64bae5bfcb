// GuestService: one room's sandboxed instance of a module, driven through the module interface.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "guest_output.hpp"
#include "module_impl.hpp"
#include "stateroom/codec.hpp"
#include "stateroom/hosted_service.hpp"

// Our Wasmtime wrapper crate's typed calls (see third_party/wasmtime/src/lib.rs).
struct stateroom_typed_func_t;
struct stateroom_call_t;

namespace stateroom::wasm::detail {

/// Compiles the batch module: `recv_batch(at, count)` calls the guest's `stateroom_recv` on each of
/// `count` records at `at` in the guest's memory (a record: the event's length as a little-endian
/// u32, its bytes, padding to 4 bytes). Throws std::runtime_error if it does not compile.
ModuleHandle compile_batcher(wasm_engine_t* engine);

/// A room's instance. Every event becomes a short plan of guest calls (allocate a buffer, write the
/// encoded event, deliver it, free the buffer); the calls run on a separate stack that pauses every
/// engine tick, so a long-running guest reports `pending()` and the room resumes it later. Anything
/// the guest gets wrong ends the room through Context::fail with the reason.
class GuestService final : public HostedService {
 public:
  GuestService(std::shared_ptr<const Module::Impl> module, std::string room_id);
  ~GuestService() override;
  GuestService(const GuestService&) = delete;
  GuestService& operator=(const GuestService&) = delete;

  /// Instantiates the module. The reason when it fails.
  std::optional<std::string> start();
  /// For loading: starts, runs `_initialize` and checks the version globals, to completion.
  std::optional<std::string> probe();

  void init(Context& ctx) override;
  void connect(ClientId client, Context& ctx) override;
  void disconnect(ClientId client, Context& ctx) override;
  void message(ClientId sender, const MessagePayload& payload, Context& ctx) override;
  /// v2: every message in one guest call (the batch module's loop over `stateroom_recv`).
  std::size_t messages(ClientId sender, std::span<const MessagePayload> payloads, Context& ctx) override;
  void timer(Context& ctx) override;
  bool pending() const noexcept override { return future_ != nullptr || typed_call_ != nullptr; }
  void resume(Context& ctx) override;

  // Imports: the guest calls these during a delivery.
  static wasm_trap_t* on_send_v2(void*, wasmtime_caller_t*, wasmtime_val_raw_t* args, std::size_t) noexcept;
  static wasm_trap_t* on_send_text_v1(void*, wasmtime_caller_t*, wasmtime_val_raw_t* args, std::size_t) noexcept;
  static wasm_trap_t* on_send_binary_v1(void*, wasmtime_caller_t*, wasmtime_val_raw_t* args, std::size_t) noexcept;
  static wasm_trap_t* on_set_timer_v1(void*, wasmtime_caller_t*, wasmtime_val_raw_t* args, std::size_t) noexcept;

 private:
  /// One step of an event's plan.
  enum class Step : std::uint8_t {
    initialize,     ///< call `_initialize`
    check_version,  ///< read the version globals through memory
    stage,          ///< make the guest's block hold `buffer_` (free a smaller one, allocate a larger one)
    deliver,        ///< copy `buffer_` into the block, call `entry_` with `entry_args_` (+ its pointer and length)
  };
  /// The smallest block allocated in the guest for the host's events.
  static constexpr std::uint32_t min_block_size = 1024;
  /// Past this an event cannot be handed over: the block, a 32-bit size grown in powers of two.
  static constexpr std::uint64_t max_block_size = std::uint64_t{1} << 31;
  /// A batch of messages stops short of this many bytes (a first message always goes).
  static constexpr std::size_t max_batch_bytes = 256 * 1024;
  using Clock = std::chrono::steady_clock;

  /// Runs a new event's plan as far as it goes without pausing.
  void begin(Context& ctx);
  /// Advances the plan: polls the call in flight, starts the next steps. Stops when the plan is
  /// done, a call pauses, or the room failed.
  void advance();
  /// Marks the start of a slice of the call in flight, before each poll.
  void start_slice() noexcept;
  void start_call(const wasmtime_func_t& func, const std::int32_t* args, std::size_t nargs, std::size_t nresults);
  /// Checks the call that just finished; false (room failed) on a trap.
  bool finish_call();
  void fail(std::string reason);
  std::optional<std::string> check_versions();
  /// `len` bytes of guest memory at `ptr`, or null when they are not all inside it.
  std::uint8_t* guest_memory(wasmtime_context_t* context, std::uint32_t ptr, std::uint32_t len);
  void plan(std::initializer_list<Step> steps);
  void set_entry(const wasmtime_func_t& func, std::initializer_list<std::int32_t> args, bool takes_buffer);
  /// Delivers a v2 event without a payload.
  void deliver_v2(const codec::MessageToProcess& event, Context& ctx);

  wasm_trap_t* send_v2(wasmtime_caller_t* caller, std::uint32_t ptr, std::uint32_t len);
  wasm_trap_t* send_v1(wasmtime_caller_t* caller, std::int32_t recipient, std::uint32_t ptr, std::uint32_t len,
                       PayloadKind kind);
  /// Runs an import's body; an exception becomes a trap that fails the room with its reason.
  template <class Body>
  wasm_trap_t* guarded(const char* function, Body&& body) noexcept;
  /// Records `reason` as the cause of the trap it returns.
  wasm_trap_t* guest_fault(std::string reason);
  static wasmtime_error_t* on_deadline(wasmtime_context_t*, void* self, std::uint64_t* delta,
                                       wasmtime_update_deadline_kind_t* kind) noexcept;

  std::shared_ptr<const Module::Impl> module_;
  const std::string room_id_;
  GuestOutput output_;  ///< the guest's stdout and stderr, to the log
  bool holds_slot_ = false;
  StoreHandle store_;
  wasmtime_context_t* context_ = nullptr;
  wasmtime_instance_t instance_{};
  wasmtime_memory_t memory_{};
  std::uint8_t* memory_base_ = nullptr;  ///< where the memory lies: it never moves
  std::uint64_t memory_size_ = 0;        ///< its size when last read (it only grows)
  wasmtime_func_t malloc_{}, free_{}, recv_{}, initialize_{};
  wasmtime_func_t recv_batch_{};  ///< v2: the batch module's `recv_batch`
  bool has_batch_ = false;
  wasmtime_func_t v1_initialize_{}, v1_connect_{}, v1_disconnect_{}, v1_timer_{}, v1_message_{}, v1_binary_{};

  // The plan of the event being handled.
  std::array<Step, 6> steps_{};
  std::uint8_t step_count_ = 0, next_step_ = 0;
  Step current_step_ = Step::deliver;
  std::string buffer_;  ///< the event's bytes, for the guest's block (unless written there already)
  std::uint32_t in_block_ = 0;  ///< the event's size when it was written into the block directly
  /// Where to write an event of `size` bytes: the block when it holds it, else `buffer_`.
  std::uint8_t* event_space(std::size_t size);
  // One block in guest memory, allocated with the guest's allocator and kept for the instance's
  // life, carries every event: an event is then a single guest call (the interface lets the host
  // free a block whenever it likes, and guests read their event without keeping it).
  std::uint32_t block_ptr_ = 0;
  std::uint32_t block_size_ = 0;
  bool freeing_block_ = false;  ///< the staging call in flight frees the block (else allocates it)
  wasmtime_func_t entry_{};
  std::array<std::int32_t, 2> entry_args_{};
  std::uint8_t entry_arg_count_ = 0;
  bool entry_takes_buffer_ = false;

  // The call in flight; Wasmtime holds on to these until the future is deleted.
  wasmtime_call_future_t* future_ = nullptr;
  stateroom_call_t* typed_call_ = nullptr;        ///< or this, for a typed `stateroom_recv`
  stateroom_typed_func_t* recv_typed_ = nullptr;  ///< `stateroom_recv`, its type checked once
  stateroom_typed_func_t* recv_batch_typed_ = nullptr;  ///< the batch module's `recv_batch`
  bool entry_is_recv_ = false;
  std::uint32_t batch_count_ = 0;  ///< the entry is `recv_batch` over this many records (0: not a batch)
  wasmtime_func_t call_func_{};
  std::array<wasmtime_val_t, 4> call_args_{};
  std::array<wasmtime_val_t, 1> call_results_{};
  wasm_trap_t* call_trap_ = nullptr;
  wasmtime_error_t* call_error_ = nullptr;

  Context* ctx_ = nullptr;  ///< the room, while a handler or resume runs
  bool failed_ = false;
  std::string failure_;  ///< why the room failed
  std::string fault_;  ///< why the host made the guest trap, when it did
  bool synchronous_ = false;  ///< outside a pausable call (instantiation): deadlines cannot pause
  Clock::duration event_time_{};  ///< guest time spent on the current event
  Clock::time_point slice_start_{};  ///< the slice's start; zero while a call's first slice runs
  bool call_polled_ = false;          ///< the call in flight was polled before (it paused)
  bool v1_timer_cancelled_ = false;

};

}  // namespace stateroom::wasm::detail
