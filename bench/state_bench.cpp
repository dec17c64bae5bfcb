// The costs of persistence (--state-dir), beside their targets:
//   - snapshot of a counter.wasm room (on the room's thread: its memory's non-zero pages, its
//     globals), and restore (a fresh instance from the pool, then the snapshot written into it:
//     what waking a hibernated room costs); target 300 us median each;
//   - the same for a room with 16 MiB of live memory;
//   - the store's side, on its own thread: compressing and writing one counter room's file
//     atomically (fsync included) into a directory on /dev/shm, and the file's size on disk;
//   - the memory the server keeps for 100,000 hibernated counter rooms: their snapshots saved and
//     flushed through the directory store, the process's RSS before and after (target: 1 KiB of RAM
//     per hibernated room).
// The summary at the end gives the medians over the repetitions and the targets.
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "stateroom/hosted_service.hpp"
#include "stateroom/state_store.hpp"
#include "stateroom/wasm.hpp"
#include "summary.hpp"

namespace {

using namespace stateroom;
namespace fs = std::filesystem;

class QuietContext final : public Context {
 public:
  void send(MessageRecipient, const MessagePayload&) override {}
  void set_timer(std::uint32_t) override {}
  void fail(std::string_view reason) override {
    std::fprintf(stderr, "the room failed: %.*s\n", static_cast<int>(reason.size()), reason.data());
    std::abort();
  }
};

std::shared_ptr<wasm::Engine> engine() {
  static auto engine = std::make_shared<wasm::Engine>(wasm::Limits{.memory_bytes = 64 << 20, .max_instances = 64});
  return engine;
}

void finish(Service& service, Context& ctx) {
  if (auto* hosted = dynamic_cast<HostedService*>(&service))
    while (hosted->pending()) hosted->resume(ctx);
}

std::shared_ptr<ServiceFactory> counter() {
  static auto module = wasm::Module::load(engine(), std::string(STATEROOM_WASM_DIR) + "/counter.wasm");
  return module;
}

/// A v2 guest whose init fills 16 MiB of its memory with bytes that are not zero.
std::shared_ptr<ServiceFactory> sixteen_mib() {
  static auto module = wasm::Module::load_bytes(engine(), R"((module
  (import "env" "stateroom_send" (func $send (param i32 i32)))
  (memory (export "memory") 260)
  (global (export "STATEROOM_API_VERSION") i32 (i32.const 16))
  (global (export "STATEROOM_API_PROTOCOL") i32 (i32.const 20))
  (global $seed (mut i32) (i32.const 1))
  (data (i32.const 16) "\01\00\00\00\00\00\00\00")
  (func (export "stateroom_malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "stateroom_free") (param i32 i32))
  (func (export "stateroom_recv") (param $ptr i32) (param $len i32)
    (local $at i32)
    (if (i32.ne (i32.load (local.get $ptr)) (i32.const 0)) (then (return)))  ;; Init only
    (local.set $at (i32.const 65536))
    (loop $fill
      (global.set $seed (i32.add (i32.mul (global.get $seed) (i32.const 1103515245)) (i32.const 12345)))
      (i32.store (local.get $at) (i32.or (global.get $seed) (i32.const 1)))
      (local.set $at (i32.add (local.get $at) (i32.const 4)))
      (br_if $fill (i32.lt_u (local.get $at) (i32.const 16842752))))))
)",
                                                "sixteen-mib.wat");
  return module;
}

/// A started room of `factory`, after `increments` counter messages.
std::unique_ptr<Service> room(ServiceFactory& factory, QuietContext& ctx, int increments) {
  auto service = factory.create("room", ctx);
  service->init(ctx);
  finish(*service, ctx);
  for (int i = 0; i < increments; ++i) {
    service->message(ClientId{1}, MessagePayload("increment"), ctx);
    finish(*service, ctx);
  }
  return service;
}

void snapshot(benchmark::State& state, std::shared_ptr<ServiceFactory> (*factory)()) {
  QuietContext ctx;
  auto service = room(*factory(), ctx, 3);
  std::size_t bytes = 0;
  for (auto _ : state) {
    auto taken = service->snapshot();
    bytes = taken.size();
    benchmark::DoNotOptimize(taken.data());
  }
  if (bytes == 0) state.SkipWithError("the room took no snapshot");
  state.counters["bytes"] = static_cast<double>(bytes);
}

void restore(benchmark::State& state, std::shared_ptr<ServiceFactory> (*factory)()) {
  QuietContext ctx;
  const auto saved = room(*factory(), ctx, 3)->snapshot();
  for (auto _ : state) {
    auto service = factory()->create("room", ctx);
    if (!service->restore(saved, ctx)) state.SkipWithError("the snapshot was not restored");
    state.PauseTiming();
    service.reset();  // the instance goes back to the pool outside the timing
    state.ResumeTiming();
  }
}

fs::path scratch() {
  const fs::path shm = "/dev/shm";
  return (fs::is_directory(shm) ? shm : fs::temp_directory_path()) / ("stateroom-state-bench-" + std::to_string(::getpid()));
}

double file_bytes = 0;

void store_write(benchmark::State& state) {
  QuietContext ctx;
  const auto saved = room(*counter(), ctx, 3)->snapshot();
  const fs::path dir = scratch();
  auto store = make_directory_store(dir);
  for (auto _ : state) {
    store->save("room", saved);
    store->flush();
  }
  file_bytes = static_cast<double>(fs::file_size(dir / state_file_name("room")));
  state.counters["file_bytes"] = file_bytes;
  store.reset();
  fs::remove_all(dir);
}

// A 16 MiB snapshot written again with one byte changed, as a big room's periodic snapshot is:
// range(0) 1 keeps the room's last file (its chunks are copied, not compressed again), 0 removes
// it first (everything is compressed); range(1) 1 makes the bytes compressible (4 bits of entropy
// a byte), 0 random. Wall time: the store's own thread does the work (on /dev/shm: no disk).
void store_rewrite(benchmark::State& state) {
  const bool keep_file = state.range(0) != 0, compressible = state.range(1) != 0;
  std::vector<std::byte> saved(16 << 20);
  std::uint64_t x = 88172645463325252ULL;  // xorshift64
  for (std::size_t i = 0; i < saved.size(); ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    saved[i] = static_cast<std::byte>(compressible ? (x & 0x0f) : (x & 0xff));
  }
  const fs::path dir = scratch();
  auto store = make_directory_store(dir);
  store->save("room", saved);
  store->flush();
  std::size_t at = 0;
  for (auto _ : state) {
    state.PauseTiming();
    saved[at = (at + 4099 * 997) % saved.size()] ^= std::byte{1};
    if (!keep_file) fs::remove(dir / state_file_name("room"));
    state.ResumeTiming();
    store->save("room", saved);
    store->flush();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(saved.size()));
  store.reset();
  fs::remove_all(dir);
}

BENCHMARK_CAPTURE(snapshot, counter_wasm, counter)->Unit(benchmark::kMicrosecond)->Repetitions(5);
BENCHMARK_CAPTURE(restore, counter_wasm, counter)->Unit(benchmark::kMicrosecond)->Repetitions(5);
BENCHMARK_CAPTURE(snapshot, live_16MiB_wasm, sixteen_mib)->Unit(benchmark::kMillisecond)->Repetitions(5);
BENCHMARK_CAPTURE(restore, live_16MiB_wasm, sixteen_mib)->Unit(benchmark::kMillisecond)->Repetitions(5);
BENCHMARK(store_write)->Unit(benchmark::kMicrosecond)->Repetitions(5);
BENCHMARK(store_rewrite)
    ->ArgsProduct({{0, 1}, {0, 1}})
    ->ArgNames({"keep_file", "compressible"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Repetitions(5);

long rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    long kib = 0;
    if (key == "VmRSS:" && status >> kib) return kib * 1024;
  }
  return -1;
}

/// The RSS the process keeps for `rooms` hibernated counter rooms: snapshots saved through the
/// directory store (flushed every hundred rooms, as rooms hibernate over time rather than all in one
/// instant) and on disk; the rooms themselves are gone, as they are from a server's memory. Freed
/// heap is handed back to the system before each reading (malloc_trim), so the figure is what is
/// kept, not what was in flight.
double hibernated_room_ram(int rooms) {
  QuietContext ctx;
  const auto saved = room(*counter(), ctx, 3)->snapshot();
  const fs::path dir = scratch();
  auto store = make_directory_store(dir);
  store->save("warm-up", saved);
  store->flush();
  ::malloc_trim(0);
  const long before = rss_bytes();
  for (int i = 0; i < rooms; ++i) {
    store->save("room-" + std::to_string(i), saved);
    if (i % 100 == 99) store->flush();
  }
  store->flush();
  ::malloc_trim(0);
  const long after = rss_bytes();
  store.reset();
  fs::remove_all(dir);
  return static_cast<double>(after - before) / rooms;
}

}  // namespace

int main(int argc, char** argv) {
  int rooms = 100000;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]).starts_with("--hibernated-rooms=")) {
      rooms = std::max(1, std::atoi(argv[i] + 19));
    } else {
      argv[kept++] = argv[i];  // the rest is Google Benchmark's
    }
  }
  argc = kept;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  stateroom::bench::MedianReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  const double ram = hibernated_room_ram(rooms);
  auto median = [&](const std::string& name) { return reporter.median_us(name); };
  std::printf("\nsummary (medians)                         measured       target\n");
  std::printf("counter room snapshot (room thread)      %8.1f us     <= 300 us\n", median("snapshot/counter_wasm"));
  std::printf("counter room restore (instance + state)  %8.1f us     <= 300 us\n", median("restore/counter_wasm"));
  std::printf("16 MiB room snapshot                     %8.1f us\n", median("snapshot/live_16MiB_wasm"));
  std::printf("16 MiB room restore                      %8.1f us\n", median("restore/live_16MiB_wasm"));
  std::printf("counter room file: write (store thread)  %8.1f us     (fsync included)\n", median("store_write"));
  std::printf("counter room file on disk                %8.0f bytes\n", file_bytes);
  std::printf("RAM per hibernated room (%d rooms)   %8.1f bytes  <= 1024 bytes\n", rooms, ram);
  return 0;
}
