// Module::Impl: one compiled, checked and pre-linked module, shared by the rooms that run it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine_impl.hpp"
#include "stateroom/wasm.hpp"
#include "wasmtime_util.hpp"

namespace stateroom::wasm {

struct Module::Impl {
  std::shared_ptr<Engine> engine;
  std::string name;  ///< the file, for messages
  Abi abi = Abi::v2;
  bool has_initialize = false;  ///< exports the WASI reactor constructor `_initialize`
  /// The SHA-256 of the module's bytes, in hex: the identity of its rooms' snapshots.
  std::string hash;
  /// The SHA-256 of what its memory's contents depend on besides its code (see data_layout_hash):
  /// a rebuild with the same one may take its rooms' snapshots (`--on-module-change layout`).
  std::string layout;
  /// Its mutable globals, exported as `stateroom:global:0` to `globals - 1` (see
  /// third_party/wasmtime/src/globals.rs) for snapshots.
  std::uint32_t globals = 0;
  /// Its tables, exported as `stateroom:table:0` to `tables - 1` with the functions they may hold
  /// as `stateroom:func:<index>`, when its code changes them (0 otherwise: element segments make
  /// them again in every instance).
  std::uint32_t tables = 0;
  /// Why its rooms cannot be kept in snapshots; empty when they can.
  std::string not_persistent;
  detail::ModuleHandle module;
  detail::LinkerHandle linker;
  detail::InstancePreHandle pre;
  /// v2: the batch module, instantiated beside each room's guest (see InterfaceV2::messages).
  detail::ModuleHandle batcher;

  Engine::Impl& runtime() const noexcept { return engine->impl(); }
};

}  // namespace stateroom::wasm
