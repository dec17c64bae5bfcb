#include "interface_v1.hpp"

#include <fmt/format.h>

#include <initializer_list>
#include <string_view>
#include <utility>

#include "stateroom/codec.hpp"

namespace stateroom::wasm::detail {

namespace {

/// An entry calling `func` with `args`, then the event when it `takes_event`.
CallScheduler::Entry entry(const wasmtime_func_t& func, std::initializer_list<std::int32_t> args,
                           bool takes_event) {
  CallScheduler::Entry e;
  e.func = func;
  for (std::int32_t a : args) e.args[e.arg_count++] = a;
  e.takes_event = takes_event;
  return e;
}

std::int32_t id(ClientId client) noexcept {
  return static_cast<std::int32_t>(client.value);
}

}  // namespace

bool InterfaceV1::bind() {
  return guest_.export_func("initialize", initialize_) && guest_.export_func("connect", connect_) &&
         guest_.export_func("disconnect", disconnect_) && guest_.export_func("timer", timer_) &&
         guest_.export_func("message", message_) && guest_.export_func("binary", binary_);
}

// --- events ---------------------------------------------------------------------------------------

void InterfaceV1::init(Context& ctx) {
  // v1 constructs its service from the room id, then shows its version globals.
  using Step = CallScheduler::Step;
  guest_.calls().set_event(guest_.room_id());
  guest_.calls().run({Step::initialize, Step::stage, Step::deliver, Step::check_version},
                     entry(initialize_, {}, true), ctx);
}

void InterfaceV1::connect(ClientId client, Context& ctx) {
  guest_.calls().deliver(entry(connect_, {id(client)}, false), ctx);
}

void InterfaceV1::disconnect(ClientId client, Context& ctx) {
  guest_.calls().deliver(entry(disconnect_, {id(client)}, false), ctx);
}

void InterfaceV1::message(ClientId sender, const MessagePayload& payload, Context& ctx) {
  guest_.calls().set_event(payload.view());
  guest_.calls().deliver(entry(payload.is_text() ? message_ : binary_, {id(sender)}, true), ctx);
}

void InterfaceV1::timer(Context& ctx) {
  if (timer_cancelled_) return;  // v1's set_timer(0) cancels; the room's timer cannot be unset
  guest_.calls().deliver(entry(timer_, {}, false), ctx);
}

// --- imports --------------------------------------------------------------------------------------

wasm_trap_t* InterfaceV1::send(wasmtime_caller_t* caller, std::int32_t recipient, std::uint32_t ptr,
                               std::uint32_t len, PayloadKind kind) {
  wasmtime_context_t* context = wasmtime_caller_context(caller);
  const char* function = kind == PayloadKind::text ? "send_message" : "send_binary";
  const std::uint8_t* bytes = guest_.memory().at(context, ptr, len);
  if (!bytes)
    return guest_.calls().fault(
        fmt::format("{}({}, {}, {}): the range lies outside the guest's memory ({} bytes)", function,
                    recipient, ptr, len, guest_.memory().size(context)));
  const std::string_view data(reinterpret_cast<const char*>(bytes), len);
  if (kind == PayloadKind::text && !codec::is_valid_utf8(data))
    return guest_.calls().fault(fmt::format("{}: the text is not valid UTF-8", function));
  Context* room = guest_.calls().room();
  if (!room) return nullptr;
  // 0 = everyone, n > 0 = client n, n < 0 = everyone except client -n.
  MessageRecipient to = broadcast();
  if (recipient > 0) to = ClientId{static_cast<std::uint32_t>(recipient)};
  if (recipient < 0)
    to = everyone_except(ClientId{static_cast<std::uint32_t>(-static_cast<std::int64_t>(recipient))});
  room->send(to, MessagePayload::view(kind, data));  // the room copies what it sends
  return nullptr;
}

template <PayloadKind kind>
wasm_trap_t* InterfaceV1::on_send(void*, wasmtime_caller_t* caller, wasmtime_val_raw_t* args,
                                  std::size_t) noexcept {
  InterfaceV1& self = GuestInstance::called<InterfaceV1>(caller);
  return self.guest_.guarded(kind == PayloadKind::text ? "send_message" : "send_binary", [&] {
    return self.send(caller, args[0].i32, static_cast<std::uint32_t>(args[1].i32),
                     static_cast<std::uint32_t>(args[2].i32), kind);
  });
}
template wasm_trap_t* InterfaceV1::on_send<PayloadKind::text>(void*, wasmtime_caller_t*, wasmtime_val_raw_t*,
                                                              std::size_t) noexcept;
template wasm_trap_t* InterfaceV1::on_send<PayloadKind::binary>(void*, wasmtime_caller_t*,
                                                                wasmtime_val_raw_t*, std::size_t) noexcept;

wasm_trap_t* InterfaceV1::on_set_timer(void*, wasmtime_caller_t* caller, wasmtime_val_raw_t* args,
                                       std::size_t) noexcept {
  InterfaceV1& self = GuestInstance::called<InterfaceV1>(caller);
  return self.guest_.guarded("set_timer", [&]() -> wasm_trap_t* {
    const auto ms = static_cast<std::uint32_t>(args[0].i32);
    self.timer_cancelled_ = ms == 0;
    if (ms != 0) {
      if (Context* room = self.guest_.calls().room()) room->set_timer(ms);
    }
    return nullptr;
  });
}

}  // namespace stateroom::wasm::detail
