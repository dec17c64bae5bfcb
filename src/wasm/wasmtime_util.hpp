// Small helpers over the Wasmtime C API: owning handles and error text.
#pragma once

#include <wasm.h>
#include <wasmtime.h>

#include <memory>
#include <string>
#include <string_view>

namespace stateroom::wasm::detail {

template <class T, void (*Delete)(T*)>
struct Deleter {
  void operator()(T* p) const noexcept { Delete(p); }
};
template <class T, void (*Delete)(T*)>
using Handle = std::unique_ptr<T, Deleter<T, Delete>>;

using EngineHandle = Handle<wasm_engine_t, wasm_engine_delete>;
using ModuleHandle = Handle<wasmtime_module_t, wasmtime_module_delete>;
using LinkerHandle = Handle<wasmtime_linker_t, wasmtime_linker_delete>;
using InstancePreHandle = Handle<wasmtime_instance_pre_t, wasmtime_instance_pre_delete>;
using StoreHandle = Handle<wasmtime_store_t, wasmtime_store_delete>;
using FuncTypeHandle = Handle<wasm_functype_t, wasm_functype_delete>;

/// The text of a byte vector Wasmtime filled in, freeing it.
inline std::string take(wasm_byte_vec_t& vec) {
  std::string text(vec.data, vec.size);
  wasm_byte_vec_delete(&vec);
  return text;
}

/// The message of `error`, which it frees.
inline std::string take_message(wasmtime_error_t* error) {
  wasm_byte_vec_t message;
  wasmtime_error_message(error, &message);
  wasmtime_error_delete(error);
  return take(message);
}

/// The message of `trap`, which it frees.
inline std::string take_message(wasm_trap_t* trap) {
  wasm_byte_vec_t message;
  wasm_trap_message(trap, &message);
  wasm_trap_delete(trap);
  return take(message);
}

inline std::string_view view(const wasm_name_t* name) { return {name->data, name->size}; }

}  // namespace stateroom::wasm::detail
