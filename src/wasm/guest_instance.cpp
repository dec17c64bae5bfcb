#include "guest_instance.hpp"

#include "../common/little_endian.hpp"
#include "../common/text.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <utility>

#if STATEROOM_WASMTIME_WRAPPER
// Defined by our Wasmtime wrapper crate (third_party/wasmtime/src/lib.rs): memory growth past the
// room's cap, or past what the budget of all rooms has left, traps instead of returning -1. With a
// prebuilt Wasmtime (STATEROOM_WASMTIME_ROOT) a growth past the cap fails with -1 instead (the C++
// guest SDK's allocator then traps), and each room takes its whole cap from the budget as it starts.
extern "C" void stateroom_store_limiter(wasmtime_store_t* store, std::uint64_t memory_size,
                                        std::uint64_t table_elements,
                                        stateroom::MemoryBudget* budget,
                                        void (*refused)(void* env, std::uint64_t desired), void* refused_env);
#endif

namespace stateroom::wasm::detail {

using ::stateroom::detail::format_bytes;

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
  if (holds_cap_) module_->runtime().memory_budget->give_back(module_->runtime().limits.memory_bytes);
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
  stateroom_store_limiter(store_.get(), limits.memory_bytes, UINT64_MAX, runtime.memory_budget.get(),
                          &CallScheduler::on_budget_refused, &calls_);
#else
  wasmtime_store_limiter(store_.get(), static_cast<std::int64_t>(limits.memory_bytes), -1, -1, -1, -1);
  if (!runtime.memory_budget->take(limits.memory_bytes)) {
    unavailable_ = true;
    return calls_.budget_refusal(limits.memory_bytes);
  }
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

// --- snapshots ----------------------------------------------------------------------------------

namespace {

// A guest snapshot: "SRWG" | u32 version | u64 memory size | u32 block address | u32 block size |
// u32 globals, each u8 kind (WASMTIME_I32 ... F64) and u64 bits | (version 2 on) u32 tables, each
// u32 size and that many u32 entries (a function's index + 1; 0: null) | u32 page size | u32
// pages kept, each u32 page index and its bytes. Little-endian. The pages not kept are all zero.
// Version 1 (no tables) is still read.
constexpr std::uint32_t snapshot_magic = 0x47575253;  // "SRWG"
constexpr std::uint32_t snapshot_version = 2;
/// The largest table a snapshot takes back (entries): far above what a toolchain makes.
constexpr std::uint64_t max_snapshot_table = 1u << 24;
constexpr std::size_t snapshot_page = 4096;

constexpr auto put = ::stateroom::detail::put_le<std::vector<std::byte>>;
using Reader = ::stateroom::detail::LittleEndianReader<std::byte>;

// memcmp stops at the first byte that differs (most pages: in their first few) and is vectorised.
constexpr std::array<std::uint8_t, snapshot_page> zero_page{};
bool all_zero(const std::uint8_t* page) { return std::memcmp(page, zero_page.data(), snapshot_page) == 0; }

}  // namespace

std::optional<std::uint64_t> snapshot_memory_size(std::span<const std::byte> head) {
  Reader in{head};
  if (in.get(4) != snapshot_magic) return std::nullopt;
  const auto version = in.get(4);
  const std::uint64_t size = in.get(8);
  if (!in.ok || version < 1 || version > snapshot_version) return std::nullopt;
  return size;
}

std::optional<wasmtime_extern_t> GuestInstance::reserved_export(std::string_view kind, std::uint32_t k,
                                                                wasmtime_extern_kind_t type) {
  const std::string name = fmt::format("stateroom:{}:{}", kind, k);
  wasmtime_extern_t item;
  if (!wasmtime_instance_export_get(context_, &instance_, name.data(), name.size(), &item)) return std::nullopt;
  if (item.kind != type) {
    wasmtime_extern_delete(&item);
    return std::nullopt;
  }
  return item;
}

bool GuestInstance::bind_globals() {
  if (globals_.size() == module_->globals) return true;
  globals_.clear();
  for (std::uint32_t k = 0; k < module_->globals; ++k) {
    auto item = reserved_export("global", k, WASMTIME_EXTERN_GLOBAL);
    if (!item) return false;
    globals_.push_back(item->of.global);
  }
  return true;
}

bool GuestInstance::bind_tables() {
  if (tables_bound_) return true;
  tables_.clear();
  for (std::uint32_t k = 0; k < module_->tables; ++k) {
    auto item = reserved_export("table", k, WASMTIME_EXTERN_TABLE);
    if (!item) return false;
    tables_.push_back(item->of.table);
  }
  func_index_.clear();
  func_by_index_.clear();
  if (module_->tables) {
    constexpr std::string_view prefix = "stateroom:func:";
    char* name = nullptr;
    std::size_t name_len = 0;
    wasmtime_extern_t item;
    for (std::size_t i = 0; wasmtime_instance_export_nth(context_, &instance_, i, &name, &name_len, &item); ++i) {
      const std::string_view text(name, name_len);
      if (!text.starts_with(prefix) || item.kind != WASMTIME_EXTERN_FUNC) {
        wasmtime_extern_delete(&item);
        continue;
      }
      const auto index = static_cast<std::uint32_t>(std::stoul(std::string(text.substr(prefix.size()))));
      func_index_.emplace_back(wasmtime_func_to_raw(context_, &item.of.func), index);
      func_by_index_.emplace_back(index, item.of.func);
    }
    std::sort(func_index_.begin(), func_index_.end());
    std::sort(func_by_index_.begin(), func_by_index_.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
  }
  tables_bound_ = true;
  return true;
}

std::vector<std::byte> GuestInstance::snapshot() {
  std::vector<std::byte> out;
  snapshot_step(out, SIZE_MAX, true);
  return out;
}

bool GuestInstance::snapshot_step(std::vector<std::byte>& out, std::size_t budget, bool first) {
  if (first) {
    snapshot_next_page_ = 0;
    snapshot_kept_ = 0;
    if (!begin_snapshot(out)) return true;  // nothing to keep
  }
  const wasmtime_memory_t& memory = memory_.handle();
  const std::uint8_t* base = wasmtime_memory_data(context_, &memory);
  const std::uint64_t pages = wasmtime_memory_data_size(context_, &memory) / snapshot_page;
  // Every page is read (the zero ones too), so every page counts against the step's budget.
  for (std::size_t done = 0; snapshot_next_page_ < pages && done < budget; ++snapshot_next_page_, done += snapshot_page) {
    const std::uint8_t* page = base + snapshot_next_page_ * snapshot_page;
    if (all_zero(page)) continue;
    put(out, snapshot_next_page_, 4);
    const auto* bytes = reinterpret_cast<const std::byte*>(page);
    out.insert(out.end(), bytes, bytes + snapshot_page);
    ++snapshot_kept_;
  }
  if (snapshot_next_page_ < pages) return false;
  for (int i = 0; i < 4; ++i) out[snapshot_count_at_ + i] = static_cast<std::byte>(snapshot_kept_ >> (8 * i));
  return true;
}

bool GuestInstance::begin_snapshot(std::vector<std::byte>& out) {
  if (!module_->not_persistent.empty() || calls_.pending() || !bind_globals() || !bind_tables()) return false;
  const std::size_t start = out.size();
  const wasmtime_memory_t& memory = memory_.handle();
  const std::uint64_t size = wasmtime_memory_data_size(context_, &memory);
  // Room for every page: untouched capacity costs address space, not memory, and the vector never
  // moves (a large room's snapshot would otherwise be copied as it grows).
  std::uint64_t table_entries = 0;
  for (const wasmtime_table_t& table : tables_) table_entries += wasmtime_table_size(context_, &table);
  out.reserve(start + 64 + 9 * globals_.size() + 4 * (tables_.size() + table_entries) + size +
              (size / snapshot_page) * 4);
  put(out, snapshot_magic, 4);
  put(out, snapshot_version, 4);
  put(out, size, 8);
  const auto [block_ptr, block_size] = calls_.block();
  put(out, block_ptr, 4);
  put(out, block_size, 4);
  put(out, globals_.size(), 4);
  for (const wasmtime_global_t& global : globals_) {
    wasmtime_val_t value;
    wasmtime_global_get(context_, &global, &value);
    std::uint64_t bits = 0;
    switch (value.kind) {
      case WASMTIME_I32:
        bits = static_cast<std::uint32_t>(value.of.i32);
        break;
      case WASMTIME_I64:
        bits = static_cast<std::uint64_t>(value.of.i64);
        break;
      case WASMTIME_F32:
        std::memcpy(&bits, &value.of.f32, 4);
        break;
      case WASMTIME_F64:
        std::memcpy(&bits, &value.of.f64, 8);
        break;
      default:
        wasmtime_val_unroot(&value);
        out.resize(start);
        return false;  // globals.rs exports numbers only
    }
    put(out, value.kind, 1);
    put(out, bits, 8);
  }
  // A table a snapshot cannot hold keeps the room out of its store, said once.
  auto cannot = [&](std::string_view why) {
    if (!warned_tables_)
      spdlog::warn("room '{}': its snapshot cannot hold a table: {}; its state is not kept", room_id_, why);
    warned_tables_ = true;
    out.resize(start);
    return false;
  };
  put(out, tables_.size(), 4);
  for (const wasmtime_table_t& table : tables_) {
    const std::uint64_t entries = wasmtime_table_size(context_, &table);
    if (entries > max_snapshot_table)
      return cannot(fmt::format("{} entries, more than the {} a snapshot takes", entries, max_snapshot_table));
    put(out, entries, 4);
    for (std::uint64_t i = 0; i < entries; ++i) {
      wasmtime_val_t value;
      if (!wasmtime_table_get(context_, &table, i, &value) || value.kind != WASMTIME_FUNCREF)
        return cannot("an entry that is not a function reference");
      std::uint64_t entry = 0;  // null
      if (!wasmtime_funcref_is_null(&value.of.funcref)) {
        const std::pair<void*, std::uint32_t> key{wasmtime_func_to_raw(context_, &value.of.funcref), 0};
        auto it = std::lower_bound(func_index_.begin(), func_index_.end(), key,
                                   [](const auto& a, const auto& b) { return a.first < b.first; });
        // A function the rewrite did not find a table could hold: this snapshot cannot name it.
        if (it == func_index_.end() || it->first != key.first) return cannot("a function it cannot name");
        entry = std::uint64_t{it->second} + 1;
      }
      put(out, entry, 4);
    }
  }
  put(out, snapshot_page, 4);
  snapshot_count_at_ = out.size();
  put(out, 0, 4);  // the pages kept: set once they are
  return true;
}

std::optional<std::string> GuestInstance::restore(std::span<const std::byte> state) {
  bool done = false;
  while (!done)
    if (auto error = restore_step(state, SIZE_MAX, done)) return error;
  return std::nullopt;
}

std::optional<std::string> GuestInstance::restore_step(std::span<const std::byte> state, std::size_t budget,
                                                       bool& done) {
  done = false;
  if (!restoring_) {
    if (auto error = begin_restore(state)) return error;
    restoring_ = true;
  }
  // The pages kept come in increasing order; those between them are zero. Only the fresh
  // instance's initial memory may hold something else there (its data segments): the pages grown
  // for the snapshot are zero already and stay untouched (no copy, no memory). Every byte written
  // counts against the budget.
  const wasmtime_memory_t& memory = memory_.handle();
  std::uint8_t* base = wasmtime_memory_data(context_, &memory);
  auto clear_up_to = [&](std::uint64_t end) {  // zeroes [restore_next_, end) where it may not be zero
    const std::uint64_t to = std::min(end, restore_initial_pages_);
    if (restore_next_ < to) {
      std::memset(base + restore_next_ * snapshot_page, 0, (to - restore_next_) * snapshot_page);
      return (to - restore_next_) * snapshot_page;
    }
    return std::uint64_t{0};
  };
  Reader in{state.subspan(restore_offset_)};
  std::size_t work = 0;
  for (; restore_left_ > 0 && work < budget; --restore_left_) {
    const std::uint64_t p = in.get(4);
    if (!in.ok || p < restore_next_ || p >= restore_pages_ || in.in.size() < snapshot_page)
      return std::string("a truncated or corrupt snapshot");
    work += clear_up_to(p);
    std::memcpy(base + p * snapshot_page, in.in.data(), snapshot_page);
    in.in = in.in.subspan(snapshot_page);
    work += snapshot_page;
    restore_next_ = p + 1;
  }
  restore_offset_ = state.size() - in.in.size();
  if (restore_left_ > 0) return std::nullopt;
  while (restore_next_ < restore_pages_ && work < budget) {
    const std::uint64_t zero = std::min<std::uint64_t>(restore_pages_ - restore_next_,
                                                       std::max<std::uint64_t>(1, (budget - work) / snapshot_page));
    work += clear_up_to(restore_next_ + zero);
    restore_next_ += zero;
  }
  if (restore_next_ < restore_pages_) return std::nullopt;
  if (!in.in.empty()) return std::string("bytes past the end of the snapshot");
  calls_.set_block(restore_block_.first, restore_block_.second);
  memory_.bind(context_, memory);
  restoring_ = false;
  done = true;
  return std::nullopt;
}

std::optional<std::string> GuestInstance::begin_restore(std::span<const std::byte> state) {
  if (!module_->not_persistent.empty()) return module_->not_persistent;
  if (!bind_globals()) return std::string("the instance lacks its globals' exports");
  if (!bind_tables()) return std::string("the instance lacks its tables' exports");
  Reader in{state};
  if (in.get(4) != snapshot_magic) return std::string("not a snapshot of a WebAssembly room");
  const auto version = in.get(4);
  if (version < 1 || version > snapshot_version)
    return fmt::format("a snapshot of format {}, not 1 to {}", version, snapshot_version);
  const std::uint64_t size = in.get(8);
  const auto block_ptr = static_cast<std::uint32_t>(in.get(4));
  const auto block_size = static_cast<std::uint32_t>(in.get(4));
  const std::uint64_t global_count = in.get(4);
  if (!in.ok) return std::string("a truncated snapshot");
  if (global_count != globals_.size())
    return fmt::format("the snapshot has {} mutable globals, the module {}", global_count, globals_.size());
  const wasmtime_memory_t& memory = memory_.handle();
  const std::uint64_t now = wasmtime_memory_data_size(context_, &memory);
  if (size % 65536 != 0 || size < now)
    return fmt::format("a memory of {} bytes cannot follow the module's initial {}", size, now);
  if (size > now) {
    // A memory larger than this run's limits allow is no fault of the snapshot: the room waits for
    // room (the shared budget) or for limits that take it (its own cap), its snapshot kept.
    const Limits& limits = module_->runtime().limits;
    if (size > limits.memory_bytes) {
      cannot_restore_now_ = true;
      return fmt::format("its snapshot's memory of {} is more than the {} a room may have (--memory-limit)",
                         format_bytes(size), format_bytes(limits.memory_bytes));
    }
    std::uint64_t previous = 0;
    if (wasmtime_error_t* error = wasmtime_memory_grow(context_, &memory, (size - now) / 65536, &previous)) {
      std::string message = take_message(error);
      if (calls_.budget_refused()) {
        cannot_restore_now_ = true;
        return "its snapshot's memory of " + format_bytes(size) + " does not fit now: " + calls_.budget_refusal(size);
      }
      return "its memory cannot grow to the snapshot's " + std::to_string(size) + " bytes: " + message;
    }
  }
  for (const wasmtime_global_t& global : globals_) {
    const auto kind = static_cast<wasmtime_valkind_t>(in.get(1));
    const std::uint64_t bits = in.get(8);
    wasmtime_val_t value{};
    value.kind = kind;
    switch (kind) {
      case WASMTIME_I32:
        value.of.i32 = static_cast<std::int32_t>(static_cast<std::uint32_t>(bits));
        break;
      case WASMTIME_I64:
        value.of.i64 = static_cast<std::int64_t>(bits);
        break;
      case WASMTIME_F32:
        std::memcpy(&value.of.f32, &bits, 4);
        break;
      case WASMTIME_F64:
        std::memcpy(&value.of.f64, &bits, 8);
        break;
      default:
        return fmt::format("a global of unknown kind {}", static_cast<int>(kind));
    }
    if (!in.ok) return std::string("a truncated snapshot");
    if (wasmtime_error_t* error = wasmtime_global_set(context_, &global, &value))
      return "a global does not take the snapshot's value: " + take_message(error);
  }
  const std::uint64_t table_count = version >= 2 ? in.get(4) : 0;
  if (!in.ok) return std::string("a truncated snapshot");
  if (table_count != tables_.size())
    return fmt::format("the snapshot has {} tables, the module {} that change", table_count, tables_.size());
  for (const wasmtime_table_t& table : tables_) {
    const std::uint64_t entries = in.get(4);
    const std::uint64_t now = wasmtime_table_size(context_, &table);
    if (!in.ok || entries > max_snapshot_table || in.in.size() < 4 * entries)
      return std::string("a truncated or corrupt snapshot");
    if (entries < now)
      return fmt::format("a table of {} entries cannot follow the module's initial {}", entries, now);
    wasmtime_val_t null{};
    null.kind = WASMTIME_FUNCREF;
    wasmtime_funcref_set_null(&null.of.funcref);
    if (entries > now) {
      std::uint64_t previous = 0;
      if (wasmtime_error_t* error = wasmtime_table_grow(context_, &table, entries - now, &null, &previous))
        return "a table cannot grow to the snapshot's " + std::to_string(entries) + " entries: " + take_message(error);
    }
    for (std::uint64_t i = 0; i < entries; ++i) {
      const std::uint64_t entry = in.get(4);
      wasmtime_val_t value = null;
      if (entry != 0) {
        const auto index = static_cast<std::uint32_t>(entry - 1);
        auto it = std::lower_bound(func_by_index_.begin(), func_by_index_.end(), index,
                                   [](const auto& a, std::uint32_t b) { return a.first < b; });
        if (it == func_by_index_.end() || it->first != index)
          return fmt::format("the snapshot's table holds function {}, which this module's tables cannot", index);
        value.of.funcref = it->second;
      }
      if (wasmtime_error_t* error = wasmtime_table_set(context_, &table, i, &value))
        return "a table does not take the snapshot's entry: " + take_message(error);
    }
  }
  const std::uint64_t page_size = in.get(4);
  const std::uint64_t kept = in.get(4);
  if (!in.ok || page_size != snapshot_page) return std::string("a snapshot with pages of another size");
  if (block_size != 0 && static_cast<std::uint64_t>(block_ptr) + block_size > size)
    return std::string("the snapshot's event block lies outside its memory");
  restore_block_ = {block_ptr, block_size};
  restore_left_ = kept;
  restore_next_ = 0;
  restore_pages_ = size / snapshot_page;
  restore_initial_pages_ = now / snapshot_page;
  restore_offset_ = state.size() - in.in.size();
  return std::nullopt;
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
