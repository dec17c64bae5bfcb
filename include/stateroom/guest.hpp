// The WebAssembly guest SDK: turns one Stateroom service into a wasm32-wasi module that speaks the
// v2 module interface (docs/wasm-abi.md) byte for byte, so it loads in this server and in the Rust
// Stateroom server alike.
//
// Use: write the service against service.hpp as usual and end the file with
//
//     STATEROOM_SERVICE(MyService)   // compiled for wasm this is STATEROOM_WASM(MyService)
//
// then build it with the CMake function `stateroom_add_wasm_service` (guest/StateroomGuest.cmake)
// and the toolchain file guest/wasm32-wasi.cmake, which add the flags the interface needs:
//   compile  --target=wasm32-wasi -std=c++20 -fno-exceptions -fno-rtti -O2
//   link     -mexec-model=reactor -Wl,--export=STATEROOM_API_VERSION
//            -Wl,--export=STATEROOM_API_PROTOCOL -Wl,--strip-debug
//
// What the module does:
// - Exports `stateroom_malloc`, `stateroom_free`, `stateroom_recv`, the data symbols
//   `STATEROOM_API_VERSION` (= 1) and `STATEROOM_API_PROTOCOL` (= 0) and, from the reactor
//   model, `_initialize` (runs static constructors) and `memory`. Imports `env.stateroom_send` and
//   whatever WASI functions libc needs (stderr output).
// - Builds the service when the host delivers `Init`, with `stateroom::ServiceFactoryOf<T>`, so a
//   service may be default-constructible or constructible from `(std::string_view room_id,
//   Context&)`. The v2 interface does not tell the guest its room id: **the room id passed to such a
//   constructor is always empty** in a wasm module. (Natively it is the real id.)
// - Context::send and Context::set_timer encode a MessageFromProcess with the shared codec
//   (codec.hpp) and hand it to the host at once; a send before the service's `init` (e.g. from its
//   constructor) is allowed.
// - Context::fail(reason) records the failure; when the current handler returns, the guest writes
//   `room failed: <reason>` to stderr and traps. v2 has no "fail" message: the host sees the trap,
//   closes the room's clients with code 1011 and drops the instance.
// - A message it cannot decode, an event before `Init`, a second `Init`, or an allocation that
//   fails (memory cap reached) writes one line to stderr and traps, which fails the room.
// - Static constructors run from `_initialize`, which this server calls. The Rust host never calls
//   it; the SDK then runs them itself before the first event, so globals with constructors work
//   under both hosts.
// - Keeps sizeof(T) in its static data (`STATEROOM_SERVICE_SIZE`, not exported), so that a
//   rebuild that changes the service's size has another data layout (Module::snapshot_layout)
//   and `stateroom dev` does not carry a room's memory over to it.
//
// Exceptions and RTTI are off (they are not available for wasm32 with this toolchain): a service
// reports trouble through Context::fail.
#pragma once

#if !defined(__wasm__)
#error "stateroom/guest.hpp is the WebAssembly guest SDK: compile it for wasm32-wasi (clang --target=wasm32-wasi, see guest/wasm32-wasi.cmake). Natively, STATEROOM_SERVICE links with stateroom::main instead."
#endif

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "codec.hpp"
#include "context.hpp"
#include "service.hpp"

namespace stateroom::guest {

/// The interface version and protocol this SDK speaks (the values of the exported
/// STATEROOM_API_VERSION / STATEROOM_API_PROTOCOL data symbols).
inline constexpr std::int32_t api_version = 1;
inline constexpr std::int32_t api_protocol = 0;

namespace detail {

/// `env.stateroom_send(ptr, len)`: hands the host one encoded MessageFromProcess. The host copies
/// it before returning.
extern "C" __attribute__((import_module("env"), import_name("stateroom_send"))) void
stateroom_guest_import_send(const std::uint8_t* ptr, std::size_t len);

/// Runs the static constructors (the linker synthesises it; the reactor's `_initialize` calls it).
extern "C" void __wasm_call_ctors(void);

/// Set by a static constructor that STATEROOM_WASM defines: whether `_initialize` (or we) ran them.
inline bool constructors_ran = false;

inline void write_stderr(std::string_view s) noexcept {
  if (!s.empty()) std::fwrite(s.data(), 1, s.size(), stderr);
}

}  // namespace detail

/// Writes `what` and `detail` as one line to stderr and traps: the host fails the room. Allocates
/// nothing, so it also works when memory is exhausted.
[[noreturn]] inline void die(std::string_view what, std::string_view detail = {}) noexcept {
  detail::write_stderr(what);
  detail::write_stderr(detail);
  std::fputc('\n', stderr);
  std::fflush(stderr);
  __builtin_trap();
}

/// The Context of a wasm service: sends go straight to the host, `fail` is recorded for the
/// runtime to act on when the handler returns.
class GuestContext final : public Context {
 public:
  void send(MessageRecipient to, const MessagePayload& payload) override {
    codec::MessageFromProcess m;
    m.kind = codec::MessageFromProcess::Kind::message;
    m.recipient = to;
    m.payload = MessagePayload::view(payload.kind(), payload.view());  // encoded below: no copy
    emit(m);
  }

  void set_timer(std::uint32_t ms) override {
    codec::MessageFromProcess m;
    m.kind = codec::MessageFromProcess::Kind::set_timer;
    m.ms_delay = ms;
    emit(m);
  }

  void fail(std::string_view reason) override {
    if (!failed_) {
      failed_ = true;
      reason_.assign(reason);
    }
  }

  bool failed() const noexcept { return failed_; }
  const std::string& failure_reason() const noexcept { return reason_; }

 private:
  void emit(const codec::MessageFromProcess& m) {
    // One buffer reused for every send: the host copies the message before stateroom_send returns.
    buffer_.resize(codec::encoded_size(m));
    codec::encode_to(m, reinterpret_cast<std::uint8_t*>(buffer_.data()));
    detail::stateroom_guest_import_send(reinterpret_cast<const std::uint8_t*>(buffer_.data()),
                                        buffer_.size());
  }

  std::string buffer_;
  std::string reason_;
  bool failed_ = false;
};

/// Builds the module's service; defined by STATEROOM_WASM(T).
std::unique_ptr<Service> create_service(Context& ctx);

/// One module instance = one room: the service and its context.
class Runtime {
 public:
  Runtime() {
    // libc++ built without exceptions returns nullptr from a failed `operator new`; a handler turns
    // that into a clean room failure instead of a write through a null pointer.
    std::set_new_handler(&out_of_memory);
  }
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  /// The instance's runtime.
  static Runtime& get() {
    static Runtime runtime;
    return runtime;
  }

  /// Handles one encoded MessageToProcess.
  void receive(std::span<const std::uint8_t> bytes) {
    auto decoded = codec::decode_to_process(bytes);
    if (!decoded.ok()) {
      die("stateroom guest: cannot decode the host's message: ", codec::describe(decoded.error));
    }
    auto& event = decoded.value;
    using Kind = codec::MessageToProcess::Kind;
    if (event.kind == Kind::init) {
      if (service_) die("stateroom guest: Init delivered twice");
      service_ = create_service(context_);
      check_failure();
      if (!service_) die("room failed: ", "the service could not be built");
      service_->init(context_);
    } else {
      if (!service_) die("stateroom guest: an event arrived before Init");
      switch (event.kind) {
        case Kind::connect:
          service_->connect(event.client, context_);
          break;
        case Kind::disconnect:
          service_->disconnect(event.client, context_);
          break;
        case Kind::message:
          service_->message(event.client, event.payload, context_);
          break;
        case Kind::timer:
          service_->timer(context_);
          break;
        case Kind::init:
          break;
      }
    }
    check_failure();
  }

  static std::uint8_t* allocate(std::size_t size) {
    if (size == 0) return nullptr;
    void* p = std::malloc(size);
    if (p == nullptr) out_of_memory();
    return static_cast<std::uint8_t*>(p);
  }

  static void release(std::uint8_t* ptr, std::size_t size) noexcept {
    if (size == 0) return;
    std::free(ptr);
  }

 private:
  [[noreturn]] static void out_of_memory() noexcept {
    die("stateroom guest: out of memory (the room's memory limit was reached)");
  }

  void check_failure() {
    if (context_.failed()) die("room failed: ", context_.failure_reason());
  }

  GuestContext context_;
  std::unique_ptr<Service> service_;
};

/// `stateroom_recv`: the host delivers one event.
inline void receive(const std::uint8_t* ptr, std::size_t len) {
  // Under a host that does not call `_initialize` (the Rust server), run the static constructors
  // ourselves, once, before anything else.
  if (!detail::constructors_ran) detail::__wasm_call_ctors();
  Runtime::get().receive(std::span<const std::uint8_t>(ptr, len));
}

}  // namespace stateroom::guest

/// Makes `T` the service of this WebAssembly module (use STATEROOM_SERVICE(T), which expands to
/// this when compiling for wasm). Write it once, at namespace scope, in one source file of the
/// module. It defines the module's exports and the factory hook; everything else lives in
/// stateroom::guest.
#define STATEROOM_WASM(T)                                                                        \
  static_assert(::stateroom::ServiceType<T>,                                                     \
                "STATEROOM_WASM(T): T must derive from stateroom::Service and be default-"      \
                "constructible or constructible from (std::string_view, stateroom::Context&)"); \
  std::unique_ptr<::stateroom::Service> stateroom::guest::create_service(                        \
      ::stateroom::Context& stateroom_ctx) {                                                     \
    /* v2 does not tell the guest its room id: the id is always empty here. */                  \
    return ::stateroom::ServiceFactoryOf<T>().create(std::string_view(), stateroom_ctx);         \
  }                                                                                              \
  extern "C" {                                                                                   \
  __attribute__((export_name("stateroom_malloc"))) std::uint8_t* stateroom_malloc(              \
      std::size_t size) {                                                                        \
    return ::stateroom::guest::Runtime::allocate(size);                                          \
  }                                                                                              \
  __attribute__((export_name("stateroom_free"))) void stateroom_free(std::uint8_t* ptr,          \
                                                                     std::size_t size) {         \
    ::stateroom::guest::Runtime::release(ptr, size);                                             \
  }                                                                                              \
  __attribute__((export_name("stateroom_recv"))) void stateroom_recv(const std::uint8_t* ptr,    \
                                                                     std::size_t len) {          \
    ::stateroom::guest::receive(ptr, len);                                                       \
  }                                                                                              \
  __attribute__((used)) extern const std::int32_t STATEROOM_API_VERSION =                        \
      ::stateroom::guest::api_version;                                                           \
  __attribute__((used)) extern const std::int32_t STATEROOM_API_PROTOCOL =                       \
      ::stateroom::guest::api_protocol;                                                          \
  /* In static data, so that a rebuild that changes the service's size changes the data layout */ \
  /* a snapshot of its memory depends on (Module::snapshot_layout). */                           \
  __attribute__((used)) extern const std::uint32_t STATEROOM_SERVICE_SIZE = sizeof(T);          \
  }                                                                                              \
  __attribute__((constructor)) static void stateroom_guest_constructors_ran() {                  \
    ::stateroom::guest::detail::constructors_ran = true;                                         \
  }
