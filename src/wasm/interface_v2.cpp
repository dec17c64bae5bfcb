#include "interface_v2.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace stateroom::wasm::detail {

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

bool InterfaceV2::bind() {
  if (!guest_.export_func("stateroom_recv", recv_.func)) return false;
  recv_.takes_event = true;
  if (guest_.module().batcher) {
    // The batch module shares the guest's memory and calls its `stateroom_recv`.
    wasmtime_extern_t imports[2];
    imports[0].kind = WASMTIME_EXTERN_MEMORY;
    imports[0].of.memory = guest_.memory().handle();
    imports[1].kind = WASMTIME_EXTERN_FUNC;
    imports[1].of.func = recv_.func;
    wasmtime_instance_t batch_instance;
    wasm_trap_t* batch_trap = nullptr;
    wasmtime_extern_t item;
    wasmtime_error_t* batch_error = wasmtime_instance_new(guest_.context(), guest_.module().batcher.get(),
                                                          imports, 2, &batch_instance, &batch_trap);
    if (batch_error || batch_trap) {
      // A memory the batch module cannot import (shared, 64-bit): events go one call each.
      spdlog::debug("room '{}': messages go one guest call each ({})", guest_.room_id(),
                    batch_error ? take_message(batch_error) : take_message(batch_trap));
    } else if (wasmtime_instance_export_get(guest_.context(), &batch_instance, "recv_batch", 10, &item) &&
               item.kind == WASMTIME_EXTERN_FUNC) {
      recv_batch_.func = item.of.func;
      recv_batch_.takes_event = true;
      has_batch_ = true;
    }
  }
  recv_.typed = guest_.calls().typed(recv_.func);
  if (has_batch_) recv_batch_.typed = guest_.calls().typed(recv_batch_.func);
  return true;
}

// --- events ---------------------------------------------------------------------------------------

void InterfaceV2::deliver(const codec::MessageToProcess& event, Context& ctx) {
  std::uint8_t* space = guest_.calls().event_space(codec::encoded_size(event), ctx);
  if (!space) return;
  codec::encode_to(event, space);
  guest_.calls().deliver(recv_, ctx);
}

void InterfaceV2::init(Context& ctx) {
  using Step = CallScheduler::Step;
  guest_.calls().set_event(codec::encode(codec::MessageToProcess{codec::MessageToProcess::Kind::init}));
  guest_.calls().run({Step::initialize, Step::check_version, Step::stage, Step::deliver}, recv_, ctx);
}

void InterfaceV2::connect(ClientId client, Context& ctx) {
  deliver({codec::MessageToProcess::Kind::connect, client}, ctx);
}

void InterfaceV2::disconnect(ClientId client, Context& ctx) {
  deliver({codec::MessageToProcess::Kind::disconnect, client}, ctx);
}

void InterfaceV2::timer(Context& ctx) {
  deliver({codec::MessageToProcess::Kind::timer}, ctx);
}

void InterfaceV2::message(ClientId sender, const MessagePayload& payload, Context& ctx) {
  std::uint8_t* space = guest_.calls().event_space(codec::encoded_message_size(payload), ctx);
  if (!space) return;
  codec::encode_message_to(sender, payload, space);
  guest_.calls().deliver(recv_, ctx);
}

std::size_t InterfaceV2::messages(ClientId sender, std::span<const MessagePayload> payloads, Context& ctx) {
  if (!has_batch_ || payloads.size() < 2) return 0;  // one by one
  // One record per message: its length, its encoding, padding to 4 bytes. A batch stops short of
  // max_batch_bytes (the room delivers the rest later), so the block stays small.
  std::size_t total = 0, count = 0;
  for (const MessagePayload& p : payloads) {
    const std::size_t record = 4 + ((codec::encoded_message_size(p) + 3) & ~std::size_t{3});
    if (count > 0 && total + record > max_batch_bytes) break;
    total += record;
    ++count;
  }
  if (count == 1) {
    message(sender, payloads.front(), ctx);
    return 1;
  }
  payloads = payloads.first(count);
  std::uint8_t* at = guest_.calls().event_space(total, ctx);
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
  recv_batch_.records = static_cast<std::uint32_t>(payloads.size());
  guest_.calls().deliver(recv_batch_, ctx);
  return payloads.size();
}

// --- imports --------------------------------------------------------------------------------------

wasm_trap_t* InterfaceV2::on_send(void*, wasmtime_caller_t* caller, wasmtime_val_raw_t* args,
                                  std::size_t) noexcept {
  InterfaceV2& self = GuestInstance::called<InterfaceV2>(caller);
  return self.guest_.guarded("stateroom_send", [&] {
    return self.send(caller, static_cast<std::uint32_t>(args[0].i32),
                     static_cast<std::uint32_t>(args[1].i32));
  });
}

wasm_trap_t* InterfaceV2::send(wasmtime_caller_t* caller, std::uint32_t ptr, std::uint32_t len) {
  wasmtime_context_t* context = wasmtime_caller_context(caller);
  const std::uint8_t* bytes = guest_.memory().at(context, ptr, len);
  if (!bytes)
    return guest_.calls().fault(
        fmt::format("stateroom_send({}, {}): the range lies outside the guest's memory ({} bytes)", ptr, len,
                    guest_.memory().size(context)));
  auto decoded = codec::decode_from_process({bytes, len});
  if (!decoded.ok())
    return guest_.calls().fault(
        fmt::format("stateroom_send: undecodable message ({})", codec::describe(decoded.error)));
  Context* room = guest_.calls().room();
  if (!room) return nullptr;  // loading: there is no room to act on
  auto& message = decoded.value;
  if (message.kind == codec::MessageFromProcess::Kind::message) {
    room->send(message.recipient, message.payload);
  } else {
    room->set_timer(message.ms_delay);
  }
  return nullptr;
}

}  // namespace stateroom::wasm::detail
