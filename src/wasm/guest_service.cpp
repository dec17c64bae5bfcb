#include "guest_service.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "stateroom/codec.hpp"

#if STATEROOM_WASMTIME_WRAPPER
// Defined by our Wasmtime wrapper crate (third_party/wasmtime/src/lib.rs): memory growth past the
// cap traps instead of returning -1. With a prebuilt Wasmtime (STATEROOM_WASMTIME_ROOT) the growth
// fails with -1 instead, and the guest's allocator reports it (the C++ guest SDK traps).
extern "C" void stateroom_store_limits_trapping(wasmtime_context_t* context, std::int64_t memory_size,
                                                std::int64_t table_elements);
// The typed call of `stateroom_recv`: no type check or argument vector per event.
extern "C" stateroom_typed_func_t* stateroom_typed_func_new(const wasmtime_context_t* context,
                                                            const wasmtime_func_t* func);
extern "C" void stateroom_typed_func_delete(stateroom_typed_func_t* func);
extern "C" stateroom_call_t* stateroom_typed_func_call_async(wasmtime_context_t* context,
                                                             const stateroom_typed_func_t* func, std::int32_t a,
                                                             std::int32_t b, wasmtime_error_t** error);
extern "C" bool stateroom_call_poll(stateroom_call_t* call);
extern "C" void stateroom_call_delete(stateroom_call_t* call);
#endif

namespace stateroom::wasm::detail {

namespace {


std::uint32_t u32(const wasmtime_val_t& v) noexcept { return static_cast<std::uint32_t>(v.of.i32); }
std::uint32_t u32(const wasmtime_val_raw_t& v) noexcept { return static_cast<std::uint32_t>(v.i32); }

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.remove_suffix(1);
  return std::string(s);
}

std::string format_bytes(std::uint64_t bytes) {
  if (bytes % (1ull << 30) == 0) return fmt::format("{} GiB", bytes >> 30);
  if (bytes % (1ull << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  if (bytes % (1ull << 10) == 0) return fmt::format("{} KiB", bytes >> 10);
  return fmt::format("{} bytes", bytes);
}

/// What Wasmtime says about a failed call, reduced to its cause (its backtrace stays out of the
/// one-line reason; the cause is what a reader needs).
std::string explain(std::string raw, const Limits& limits) {
  std::string_view text = raw;
  if (auto at = text.rfind("Caused by:"); at != std::string_view::npos) {
    text.remove_prefix(at + 10);
  } else if (auto nl = text.find('\n'); nl != std::string_view::npos) {
    text = text.substr(0, nl);
  }
  std::string cause = trim(text);
  if (cause.starts_with("0: ")) cause.erase(0, 3);
  if (cause.find("growing memory") != std::string::npos || cause.find("grow memory") != std::string::npos)
    return fmt::format("the guest's memory reached its limit of {} ({})", format_bytes(limits.memory_bytes), cause);
  return "the guest trapped: " + cause;
}

}  // namespace

ModuleHandle compile_batcher(wasm_engine_t* engine) {
  // Records: u32 length, the bytes, padding to 4; the next record is at at + 4 + round4(length).
  static constexpr std::string_view text = R"wat(
    (module
      (import "guest" "memory" (memory 0))
      (import "guest" "stateroom_recv" (func $recv (param i32 i32)))
      (func (export "recv_batch") (param $at i32) (param $count i32)
        (local $len i32)
        (block $done
          (loop $next
            (br_if $done (i32.eqz (local.get $count)))
            (local.set $len (i32.load (local.get $at)))
            (call $recv (i32.add (local.get $at) (i32.const 4)) (local.get $len))
            (local.set $at (i32.add (local.get $at)
                                    (i32.and (i32.add (local.get $len) (i32.const 7)) (i32.const -4))))
            (local.set $count (i32.sub (local.get $count) (i32.const 1)))
            (br $next)))))
  )wat";
  wasm_byte_vec_t wasm;
  if (wasmtime_error_t* error = wasmtime_wat2wasm(text.data(), text.size(), &wasm))
    throw std::runtime_error("the batch module does not parse: " + take_message(error));
  wasmtime_module_t* module = nullptr;
  wasmtime_error_t* error =
      wasmtime_module_new(engine, reinterpret_cast<const std::uint8_t*>(wasm.data), wasm.size, &module);
  wasm_byte_vec_delete(&wasm);
  if (error) throw std::runtime_error("the batch module does not compile: " + take_message(error));
  return ModuleHandle(module);
}

GuestService::GuestService(std::shared_ptr<const Module::Impl> module, std::string room_id)
    : module_(std::move(module)), room_id_(std::move(room_id)), output_(room_id_) {}

GuestService::~GuestService() {
  // Deleting an unfinished call unwinds the guest's stack first.
  if (future_) wasmtime_call_future_delete(future_);
#if STATEROOM_WASMTIME_WRAPPER
  if (typed_call_) stateroom_call_delete(typed_call_);
#endif
  if (future_ || typed_call_) module_->runtime().guest_finished();
#if STATEROOM_WASMTIME_WRAPPER
  if (recv_typed_) stateroom_typed_func_delete(recv_typed_);
  if (recv_batch_typed_) stateroom_typed_func_delete(recv_batch_typed_);
#endif
  if (call_trap_) wasm_trap_delete(call_trap_);
  if (call_error_) wasmtime_error_delete(call_error_);
  output_.flush();
  store_.reset();
  if (holds_slot_) module_->runtime().release_instance();
}

std::optional<std::string> GuestService::start() {
  auto& runtime = module_->runtime();
  const Limits& limits = runtime.limits;
  if (!runtime.acquire_instance())
    return fmt::format("the limit of {} WebAssembly instances (rooms) is reached", limits.max_instances);
  holds_slot_ = true;

  store_.reset(wasmtime_store_new(runtime.engine.get(), this, nullptr));
  context_ = wasmtime_store_context(store_.get());
  wasmtime_store_limiter(store_.get(), static_cast<std::int64_t>(limits.memory_bytes), -1, -1, -1, -1);
#if STATEROOM_WASMTIME_WRAPPER
  stateroom_store_limits_trapping(context_, static_cast<std::int64_t>(limits.memory_bytes), -1);
#endif
  wasmtime_store_epoch_deadline_callback(store_.get(), on_deadline, this, nullptr);

  // WASI: output goes to the log, clocks and random work, and there is nothing else to reach.
  wasi_config_t* wasi = wasi_config_new();
  wasi_config_set_stdout_custom(wasi, GuestOutput::on_stdout, &output_, nullptr);
  wasi_config_set_stderr_custom(wasi, GuestOutput::on_stderr, &output_, nullptr);
  if (wasmtime_error_t* error = wasmtime_context_set_wasi(context_, wasi))
    return "setting up WASI failed: " + take_message(error);

  // Instantiation cannot pause; a start function still gets the per-event allowance.
  synchronous_ = true;
  event_time_ = {};
  slice_start_ = Clock::now();
  wasmtime_context_set_epoch_deadline(context_, 1);
  wasm_trap_t* trap = nullptr;
  runtime.guest_started();
  wasmtime_error_t* error = wasmtime_instance_pre_instantiate(module_->pre.get(), context_, &instance_, &trap);
  runtime.guest_finished();
  synchronous_ = false;
  if (error) return "instantiating the module failed: " + (fault_.empty() ? take_message(error) : fault_);
  if (trap) return fault_.empty() ? explain(take_message(trap), limits) : fault_;

  auto get = [&](const char* name, wasmtime_extern_kind_t kind, auto& out) {
    wasmtime_extern_t item;
    if (!wasmtime_instance_export_get(context_, &instance_, name, std::strlen(name), &item)) return false;
    if (item.kind != kind) return false;
    if constexpr (std::is_same_v<std::decay_t<decltype(out)>, wasmtime_memory_t>) {
      out = item.of.memory;
    } else {
      out = item.of.func;
    }
    return true;
  };
  bool ok = get("memory", WASMTIME_EXTERN_MEMORY, memory_);
  if (module_->has_initialize) ok &= get("_initialize", WASMTIME_EXTERN_FUNC, initialize_);
  if (module_->abi == Abi::v2) {
    ok &= get("stateroom_malloc", WASMTIME_EXTERN_FUNC, malloc_) && get("stateroom_free", WASMTIME_EXTERN_FUNC, free_) &&
          get("stateroom_recv", WASMTIME_EXTERN_FUNC, recv_);
  } else {
    ok &= get("jam_malloc", WASMTIME_EXTERN_FUNC, malloc_) && get("jam_free", WASMTIME_EXTERN_FUNC, free_) &&
          get("initialize", WASMTIME_EXTERN_FUNC, v1_initialize_) &&
          get("connect", WASMTIME_EXTERN_FUNC, v1_connect_) &&
          get("disconnect", WASMTIME_EXTERN_FUNC, v1_disconnect_) &&
          get("timer", WASMTIME_EXTERN_FUNC, v1_timer_) && get("message", WASMTIME_EXTERN_FUNC, v1_message_) &&
          get("binary", WASMTIME_EXTERN_FUNC, v1_binary_);
  }
  if (!ok) return std::string("the instance lacks an export its module declares");
  memory_base_ = wasmtime_memory_data(context_, &memory_);
  memory_size_ = wasmtime_memory_data_size(context_, &memory_);
  if (module_->batcher) {
    // The batch module shares the guest's memory and calls its `stateroom_recv`.
    wasmtime_extern_t imports[2];
    imports[0].kind = WASMTIME_EXTERN_MEMORY;
    imports[0].of.memory = memory_;
    imports[1].kind = WASMTIME_EXTERN_FUNC;
    imports[1].of.func = recv_;
    wasmtime_instance_t batch_instance;
    wasm_trap_t* batch_trap = nullptr;
    wasmtime_extern_t item;
    wasmtime_error_t* batch_error =
        wasmtime_instance_new(context_, module_->batcher.get(), imports, 2, &batch_instance, &batch_trap);
    if (batch_error || batch_trap) {
      // A memory the batch module cannot import (shared, 64-bit): events go one call each.
      spdlog::debug("room '{}': messages go one guest call each ({})", room_id_,
                    batch_error ? take_message(batch_error) : take_message(batch_trap));
    } else if (wasmtime_instance_export_get(context_, &batch_instance, "recv_batch", 10, &item) &&
               item.kind == WASMTIME_EXTERN_FUNC) {
      recv_batch_ = item.of.func;
      has_batch_ = true;
    }
  }
#if STATEROOM_WASMTIME_WRAPPER
  if (module_->abi == Abi::v2) recv_typed_ = stateroom_typed_func_new(context_, &recv_);
  if (has_batch_) recv_batch_typed_ = stateroom_typed_func_new(context_, &recv_batch_);
#endif
  return std::nullopt;
}

std::optional<std::string> GuestService::probe() {
  if (auto error = start()) return error;
  if (module_->has_initialize) {
    plan({Step::initialize, Step::check_version});
  } else {
    plan({Step::check_version});
  }
  do {
    advance();  // loading may wait for the guest: it pauses at engine ticks like any other call
  } while (pending() && !failed_);
  if (failed_) return failure_;
  return std::nullopt;
}

// --- events ---------------------------------------------------------------------------------------

void GuestService::plan(std::initializer_list<Step> steps) {
  step_count_ = 0;
  for (Step s : steps) steps_[step_count_++] = s;
  next_step_ = 0;
}

void GuestService::set_entry(const wasmtime_func_t& func, std::initializer_list<std::int32_t> args,
                             bool takes_buffer) {
  entry_ = func;
  entry_is_recv_ = &func == &recv_;
  batch_count_ = 0;
  entry_arg_count_ = 0;
  for (std::int32_t a : args) entry_args_[entry_arg_count_++] = a;
  entry_takes_buffer_ = takes_buffer;
}

void GuestService::deliver_v2(const codec::MessageToProcess& event, Context& ctx) {
  std::uint8_t* space = event_space(codec::encoded_size(event));
  if (!space) return;
  codec::encode_to(event, space);
  set_entry(recv_, {}, true);
  plan({Step::stage, Step::deliver});
  begin(ctx);
}

void GuestService::init(Context& ctx) {
  if (module_->abi == Abi::v2) {
    in_block_ = 0;
    buffer_ = codec::encode(codec::MessageToProcess{codec::MessageToProcess::Kind::init});
    set_entry(recv_, {}, true);
    if (module_->has_initialize) {
      plan({Step::initialize, Step::check_version, Step::stage, Step::deliver});
    } else {
      plan({Step::check_version, Step::stage, Step::deliver});
    }
  } else {
    // v1 constructs its service from the room id, then shows its version globals.
    in_block_ = 0;
    buffer_ = room_id_;
    set_entry(v1_initialize_, {}, true);
    if (module_->has_initialize) {
      plan({Step::initialize, Step::stage, Step::deliver, Step::check_version});
    } else {
      plan({Step::stage, Step::deliver, Step::check_version});
    }
  }
  begin(ctx);
}

void GuestService::connect(ClientId client, Context& ctx) {
  if (module_->abi == Abi::v2) {
    deliver_v2({codec::MessageToProcess::Kind::connect, client}, ctx);
    return;
  }
  set_entry(v1_connect_, {static_cast<std::int32_t>(client.value)}, false);
  plan({Step::deliver});
  begin(ctx);
}

void GuestService::disconnect(ClientId client, Context& ctx) {
  if (module_->abi == Abi::v2) {
    deliver_v2({codec::MessageToProcess::Kind::disconnect, client}, ctx);
    return;
  }
  set_entry(v1_disconnect_, {static_cast<std::int32_t>(client.value)}, false);
  plan({Step::deliver});
  begin(ctx);
}

std::uint8_t* GuestService::event_space(std::size_t size) {
  // The block is a 32-bit guest allocation grown in powers of two: an event past 2 GiB, or past
  // the guest's whole memory, cannot be handed over (the server refuses such a message size).
  const std::uint64_t fits = std::min<std::uint64_t>(module_->runtime().limits.memory_bytes, max_block_size);
  if (size >= fits) {
    fail(fmt::format("an event of {} bytes does not fit in the guest's memory", size));
    return nullptr;
  }
  // Between calls the host may write the guest's memory; a block that holds the event takes it
  // directly. Otherwise `buffer_` keeps it while the block is replaced (calls that may pause).
  if (!failed_ && size > 0 && size <= block_size_) {
    if (std::uint8_t* target = guest_memory(context_, block_ptr_, static_cast<std::uint32_t>(size))) {
      in_block_ = static_cast<std::uint32_t>(size);
      return target;
    }
  }
  in_block_ = 0;
  buffer_.resize(size);
  return reinterpret_cast<std::uint8_t*>(buffer_.data());
}

void GuestService::message(ClientId sender, const MessagePayload& payload, Context& ctx) {
  if (module_->abi == Abi::v2) {
    std::uint8_t* space = event_space(codec::encoded_message_size(payload));
    if (!space) return;
    codec::encode_message_to(sender, payload, space);
    set_entry(recv_, {}, true);
  } else {
    in_block_ = 0;
    buffer_.assign(payload.view());
    set_entry(payload.is_text() ? v1_message_ : v1_binary_, {static_cast<std::int32_t>(sender.value)}, true);
  }
  plan({Step::stage, Step::deliver});
  begin(ctx);
}

std::size_t GuestService::messages(ClientId sender, std::span<const MessagePayload> payloads, Context& ctx) {
  if (!has_batch_ || payloads.size() < 2) return HostedService::messages(sender, payloads, ctx);
  // One record per message: its length, its encoding, padding to 4 bytes. A batch stops short of
  // max_batch_bytes (the room delivers the rest later), so the block stays small.
  std::size_t total = 0, count = 0;
  for (const MessagePayload& p : payloads) {
    const std::size_t record = 4 + ((codec::encoded_message_size(p) + 3) & ~std::size_t{3});
    if (count > 0 && total + record > max_batch_bytes) break;
    total += record;
    ++count;
  }
  if (count == 1) return HostedService::messages(sender, payloads.first(1), ctx);
  payloads = payloads.first(count);
  std::uint8_t* at = event_space(total);
  if (!at) return payloads.size();
  for (const MessagePayload& p : payloads) {
    const std::size_t size = codec::encoded_message_size(p);
    const std::size_t padded = (size + 3) & ~std::size_t{3};
    const auto len = static_cast<std::uint32_t>(size);
    for (int i = 0; i < 4; ++i) at[i] = static_cast<std::uint8_t>(len >> (8 * i));
    codec::encode_message_to(sender, p, at + 4);
    std::memset(at + 4 + size, 0, padded - size);
    at += 4 + padded;
  }
  set_entry(recv_batch_, {}, true);
  batch_count_ = static_cast<std::uint32_t>(payloads.size());
  plan({Step::stage, Step::deliver});
  begin(ctx);
  return payloads.size();
}

void GuestService::timer(Context& ctx) {
  if (module_->abi == Abi::v2) {
    deliver_v2({codec::MessageToProcess::Kind::timer}, ctx);
    return;
  }
  if (v1_timer_cancelled_) return;  // v1's set_timer(0) cancels; the room's timer cannot be unset
  set_entry(v1_timer_, {}, false);
  plan({Step::deliver});
  begin(ctx);
}

void GuestService::begin(Context& ctx) {
  if (failed_) return;
  event_time_ = {};
  resume(ctx);
}

void GuestService::resume(Context& ctx) {
  ctx_ = &ctx;
  advance();
  ctx_ = nullptr;
  if (output_.dropped() && !pending()) output_.report_dropped();  // once per event, when it ends
}

void GuestService::start_slice() noexcept {
  // A call's first slice is not timed: it ends at the first engine tick, and reading the clock for
  // every call would cost as much as a short event's guest code. A call is thus charged from its
  // first tick on (at most one tick less than it ran); a resumed call is timed from its resumption.
  slice_start_ = call_polled_ ? Clock::now() : Clock::time_point{};
  call_polled_ = true;
}

void GuestService::advance() {
  while (!failed_) {
    if (future_) {
      start_slice();
      if (!wasmtime_call_future_poll(future_)) return;  // paused: the room resumes us later
      wasmtime_call_future_delete(future_);
      future_ = nullptr;
      module_->runtime().guest_finished();
      if (!finish_call()) return;
    }
#if STATEROOM_WASMTIME_WRAPPER
    if (typed_call_) {
      start_slice();
      if (!stateroom_call_poll(typed_call_)) return;
      stateroom_call_delete(typed_call_);
      typed_call_ = nullptr;
      module_->runtime().guest_finished();
      if (!finish_call()) return;
    }
#endif
    if (next_step_ == step_count_) return;
    current_step_ = steps_[next_step_++];
    const auto size = static_cast<std::int32_t>(in_block_ ? in_block_ : buffer_.size());
    switch (current_step_) {
      case Step::initialize:
        start_call(initialize_, {}, 0, 0);
        break;
      case Step::check_version:
        if (auto error = check_versions()) {
          fail(std::move(*error));
          return;
        }
        break;
      case Step::stage: {
        if (in_block_ || buffer_.size() <= block_size_) break;  // the block holds it: no call
        --next_step_;  // once the block is replaced, stage again
        if (block_size_ > 0) {
          const std::int32_t args[] = {static_cast<std::int32_t>(block_ptr_), static_cast<std::int32_t>(block_size_)};
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
        for (std::size_t i = 0; i < entry_arg_count_; ++i) args[n++] = entry_args_[i];
        if (entry_takes_buffer_) {
          std::uint8_t* target = guest_memory(context_, block_ptr_, static_cast<std::uint32_t>(size));
          if (!target) {
            fail(fmt::format("the guest's block at {} no longer lies inside its memory", block_ptr_));
            return;
          }
          if (size && !in_block_) std::memcpy(target, buffer_.data(), static_cast<std::size_t>(size));
          in_block_ = 0;
          args[n++] = static_cast<std::int32_t>(block_ptr_);
          args[n++] = batch_count_ ? static_cast<std::int32_t>(batch_count_) : size;
        }
#if STATEROOM_WASMTIME_WRAPPER
        if (stateroom_typed_func_t* typed = batch_count_ ? recv_batch_typed_ : entry_is_recv_ ? recv_typed_ : nullptr) {
          call_error_ = nullptr;
          call_polled_ = false;
          wasmtime_context_set_epoch_deadline(context_, 1);
          module_->runtime().guest_started();
          typed_call_ = stateroom_typed_func_call_async(context_, typed, args[0], args[1], &call_error_);
          break;
        }
#endif
        start_call(entry_, args, n, 0);
        break;
      }
    }
  }
}

void GuestService::start_call(const wasmtime_func_t& func, const std::int32_t* args, std::size_t nargs,
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
  module_->runtime().guest_started();
  future_ = wasmtime_func_call_async(context_, &call_func_, call_args_.data(), nargs, call_results_.data(), nresults,
                                     &call_trap_, &call_error_);
}

bool GuestService::finish_call() {
  if (call_trap_ || call_error_) {
    std::string raw = call_trap_ ? take_message(call_trap_) : take_message(call_error_);
    call_trap_ = nullptr;
    call_error_ = nullptr;
    fail(fault_.empty() ? explain(std::move(raw), module_->runtime().limits) : fault_);
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
    if (!guest_memory(context_, block_ptr_, block_size_)) {
      fail(fmt::format("the guest's allocator returned {} for {} bytes, outside its memory", block_ptr_, block_size_));
      return false;
    }
  }
  return true;
}

void GuestService::fail(std::string reason) {
  failed_ = true;
  output_.flush();
  failure_ = std::move(reason);
  if (ctx_) ctx_->fail(failure_);
}

std::optional<std::string> GuestService::check_versions() {
  const bool v2 = module_->abi == Abi::v2;
  struct Expected {
    const char* global;
    const char* what;
    std::int32_t value;
  };
  const Expected expected[] = {
      {v2 ? "STATEROOM_API_VERSION" : "JAMSOCKET_API_VERSION", "API version", 1},
      {v2 ? "STATEROOM_API_PROTOCOL" : "JAMSOCKET_API_PROTOCOL", "API protocol", 0},
  };
  for (const auto& e : expected) {
    wasmtime_extern_t item;
    if (!wasmtime_instance_export_get(context_, &instance_, e.global, std::strlen(e.global), &item) ||
        item.kind != WASMTIME_EXTERN_GLOBAL)
      return fmt::format("the module lacks the global export `{}`", e.global);
    wasmtime_val_t address;
    wasmtime_global_get(context_, &item.of.global, &address);
    const std::uint8_t* at = guest_memory(context_, u32(address), 4);
    if (!at) return fmt::format("`{}` holds address {}, outside the module's memory", e.global, u32(address));
    std::uint32_t raw = 0;
    for (int i = 0; i < 4; ++i) raw |= static_cast<std::uint32_t>(at[i]) << (8 * i);
    const auto value = static_cast<std::int32_t>(raw);
    if (value != e.value)
      return fmt::format("the module speaks {} {}, the host supports {} (`{}`)", e.what, value, e.value, e.global);
  }
  return std::nullopt;
}

std::uint8_t* GuestService::guest_memory(wasmtime_context_t* context, std::uint32_t ptr, std::uint32_t len) {
  // The memory never moves (the engine forbids it) and only grows: the size last read is a lower
  // bound, read again only when a range reaches past it.
  const std::uint64_t end = static_cast<std::uint64_t>(ptr) + len;
  if (end > memory_size_) {
    memory_size_ = wasmtime_memory_data_size(context, &memory_);
    if (end > memory_size_) return nullptr;
  }
  return memory_base_ + ptr;
}

// --- imports --------------------------------------------------------------------------------------

namespace {

GuestService& self_of(wasmtime_caller_t* caller) {
  return *static_cast<GuestService*>(wasmtime_context_get_data(wasmtime_caller_context(caller)));
}

}  // namespace

wasm_trap_t* GuestService::guest_fault(std::string reason) {
  fault_ = std::move(reason);
  return wasmtime_trap_new(fault_.data(), fault_.size());
}

template <class Body>
wasm_trap_t* GuestService::guarded(const char* function, Body&& body) noexcept {
  // Nothing may unwind into Wasmtime's frames (that aborts the process): what the host throws
  // while serving the guest fails the room, with the reason.
  try {
    return body();
  } catch (const std::exception& e) {
    try {
      return guest_fault(fmt::format("{}: the host failed serving it: {}", function, e.what()));
    } catch (...) {
    }
  } catch (...) {
  }
  static constexpr std::string_view fallback = "the host failed serving a guest call";
  return wasmtime_trap_new(fallback.data(), fallback.size());
}

wasm_trap_t* GuestService::on_send_v2(void*, wasmtime_caller_t* caller, wasmtime_val_raw_t* args,
                                      std::size_t) noexcept {
  GuestService& self = self_of(caller);
  return self.guarded("stateroom_send", [&] { return self.send_v2(caller, u32(args[0]), u32(args[1])); });
}

wasm_trap_t* GuestService::send_v2(wasmtime_caller_t* caller, std::uint32_t ptr, std::uint32_t len) {
  GuestService& self = *this;
  wasmtime_context_t* context = wasmtime_caller_context(caller);
  const std::uint8_t* bytes = self.guest_memory(context, ptr, len);
  if (!bytes)
    return self.guest_fault(fmt::format("stateroom_send({}, {}): the range lies outside the guest's memory ({} bytes)",
                                        ptr, len, wasmtime_memory_data_size(context, &self.memory_)));
  auto decoded = codec::decode_from_process({bytes, len});
  if (!decoded.ok())
    return self.guest_fault(fmt::format("stateroom_send: undecodable message ({})", codec::describe(decoded.error)));
  if (!self.ctx_) return nullptr;  // loading: there is no room to act on
  auto& message = decoded.value;
  if (message.kind == codec::MessageFromProcess::Kind::message) {
    self.ctx_->send(message.recipient, message.payload);
  } else {
    self.ctx_->set_timer(message.ms_delay);
  }
  return nullptr;
}

wasm_trap_t* GuestService::send_v1(wasmtime_caller_t* caller, std::int32_t recipient, std::uint32_t ptr,
                                   std::uint32_t len, PayloadKind kind) {
  wasmtime_context_t* context = wasmtime_caller_context(caller);
  const char* function = kind == PayloadKind::text ? "send_message" : "send_binary";
  const std::uint8_t* bytes = guest_memory(context, ptr, len);
  if (!bytes)
    return guest_fault(fmt::format("{}({}, {}, {}): the range lies outside the guest's memory ({} bytes)", function,
                                   recipient, ptr, len, wasmtime_memory_data_size(context, &memory_)));
  const std::string_view data(reinterpret_cast<const char*>(bytes), len);
  if (kind == PayloadKind::text && !codec::is_valid_utf8(data))
    return guest_fault(fmt::format("{}: the text is not valid UTF-8", function));
  if (!ctx_) return nullptr;
  // 0 = everyone, n > 0 = client n, n < 0 = everyone except client -n.
  MessageRecipient to = broadcast();
  if (recipient > 0) to = ClientId{static_cast<std::uint32_t>(recipient)};
  if (recipient < 0) to = everyone_except(ClientId{static_cast<std::uint32_t>(-static_cast<std::int64_t>(recipient))});
  ctx_->send(to, MessagePayload::view(kind, data));  // the room copies what it sends
  return nullptr;
}

wasm_trap_t* GuestService::on_send_text_v1(void*, wasmtime_caller_t* caller, wasmtime_val_raw_t* args,
                                           std::size_t) noexcept {
  GuestService& self = self_of(caller);
  return self.guarded("send_message",
                      [&] { return self.send_v1(caller, args[0].i32, u32(args[1]), u32(args[2]), PayloadKind::text); });
}

wasm_trap_t* GuestService::on_send_binary_v1(void*, wasmtime_caller_t* caller, wasmtime_val_raw_t* args,
                                             std::size_t) noexcept {
  GuestService& self = self_of(caller);
  return self.guarded("send_binary",
                      [&] { return self.send_v1(caller, args[0].i32, u32(args[1]), u32(args[2]), PayloadKind::binary); });
}

wasm_trap_t* GuestService::on_set_timer_v1(void*, wasmtime_caller_t* caller, wasmtime_val_raw_t* args,
                                           std::size_t) noexcept {
  GuestService& self = self_of(caller);
  return self.guarded("set_timer", [&]() -> wasm_trap_t* {
    const std::uint32_t ms = u32(args[0]);
    self.v1_timer_cancelled_ = ms == 0;
    if (ms != 0 && self.ctx_) self.ctx_->set_timer(ms);
    return nullptr;
  });
}

// --- deadlines and output -------------------------------------------------------------------------

wasmtime_error_t* GuestService::on_deadline(wasmtime_context_t*, void* data, std::uint64_t* delta,
                                            wasmtime_update_deadline_kind_t* kind) noexcept {
  auto& self = *static_cast<GuestService*>(data);
  const auto now = Clock::now();
  if (self.slice_start_ != Clock::time_point{}) self.event_time_ += now - self.slice_start_;
  self.slice_start_ = now;
  const auto allowance = self.module_->runtime().limits.cpu_time_per_event;
  if (self.event_time_ >= allowance) {
    try {
      self.fault_ = fmt::format("the guest ran past its CPU time allowance of {} ms for one event", allowance.count());
    } catch (...) {
      self.fault_.clear();  // the error's own message says it
    }
    return wasmtime_error_new(self.fault_.empty() ? "the guest ran past its CPU time allowance" : self.fault_.c_str());
  }
  *delta = 1;
  *kind = self.synchronous_ ? WASMTIME_UPDATE_DEADLINE_CONTINUE : WASMTIME_UPDATE_DEADLINE_YIELD;
  return nullptr;
}

}  // namespace stateroom::wasm::detail
