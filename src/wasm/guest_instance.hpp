// GuestInstance: one room's sandboxed instance of a module, the part both module interfaces share.
#pragma once

#include <fmt/format.h>

#include <exception>
#include <memory>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "call_scheduler.hpp"
#include "guest_memory.hpp"
#include "guest_output.hpp"
#include "module_impl.hpp"

namespace stateroom::wasm::detail {

/// The linear memory a guest snapshot (GuestInstance::snapshot) restores into, read from its first
/// 16 bytes; nothing when `head` does not begin one.
std::optional<std::uint64_t> snapshot_memory_size(std::span<const std::byte> head);

/// A room's instance: its store (with the memory limit, WASI writing to the log, the epoch
/// deadlines), its start-up and version check, its memory, and the call scheduler that runs its
/// events. What differs between the module interfaces lives in their adapters, behind the seam in
/// guest.hpp.
class GuestInstance {
 public:
  /// The exports of an interface that the shared start-up uses.
  struct Names {
    const char* malloc;           ///< the allocator: (size) -> address
    const char* free;             ///< (address, size) -> ()
    const char* version_global;   ///< an i32 global holding the address of the API version (1)
    const char* protocol_global;  ///< one holding the address of the API protocol (0)
  };

  GuestInstance(std::shared_ptr<const Module::Impl> module, std::string room_id, const Names& names);
  ~GuestInstance();
  GuestInstance(const GuestInstance&) = delete;
  GuestInstance& operator=(const GuestInstance&) = delete;

  /// Instantiates the module, with `adapter` (the interface's) as the store's data: the imports
  /// find it there. The reason when it fails.
  std::optional<std::string> start(void* adapter);
  /// After start() failed: whether it failed for want of what all rooms share (an instance slot,
  /// memory within the budget) rather than for anything of its own; such a room may start later.
  bool unavailable() const noexcept { return unavailable_; }
  /// For loading, once started: runs `_initialize` and checks the version globals, to completion.
  std::optional<std::string> probe();
  /// The version globals against what the host supports; the reason when they differ.
  std::optional<std::string> check_versions();

  /// The guest's state between events: its linear memory (the pages that are not all zero), its
  /// mutable globals and the host's event block. Empty when the module's rooms cannot be kept
  /// (Module::Impl::not_persistent) or a call is under way.
  std::vector<std::byte> snapshot();
  /// snapshot() in steps of about `budget` bytes of memory read, appended to `out` (`first`
  /// begins a snapshot); true once it is complete (nothing appended: nothing to keep). Nothing
  /// may run in the instance between the steps of one snapshot.
  bool snapshot_step(std::vector<std::byte>& out, std::size_t budget, bool first);
  /// Puts `state`, from snapshot() of an instance of the same module, into this instance, which
  /// has not run anything since it started: its memory grows to the snapshot's size (within its
  /// limits) and takes the snapshot's contents, its globals their values. The reason when it
  /// cannot (then the instance must not be used).
  std::optional<std::string> restore(std::span<const std::byte> state);
  /// restore() in steps of about `budget` bytes of memory written, `state` the same at each;
  /// `done` once restored. The reason when it cannot be (then the instance must not be used).
  std::optional<std::string> restore_step(std::span<const std::byte> state, std::size_t budget, bool& done);
  /// After restore() failed: whether for want of memory this run does not give (the room's cap or
  /// the shared budget) rather than for anything wrong with the snapshot; such a room may be
  /// restored later.
  bool cannot_restore_now() const noexcept { return cannot_restore_now_; }

  /// The exported function `name`; false when there is none.
  bool export_func(const char* name, wasmtime_func_t& out);

  /// The interface adapter whose import is being called (the store's data).
  template <class Adapter>
  static Adapter& called(wasmtime_caller_t* caller) noexcept {
    return *static_cast<Adapter*>(wasmtime_context_get_data(wasmtime_caller_context(caller)));
  }
  /// Runs an import's body; an exception becomes a trap that fails the room with its reason.
  template <class Body>
  wasm_trap_t* guarded(const char* function, Body&& body) noexcept;

  const Module::Impl& module() const noexcept { return *module_; }
  const std::string& room_id() const noexcept { return room_id_; }
  wasmtime_context_t* context() const noexcept { return context_; }
  GuestMemory& memory() noexcept { return memory_; }
  CallScheduler& calls() noexcept { return calls_; }
  const CallScheduler& calls() const noexcept { return calls_; }

 private:
  std::shared_ptr<const Module::Impl> module_;
  const std::string room_id_;
  const Names names_;
  GuestOutput output_;  ///< the guest's stdout and stderr, to the log
  GuestMemory memory_;
  CallScheduler calls_;
  bool holds_slot_ = false;
  /// With a prebuilt Wasmtime: its whole memory cap is in the budget (unused with the wrapper crate).
  [[maybe_unused]] bool holds_cap_ = false;
  bool unavailable_ = false;
  bool cannot_restore_now_ = false;
  StoreHandle store_;
  wasmtime_context_t* context_ = nullptr;
  wasmtime_instance_t instance_{};
  std::vector<wasmtime_global_t> globals_;  ///< the exported mutable globals, once a snapshot needs them
  /// The tables a snapshot holds (Module::Impl::tables), once a snapshot needs them.
  std::vector<wasmtime_table_t> tables_;
  /// The functions those tables may hold, by their raw funcref (sorted) and by their index in
  /// the module's function space (sorted).
  std::vector<std::pair<void*, std::uint32_t>> func_index_;
  std::vector<std::pair<std::uint32_t, wasmtime_func_t>> func_by_index_;
  bool tables_bound_ = false;
  bool warned_tables_ = false;  ///< a snapshot could not hold a table, and the log said so

  /// The export `stateroom:<kind>:<k>` the load-time rewrite added, if it is there and a `type`.
  std::optional<wasmtime_extern_t> reserved_export(std::string_view kind, std::uint32_t k,
                                                   wasmtime_extern_kind_t type);
  /// Appends a snapshot's header, globals and tables and the place of its page count to `out`;
  /// false (nothing appended) when there is nothing to keep.
  bool begin_snapshot(std::vector<std::byte>& out);
  /// Takes a snapshot's header, globals and tables and grows the memory: what restore_step does
  /// before the pages.
  std::optional<std::string> begin_restore(std::span<const std::byte> state);
  std::uint64_t snapshot_next_page_ = 0;  ///< the next page a snapshot in steps reads
  std::uint32_t snapshot_kept_ = 0;       ///< the pages it kept so far
  std::size_t snapshot_count_at_ = 0;     ///< where their count goes
  bool restoring_ = false;                ///< a restore in steps is under way
  std::size_t restore_offset_ = 0;        ///< where its next page lies in the state
  std::uint64_t restore_left_ = 0;        ///< the pages it has still to write
  std::uint64_t restore_next_ = 0;        ///< the first page not written yet
  std::uint64_t restore_pages_ = 0;       ///< the memory's pages
  std::uint64_t restore_initial_pages_ = 0;  ///< the fresh instance's: past them the memory is zero
  std::pair<std::uint32_t, std::uint32_t> restore_block_{};  ///< the host's event block

  /// Finds the mutable globals' exports; false when one is missing.
  bool bind_globals();
  /// Finds the tables' and their functions' exports; false when one is missing.
  bool bind_tables();
};

template <class Body>
wasm_trap_t* GuestInstance::guarded(const char* function, Body&& body) noexcept {
  // Nothing may unwind into Wasmtime's frames (that aborts the process): what the host throws
  // while serving the guest fails the room, with the reason.
  try {
    return body();
  } catch (const std::exception& e) {
    try {
      return calls_.fault(fmt::format("{}: the host failed serving it: {}", function, e.what()));
    } catch (...) {
    }
  } catch (...) {
  }
  static constexpr std::string_view fallback = "the host failed serving a guest call";
  return wasmtime_trap_new(fallback.data(), fallback.size());
}

}  // namespace stateroom::wasm::detail
