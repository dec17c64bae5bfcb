// InterfaceV2: the adapter of module interface v2 (docs/wasm-abi.md), for Guest<InterfaceV2>.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "guest_instance.hpp"
#include "stateroom/codec.hpp"

namespace stateroom::wasm::detail {

/// Compiles the batch module: `recv_batch(at, count)` calls the guest's `stateroom_recv` on each of
/// `count` records at `at` in the guest's memory (a record: the event's length as a little-endian
/// u32, its bytes, padding to 4 bytes). Throws std::runtime_error if it does not compile.
ModuleHandle compile_batcher(wasm_engine_t* engine);

/// Interface v2: every event is a message of the codec (stateroom/codec.hpp) handed to
/// `stateroom_recv(ptr, len)`, and the guest answers with `stateroom_send(ptr, len)`, one encoded
/// message (a send or a timer) per call. The messages that arrived together go in one guest call,
/// through the batch module instantiated beside the guest.
class InterfaceV2 {
 public:
  static constexpr GuestInstance::Names names{.malloc = "stateroom_malloc",
                                              .free = "stateroom_free",
                                              .version_global = "STATEROOM_API_VERSION",
                                              .protocol_global = "STATEROOM_API_PROTOCOL"};

  explicit InterfaceV2(GuestInstance& guest) noexcept : guest_(guest) {}

  /// The interface's other exports, once the instance is up; false when one is missing.
  bool bind();

  void init(Context& ctx);
  void connect(ClientId client, Context& ctx);
  void disconnect(ClientId client, Context& ctx);
  void message(ClientId sender, const MessagePayload& payload, Context& ctx);
  /// Messages from one read in one guest call (the batch module's loop over `stateroom_recv`), as
  /// many as fit in a batch. Returns how many it took; 0: take them one by one.
  std::size_t messages(ClientId sender, std::span<const MessagePayload> payloads, Context& ctx);
  void timer(Context& ctx);

  /// The import `env.stateroom_send`.
  static wasm_trap_t* on_send(void*, wasmtime_caller_t* caller, wasmtime_val_raw_t* args,
                              std::size_t) noexcept;

 private:
  /// A batch of messages stops short of this many bytes (a first message always goes).
  static constexpr std::size_t max_batch_bytes = 256 * 1024;

  /// Delivers an event without a payload.
  void deliver(const codec::MessageToProcess& event, Context& ctx);
  wasm_trap_t* send(wasmtime_caller_t* caller, std::uint32_t ptr, std::uint32_t len);

  GuestInstance& guest_;
  CallScheduler::Entry recv_{};        ///< `stateroom_recv` on the block
  CallScheduler::Entry recv_batch_{};  ///< the batch module's `recv_batch` (records: set per batch)
  bool has_batch_ = false;
};

}  // namespace stateroom::wasm::detail
