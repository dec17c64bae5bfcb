// InterfaceV1: the adapter of the legacy module interface v1 (docs/wasm-abi.md), for Guest<InterfaceV1>.
#pragma once

#include <cstddef>
#include <cstdint>

#include "guest_instance.hpp"

namespace stateroom::wasm::detail {

/// Interface v1 (stateroom-wasm 0.2, jamsocket-wasm): one export per event with i32 client ids
/// (`initialize` with the room id, `connect`, `disconnect`, `timer`, `message` for text, `binary`),
/// and the guest answers with `send_message`, `send_binary` and `set_timer`. The version globals
/// show only once `initialize` ran.
class InterfaceV1 {
 public:
  static constexpr GuestInstance::Names names{.malloc = "jam_malloc",
                                              .free = "jam_free",
                                              .version_global = "JAMSOCKET_API_VERSION",
                                              .protocol_global = "JAMSOCKET_API_PROTOCOL"};

  /// Client ids are i32 on this interface; a negative one means "everyone except".
  static constexpr std::uint32_t last_client_id = INT32_MAX;

  explicit InterfaceV1(GuestInstance& guest) noexcept : guest_(guest) {}

  /// The interface's other exports, once the instance is up; false when one is missing.
  bool bind();

  void init(Context& ctx);
  void connect(ClientId client, Context& ctx);
  void disconnect(ClientId client, Context& ctx);
  void message(ClientId sender, const MessagePayload& payload, Context& ctx);
  void timer(Context& ctx);

  /// The imports `env.send_message` (text) and `env.send_binary`.
  template <PayloadKind kind>
  static wasm_trap_t* on_send(void*, wasmtime_caller_t* caller, wasmtime_val_raw_t* args,
                              std::size_t) noexcept;
  /// The import `env.set_timer`.
  static wasm_trap_t* on_set_timer(void*, wasmtime_caller_t* caller, wasmtime_val_raw_t* args,
                                   std::size_t) noexcept;

 private:
  wasm_trap_t* send(wasmtime_caller_t* caller, std::int32_t recipient, std::uint32_t ptr, std::uint32_t len,
                    PayloadKind kind);

  GuestInstance& guest_;
  wasmtime_func_t initialize_{}, connect_{}, disconnect_{}, timer_{}, message_{}, binary_{};
  bool timer_cancelled_ = false;  ///< the guest's set_timer(0) cancelled its timer
};

}  // namespace stateroom::wasm::detail
