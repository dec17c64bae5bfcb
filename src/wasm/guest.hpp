// Guest<Interface>: a room's WebAssembly service, one instance of a module driven through the
// adapter of the module interface it speaks.
#pragma once

#include <concepts>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include <spdlog/spdlog.h>

#include "guest_instance.hpp"
#include "stateroom/hosted_service.hpp"

namespace stateroom::wasm::detail {

/// The seam between the host and a module interface. An interface's adapter (InterfaceV2 in
/// interface_v2.hpp, InterfaceV1 in interface_v1.hpp) is constructed on the room's GuestInstance
/// and provides:
///   - `static constexpr GuestInstance::Names names`: the exports the shared start-up uses;
///   - `bool bind()`: finds its other exports once the instance is up (false: one is missing);
///   - `init`, `connect`, `disconnect`, `message`, `timer` as in Service: each turns the event
///     into bytes and an Entry for the instance's CallScheduler;
///   - optionally `std::size_t messages(sender, payloads, ctx)`: a batch in one guest call, how many
///     it took (0: one by one, as HostedService::messages does);
///   - its imports, static functions that find the adapter as the store's data
///     (GuestInstance::called), listed by module.cpp for the linker.
template <class Interface>
concept ModuleInterface = requires(Interface& adapter, GuestInstance& instance, ClientId client,
                                   const MessagePayload& payload, Context& ctx) {
  { Interface::names } -> std::convertible_to<GuestInstance::Names>;
  Interface(instance);
  { adapter.bind() } -> std::same_as<bool>;
  adapter.init(ctx);
  adapter.connect(client, ctx);
  adapter.disconnect(client, ctx);
  adapter.message(client, payload, ctx);
  adapter.timer(ctx);
};

/// A room's service, running one instance through the adapter of its module's interface. Module
/// picks the interface once, when the room starts. The calls through the seam are direct (the
/// room's own virtual call lands here), so the interface costs no call of its own per event.
template <ModuleInterface Interface>
class Guest final : public HostedService {
 public:
  Guest(std::shared_ptr<const Module::Impl> module, std::string room_id)
      : instance_(std::move(module), std::move(room_id), Interface::names), adapter_(instance_) {}

  /// Instantiates the module. The reason when it fails.
  std::optional<std::string> start() {
    if (auto error = instance_.start(&adapter_)) return error;
    if (!adapter_.bind()) return std::string("the instance lacks an export its module declares");
    return std::nullopt;
  }
  /// After start() failed: whether for want of what all rooms share (GuestInstance::unavailable).
  bool unavailable() const noexcept { return instance_.unavailable(); }
  /// For loading: starts, runs `_initialize` and checks the version globals, to completion.
  std::optional<std::string> probe() {
    if (auto error = start()) return error;
    return instance_.probe();
  }

  void init(Context& ctx) override { adapter_.init(ctx); }
  void connect(ClientId client, Context& ctx) override { adapter_.connect(client, ctx); }
  void disconnect(ClientId client, Context& ctx) override { adapter_.disconnect(client, ctx); }
  void message(ClientId sender, const MessagePayload& payload, Context& ctx) override {
    adapter_.message(sender, payload, ctx);
  }
  std::size_t messages(ClientId sender, std::span<const MessagePayload> payloads, Context& ctx) override {
    if constexpr (requires { adapter_.messages(sender, payloads, ctx); }) {
      if (const std::size_t taken = adapter_.messages(sender, payloads, ctx)) return taken;
    }
    return HostedService::messages(sender, payloads, ctx);
  }
  void timer(Context& ctx) override { adapter_.timer(ctx); }
  std::uint32_t last_client_id() const noexcept override {
    if constexpr (requires { Interface::last_client_id; }) return Interface::last_client_id;
    return HostedService::last_client_id();
  }
  bool pending() const noexcept override { return instance_.calls().pending(); }
  void resume(Context& ctx) override { instance_.calls().resume(ctx); }
  std::chrono::steady_clock::duration resume_delay() const noexcept override {
    return instance_.calls().resume_delay();
  }
  std::vector<std::byte> snapshot() override { return instance_.snapshot(); }
  bool snapshot_step(std::vector<std::byte>& out, std::size_t bytes, bool first) override {
    return instance_.snapshot_step(out, bytes, first);
  }
  bool restore(std::span<const std::byte> state, Context& ctx) override {
    return restore_step(state, SIZE_MAX, ctx) != Restoring::refused;
  }
  Restoring restore_step(std::span<const std::byte> state, std::size_t bytes, Context& ctx) override {
    bool done = false;
    if (auto error = instance_.restore_step(state, bytes, done)) {
      if (instance_.cannot_restore_now()) {
        ctx.unavailable(*error);  // the room is refused for now, its snapshot kept
        return Restoring::restored;
      }
      spdlog::warn("room '{}': its snapshot does not fit this instance: {}", instance_.room_id(), *error);
      return Restoring::refused;
    }
    return done ? Restoring::restored : Restoring::more;
  }

 private:
  GuestInstance instance_;
  Interface adapter_;
};

}  // namespace stateroom::wasm::detail
