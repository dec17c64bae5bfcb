// The WebAssembly host: services compiled to WebAssembly modules, each room in its own sandbox.
//
//   auto engine = std::make_shared<stateroom::wasm::Engine>();          // limits, shared runtime
//   auto module = stateroom::wasm::Module::load(engine, "counter.wasm");  // throws LoadError
//   stateroom::Server server(module, options);                            // a ServiceFactory
//
// A module speaks the Stateroom module interface (docs/wasm-abi.md): v2, as built by the C++ guest
// SDK or the Rust `stateroom-wasm` 0.4 crate, or the legacy v1 of `stateroom-wasm` 0.2 /
// `jamsocket-wasm`. Each room gets a fresh instance with WASI preview 1 (its standard output and
// error go to the server log, tagged with the room id; clocks and random work; no files, no
// environment, no arguments). A guest that traps, runs past its CPU allowance, grows its memory
// past the cap or hands the host a bad message fails its room only: the room's clients are closed
// with 1011 and the next connect to that room id starts a fresh instance.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "memory_budget.hpp"
#include "service.hpp"

namespace stateroom::wasm {

/// Per-room sandbox limits. One set per Engine.
struct Limits {
  /// The most linear memory one room's instance may have; growing past it fails the room.
  std::uint64_t memory_bytes = 64ull << 20;
  /// The most linear memory all rooms of the Engine may have together (and the snapshots a server
  /// holds in memory, when it shares the budget: Engine::memory_budget). A room whose growth would
  /// pass it ends (1013, its last snapshot kept); a room that cannot start or be restored within
  /// it is refused (its client is closed with 1013, try again later). 0: half the machine's memory (the lower of its RAM and the memory
  /// limit of the process's cgroup); Engine::limits() reports the figure in force.
  std::uint64_t total_memory_bytes = 0;
  /// The most time the guest may run for one event (its `init`, one message, ...). Guests pause
  /// every millisecond so the other rooms of the worker thread keep running meanwhile, and only
  /// the time the guest itself runs counts, measured from the first millisecond tick of each call
  /// (a call may run up to one tick more than this). Past it the room fails.
  std::chrono::milliseconds cpu_time_per_event{1000};
  /// The share of one core a room's guest may use over any `cpu_window` (1 to 100 percent; 100:
  /// any). A room past it is held back (its events wait) until its use over the window is within
  /// the share again; a room held back for a whole `cpu_window` in all (without a window free of
  /// it in between) fails. So one guest that keeps itself busy, with one long event or with
  /// endless short ones, can take no more than its share from the rooms of its worker thread.
  std::uint32_t cpu_share_percent = 50;
  std::chrono::milliseconds cpu_window{10000};
  /// The most instances (rooms) alive at once across the modules of an Engine; a room beyond it
  /// fails to start. Each instance slot reserves address space (not memory) up front.
  std::uint32_t max_instances = 1000;
};

/// The module interface generation a module speaks (see docs/wasm-abi.md).
enum class Abi : std::uint8_t {
  v1,  ///< `stateroom-wasm` 0.2.x / `jamsocket-wasm`: `initialize` + `jam_malloc` exports
  v2,  ///< `stateroom-wasm` 0.4.x and the C++ guest SDK: `stateroom_recv` export
};

/// A module that cannot be served; `what()` names the file and the exact problem.
class LoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The shared WebAssembly runtime: the compiler, the instance pool sized by the limits, and the
/// clock that interrupts guests. Thread-safe; share one among all modules of a process.
class Engine {
 public:
  /// Throws std::invalid_argument for limits it cannot honour (zero memory, time or instances),
  /// std::runtime_error when the runtime cannot start.
  explicit Engine(Limits limits = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const Limits& limits() const noexcept;
  /// Instances alive now, across every module of this engine.
  std::uint32_t live_instances() const noexcept;
  /// The memory counted against `limits().total_memory_bytes`: the linear memory of those
  /// instances, in bytes, and whatever else shares the budget (ServerOptions::memory_budget).
  std::uint64_t memory_in_use() const noexcept;
  /// The budget of `limits().total_memory_bytes`: give it to ServerOptions::memory_budget so that
  /// the rooms' snapshots held in memory count against it with the instances.
  std::shared_ptr<MemoryBudget> memory_budget() const noexcept;

  /// The implementation, for the host's own sources (its definition is not public).
  struct Impl;
  Impl& impl() const noexcept { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

/// How to load a module.
struct LoadOptions {
  /// Keep the compiled machine code in `<file>.cwasm` next to the module and reuse it while it
  /// matches the module's bytes and this Wasmtime build; the cache is rewritten when stale.
  bool cache_compiled = false;
};

/// A loaded module: compiled once, checked against the interface, and pre-linked so that a room's
/// instance costs microseconds. The factory of the rooms that serve it.
class Module final : public ServiceFactory {
 public:
  /// Loads a `.wasm` binary or `.wat` text file. Throws LoadError.
  static std::shared_ptr<Module> load(std::shared_ptr<Engine> engine, const std::filesystem::path& file,
                                      const LoadOptions& options = {});
  /// Loads from bytes already in memory (`name` is used in messages; there is no file to cache
  /// the compiled code next to). Throws LoadError.
  static std::shared_ptr<Module> load_bytes(std::shared_ptr<Engine> engine, std::string_view bytes,
                                            std::string name);
  ~Module() override;

  Abi abi() const noexcept;
  /// The file it came from (or the name given to load_bytes).
  const std::string& name() const noexcept;

  /// A fresh instance for room `room_id`; nullptr after `ctx.fail(reason)` when it cannot start.
  std::unique_ptr<Service> create(std::string_view room_id, Context& ctx) override;
  /// `wasm-sha256:` and the SHA-256 of the module's bytes.
  std::string snapshot_identity() const override;
  /// The SHA-256 of the sections that place and give meaning to data in memory (imports, tables,
  /// memories, globals, elements, data): equal for a rebuild that changed only code.
  std::string snapshot_layout() const override;
  /// Why its rooms cannot be kept in snapshots (a module whose code changes imported tables or
  /// tables of references other than funcref, or with mutable globals of reference type or
  /// imported ones); empty when they can.
  const std::string& persistence_problem() const noexcept;
  /// Its rooms' snapshots hold their linear memory: one larger than --memory-limit or
  /// --total-memory-limit allows cannot be restored in this run.
  std::optional<std::string> snapshot_misfit(std::span<const std::byte> head) const override;

  /// The implementation, for the host's own sources (its definition is not public).
  struct Impl;

 private:
  explicit Module(std::shared_ptr<const Impl> impl);
  static std::shared_ptr<Module> load_impl(std::shared_ptr<Impl> impl, std::string_view bytes,
                                           const std::optional<std::filesystem::path>& cache_for);

  std::shared_ptr<const Impl> impl_;
};

}  // namespace stateroom::wasm
