// Micro-benchmarks of the WebAssembly host, side by side with native code:
//   - starting a room: a fresh instance of counter.wasm (instantiate, _initialize, version check,
//     Init) vs constructing the native Counter;
//   - one "increment" through the counter: host-side cost of the wasm call (encode, allocate,
//     deliver, decode the broadcast) vs the native virtual call;
//   - one 32-byte message echoed by binary-echo.wasm (the guest path of the echo benchmark), alone
//     and in a batch of 32 that arrived in one read (one guest call for all of them).
// The summary at the end gives medians over the repetitions and the targets they are held to.
// `wasm_bench --instructions PATH N` runs N events of one of the wasm paths instead, for callgrind
// to count (bench/wasm-instructions).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "stateroom/hosted_service.hpp"
#include "stateroom/service.hpp"
#include "stateroom/wasm.hpp"
#include "summary.hpp"

namespace {

using namespace stateroom;

/// A room's context that only counts what the service does.
class CountingContext final : public Context {
 public:
  void send(MessageRecipient, const MessagePayload& payload) override {
    ++sends;
    bytes += payload.size();
  }
  void set_timer(std::uint32_t) override {}
  void fail(std::string_view reason) override {
    std::fprintf(stderr, "the room failed: %.*s\n", static_cast<int>(reason.size()), reason.data());
    std::abort();
  }
  std::uint64_t sends = 0, bytes = 0;
};

/// Rooms the engine holds (room_start keeps 100 alive at once). --instructions takes 2: each pool
/// slot reserves a 32-bit memory's whole address range and more, which valgrind cannot map for 256.
std::uint32_t engine_instances = 256;

std::shared_ptr<wasm::Engine> engine() {
  static auto engine = std::make_shared<wasm::Engine>(wasm::Limits{.max_instances = engine_instances});
  return engine;
}

std::shared_ptr<ServiceFactory> wasm_counter() {
  static auto module = wasm::Module::load(engine(), std::string(STATEROOM_WASM_DIR) + "/counter.wasm");
  return module;
}

std::shared_ptr<ServiceFactory> wasm_binary_echo() {
  static auto module = wasm::Module::load(engine(), std::string(STATEROOM_WASM_DIR) + "/binary-echo.wasm");
  return module;
}

std::shared_ptr<ServiceFactory> native_counter() { return main_service_factory(); }

/// Runs a handler to its end (a wasm guest may pause at an engine tick).
void finish(Service& service, Context& ctx) {
  if (auto* hosted = dynamic_cast<HostedService*>(&service))
    while (hosted->pending()) hosted->resume(ctx);
}

void room_start(benchmark::State& state, std::shared_ptr<ServiceFactory> factory) {
  CountingContext ctx;
  constexpr int batch = 100;  // rooms alive at once; destroyed outside the timing
  std::vector<std::unique_ptr<Service>> rooms;
  rooms.reserve(batch);
  while (state.KeepRunningBatch(batch)) {
    for (int i = 0; i < batch; ++i) {
      auto service = factory->create("room", ctx);
      service->init(ctx);
      finish(*service, ctx);
      rooms.push_back(std::move(service));
    }
    state.PauseTiming();
    rooms.clear();
    state.ResumeTiming();
  }
}

void counter_message(benchmark::State& state, std::shared_ptr<ServiceFactory> factory) {
  CountingContext ctx;
  auto service = factory->create("room", ctx);
  service->init(ctx);
  finish(*service, ctx);
  service->connect(ClientId{1}, ctx);
  finish(*service, ctx);
  const MessagePayload increment("increment");
  for (auto _ : state) {
    service->message(ClientId{1}, increment, ctx);
    finish(*service, ctx);
  }
  if (ctx.sends != static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("the counter did not answer");
}

/// A binary-echo.wasm room, started, with client 1 connected.
std::unique_ptr<Service> echo_room_with_one_client(Context& ctx) {
  auto service = wasm_binary_echo()->create("room", ctx);
  service->init(ctx);
  finish(*service, ctx);
  service->connect(ClientId{1}, ctx);
  finish(*service, ctx);
  return service;
}

/// One 32-byte binary message echoed by binary-echo.wasm: the whole guest path of an echo (encode,
/// deliver, the guest's decode and send, the host's decode of the reply).
void echo_message(benchmark::State& state) {
  CountingContext ctx;
  auto service = echo_room_with_one_client(ctx);
  const std::string bytes(32, 'x');
  const auto message = MessagePayload::view(PayloadKind::binary, std::string_view(bytes));
  for (auto _ : state) {
    service->message(ClientId{1}, message, ctx);
    finish(*service, ctx);
  }
  if (ctx.bytes != 32 * static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("the echo did not answer");
}

/// 32 such messages from one client that arrived in one read: one guest call for all of them.
void echo_batch(benchmark::State& state) {
  CountingContext ctx;
  auto service = echo_room_with_one_client(ctx);
  const std::string bytes(32, 'x');
  const std::vector<MessagePayload> batch(32, MessagePayload::view(PayloadKind::binary, std::string_view(bytes)));
  auto& guest = dynamic_cast<HostedService&>(*service);
  while (state.KeepRunningBatch(static_cast<benchmark::IterationCount>(batch.size()))) {
    if (guest.messages(ClientId{1}, batch, ctx) != batch.size()) state.SkipWithError("the batch was not taken");
    finish(*service, ctx);
  }
  if (ctx.bytes != 32 * static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("the echo did not answer");
}

BENCHMARK_CAPTURE(room_start, wasm, wasm_counter())->Unit(benchmark::kMicrosecond)->Repetitions(5);
BENCHMARK_CAPTURE(room_start, native, native_counter())->Unit(benchmark::kMicrosecond)->Repetitions(5);
BENCHMARK_CAPTURE(counter_message, wasm, wasm_counter())->Unit(benchmark::kMicrosecond)->Repetitions(5);
BENCHMARK_CAPTURE(counter_message, native, native_counter())->Unit(benchmark::kMicrosecond)->Repetitions(5);
BENCHMARK(echo_message)->Unit(benchmark::kMicrosecond)->Repetitions(5);
BENCHMARK(echo_batch)->Unit(benchmark::kMicrosecond)->Repetitions(5);

// --- instruction counts (bench/wasm-instructions) -------------------------------------------------
// Each measured_* function is one benchmark's loop and nothing else: callgrind counts it alone.

/// `count` rooms started as in room_start (and ended: the pool holds two).
[[gnu::noinline]] void measured_room_start(ServiceFactory& factory, long count, Context& ctx) {
  for (long i = 0; i < count; ++i) {
    auto service = factory.create("room", ctx);
    service->init(ctx);
    finish(*service, ctx);
  }
}

/// `count` messages from client 1, as in counter_message and echo_message.
[[gnu::noinline]] void measured_messages(Service& service, const MessagePayload& message, long count, Context& ctx) {
  for (long i = 0; i < count; ++i) {
    service.message(ClientId{1}, message, ctx);
    finish(service, ctx);
  }
}

/// `count` batches from client 1, as in echo_batch.
[[gnu::noinline]] void measured_batches(Service& service, std::span<const MessagePayload> batch, long count,
                                        Context& ctx) {
  auto& guest = dynamic_cast<HostedService&>(service);
  for (long i = 0; i < count; ++i) {
    guest.messages(ClientId{1}, batch, ctx);
    finish(service, ctx);
  }
}

/// Runs `count` events of the wasm benchmark `path`; false for an unknown path.
bool run_instructions(std::string_view path, long count) {
  engine_instances = 2;
  CountingContext ctx;
  const std::string bytes(32, 'x');
  const auto echo = MessagePayload::view(PayloadKind::binary, std::string_view(bytes));
  if (path == "room_start") {
    measured_room_start(*wasm_counter(), count, ctx);
  } else if (path == "counter_message") {
    auto service = wasm_counter()->create("room", ctx);
    service->init(ctx);
    finish(*service, ctx);
    service->connect(ClientId{1}, ctx);
    finish(*service, ctx);
    measured_messages(*service, MessagePayload("increment"), count, ctx);
  } else if (path == "echo_message") {
    measured_messages(*echo_room_with_one_client(ctx), echo, count, ctx);
  } else if (path == "echo_batch") {
    const std::vector<MessagePayload> batch(32, echo);
    measured_batches(*echo_room_with_one_client(ctx), batch, count, ctx);
  } else {
    std::fprintf(stderr, "unknown path '%.*s': room_start, counter_message, echo_message or echo_batch\n",
                 static_cast<int>(path.size()), path.data());
    return false;
  }
  std::printf("%.*s: %ld events, %llu sends\n", static_cast<int>(path.size()), path.data(), count,
              static_cast<unsigned long long>(ctx.sends));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string_view(argv[1]) == "--instructions")
    return run_instructions(argv[2], std::atol(argv[3])) ? 0 : 2;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  stateroom::bench::MedianReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  auto median = [&](const std::string& name) { return reporter.median_us(name); };
  const double start_wasm = median("room_start/wasm"), start_native = median("room_start/native");
  const double msg_wasm = median("counter_message/wasm"), msg_native = median("counter_message/native");
  if (start_wasm < 0 || msg_wasm < 0 || msg_native < 0) return 0;  // filtered out
  const double overhead = msg_wasm - msg_native;
  std::printf("\nsummary (medians of 5 repetitions)\n");
  std::printf("  wasm room start:         %8.2f us   (native %.3f us)   target <= 50 us: %s\n", start_wasm,
              start_native, start_wasm <= 50 ? "met" : "MISSED");
  std::printf("  counter message, wasm:   %8.3f us   native %.3f us   wasm overhead %.3f us (x%.1f)   target <= 2 us: %s\n",
              msg_wasm, msg_native, overhead, msg_native > 0 ? msg_wasm / msg_native : 0.0,
              overhead <= 2 ? "met" : "MISSED");
  if (const double echo = median("echo_message"); echo >= 0)
    std::printf("  echo message, wasm:      %8.3f us   (in a batch of 32: %.3f us each)\n", echo,
                median("echo_batch"));
  return 0;
}
