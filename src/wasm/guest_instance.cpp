#include "guest_instance.hpp"

#include <fmt/format.h>

#include <cstring>
#include <utility>

#if STATEROOM_WASMTIME_WRAPPER
// Defined by our Wasmtime wrapper crate (third_party/wasmtime/src/lib.rs): memory growth past the
// room's cap, or past what the budget of all rooms has left, traps instead of returning -1. With a
// prebuilt Wasmtime (STATEROOM_WASMTIME_ROOT) a growth past the cap fails with -1 instead (the C++
// guest SDK's allocator then traps), and each room takes its whole cap from the budget as it starts.
extern "C" void stateroom_store_limiter(wasmtime_store_t* store, std::uint64_t memory_size,
                                        std::uint64_t table_elements,
                                        stateroom::wasm::Engine::Impl::MemoryBudget* budget,
                                        void (*refused)(void* env, std::uint64_t desired), void* refused_env);
#endif

namespace stateroom::wasm::detail {

GuestInstance::GuestInstance(std::shared_ptr<const Module::Impl> module, std::string room_id,
                             const Names& names)
    : module_(std::move(module)),
      room_id_(std::move(room_id)),
      names_(names),
      output_(room_id_),
      calls_(module_->runtime(), output_, *this) {}

GuestInstance::~GuestInstance() {
  calls_.stop();
  output_.flush();
  store_.reset();  // gives its memory back to the budget
#if !STATEROOM_WASMTIME_WRAPPER
  if (holds_cap_) module_->runtime().memory_budget.used.fetch_sub(module_->runtime().limits.memory_bytes);
#endif
  if (holds_slot_) module_->runtime().release_instance();
}

std::optional<std::string> GuestInstance::start(void* adapter) {
  auto& runtime = module_->runtime();
  const Limits& limits = runtime.limits;
  if (!runtime.acquire_instance()) {
    unavailable_ = true;
    return fmt::format("the limit of {} WebAssembly instances (rooms) is reached", limits.max_instances);
  }
  holds_slot_ = true;

  store_.reset(wasmtime_store_new(runtime.engine.get(), adapter, nullptr));
  context_ = wasmtime_store_context(store_.get());
#if STATEROOM_WASMTIME_WRAPPER
  stateroom_store_limiter(store_.get(), limits.memory_bytes, UINT64_MAX, &runtime.memory_budget,
                          &CallScheduler::on_budget_refused, &calls_);
#else
  wasmtime_store_limiter(store_.get(), static_cast<std::int64_t>(limits.memory_bytes), -1, -1, -1, -1);
  auto& used = runtime.memory_budget.used;
  std::uint64_t now = used.load(std::memory_order_relaxed);
  do {
    if (now + limits.memory_bytes > runtime.memory_budget.limit) {
      unavailable_ = true;
      return calls_.budget_refusal(limits.memory_bytes);
    }
  } while (!used.compare_exchange_weak(now, now + limits.memory_bytes, std::memory_order_relaxed));
  holds_cap_ = true;
#endif
  calls_.attach(store_.get());

  // WASI: output goes to the log, clocks and random work, and there is nothing else to reach.
  wasi_config_t* wasi = wasi_config_new();
  wasi_config_set_stdout_custom(wasi, GuestOutput::on_stdout, &output_, nullptr);
  wasi_config_set_stderr_custom(wasi, GuestOutput::on_stderr, &output_, nullptr);
  if (wasmtime_error_t* error = wasmtime_context_set_wasi(context_, wasi))
    return "setting up WASI failed: " + take_message(error);

  if (auto error = calls_.instantiate(module_->pre.get(), instance_)) {
    unavailable_ = calls_.budget_refused();  // no room for its first memory: not its fault
    return error;
  }

  wasmtime_extern_t memory;
  bool ok = wasmtime_instance_export_get(context_, &instance_, "memory", 6, &memory) &&
            memory.kind == WASMTIME_EXTERN_MEMORY;
  wasmtime_func_t malloc{}, free{}, initialize{};
  if (module_->has_initialize) ok &= export_func("_initialize", initialize);
  ok &= export_func(names_.malloc, malloc) && export_func(names_.free, free);
  if (!ok) return std::string("the instance lacks an export its module declares");
  memory_.bind(context_, memory.of.memory);
  calls_.bind(memory_, malloc, free, module_->has_initialize ? &initialize : nullptr);
  return std::nullopt;
}

bool GuestInstance::export_func(const char* name, wasmtime_func_t& out) {
  wasmtime_extern_t item;
  if (!wasmtime_instance_export_get(context_, &instance_, name, std::strlen(name), &item)) return false;
  if (item.kind != WASMTIME_EXTERN_FUNC) return false;
  out = item.of.func;
  return true;
}

std::optional<std::string> GuestInstance::probe() {
  return calls_.run_to_end({CallScheduler::Step::initialize, CallScheduler::Step::check_version});
}

std::optional<std::string> GuestInstance::check_versions() {
  struct Expected {
    const char* global;
    const char* what;
    std::int32_t value;
  };
  const Expected expected[] = {
      {names_.version_global, "API version", 1},
      {names_.protocol_global, "API protocol", 0},
  };
  for (const auto& e : expected) {
    wasmtime_extern_t item;
    if (!wasmtime_instance_export_get(context_, &instance_, e.global, std::strlen(e.global), &item) ||
        item.kind != WASMTIME_EXTERN_GLOBAL)
      return fmt::format("the module lacks the global export `{}`", e.global);
    wasmtime_val_t address;
    wasmtime_global_get(context_, &item.of.global, &address);
    const auto ptr = static_cast<std::uint32_t>(address.of.i32);
    const std::uint8_t* at = memory_.at(context_, ptr, 4);
    if (!at) return fmt::format("`{}` holds address {}, outside the module's memory", e.global, ptr);
    std::uint32_t raw = 0;
    for (int i = 0; i < 4; ++i) raw |= static_cast<std::uint32_t>(at[i]) << (8 * i);
    const auto value = static_cast<std::int32_t>(raw);
    if (value != e.value)
      return fmt::format("the module speaks {} {}, the host supports {} (`{}`)", e.what, value, e.value,
                         e.global);
  }
  return std::nullopt;
}

}  // namespace stateroom::wasm::detail
