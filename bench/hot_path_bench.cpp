// Micro-benchmarks of the hot path without sockets (Google Benchmark): the frame parser, a frame
// into a client's output queue, one message through a room and its service, and a broadcast to
// 1,000 clients. Run by ./run.sh bench; medians are printed per message or per delivery.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include "protocol/frame.hpp"
#include "protocol/parser.hpp"
#include "server/output_queue.hpp"
#include "server/room.hpp"
#include "server/worker.hpp"
#include "support/room_harness.hpp"

namespace {

using namespace stateroom;
using server::OutputQueue;
using test::QueueClient;

/// `count` masked client frames of `size` bytes each, back to back.
std::vector<std::uint8_t> client_frames(int count, std::size_t size) {
  const std::uint8_t mask[4] = {1, 2, 3, 4};
  std::vector<std::uint8_t> out;
  const std::string payload(size, 'p');
  for (int i = 0; i < count; ++i) {
    std::uint8_t header[protocol::max_header_size];
    const std::size_t n = protocol::write_header(header, {.opcode = protocol::Opcode::binary, .payload_size = size, .mask = mask});
    out.insert(out.end(), header, header + n);
    const std::size_t at = out.size();
    out.insert(out.end(), payload.begin(), payload.end());
    protocol::apply_mask(std::span(out).subspan(at), mask);
  }
  return out;
}

void frame_parse(benchmark::State& state) {
  constexpr int frames = 1000;
  const auto size = static_cast<std::size_t>(state.range(0));
  const auto original = client_frames(frames, size);
  auto bytes = original;
  std::size_t seen = 0;
  for (auto _ : state) {
    state.PauseTiming();
    bytes = original;  // parsing unmasks in place
    state.ResumeTiming();
    protocol::Parser parser;
    std::span<std::uint8_t> input(bytes);
    for (;;) {
      const auto e = parser.next(input);
      if (e.kind != protocol::Event::Kind::message) break;
      seen += e.payload.size();
    }
  }
  if (seen != static_cast<std::size_t>(state.iterations()) * frames * size) state.SkipWithError("lost frames");
  state.SetItemsProcessed(state.iterations() * frames);
}

void frame_queue(benchmark::State& state) {
  const MessagePayload payload(std::string(static_cast<std::size_t>(state.range(0)), 'q'));
  OutputQueue queue;
  for (auto _ : state) {
    const server::OutgoingMessage message(payload);
    queue.append(message);
    if (queue.frames() == 64) queue.consume(queue.size());  // a flush, without the syscall
  }
  state.SetItemsProcessed(state.iterations());
}

/// The counter of examples/counter, as a room runs it.
struct Counter : Service {
  int value = 0;
  void message(ClientId, const MessagePayload& msg, Context& ctx) override {
    if (msg.text() != "increment") return;
    ++value;
    ctx.send(broadcast(), "new value: " + std::to_string(value));
  }
};

/// A worker with no thread (the benchmark is its thread) serving the counter.
struct Harness : test::RoomHarness {
  Harness() : RoomHarness(make_factory<Counter>()) {}
};

void room_message(benchmark::State& state, std::size_t members) {
  Harness h;
  auto room = h.worker().find_or_create_room("bench");
  std::vector<std::unique_ptr<QueueClient>> clients;
  for (std::size_t i = 0; i < members; ++i) {
    clients.push_back(std::make_unique<QueueClient>());
    room->join(*clients.back());
  }
  const std::string increment = "increment";
  const auto payload = MessagePayload::view(PayloadKind::text, increment);  // as a session hands it over
  for (auto _ : state) {
    room->message(ClientId{1}, payload, *clients.front());
    for (auto& c : clients) c->flush();
  }
  if (clients.back()->delivered < static_cast<std::uint64_t>(state.iterations())) state.SkipWithError("no broadcast");
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(members));  // deliveries
  for (std::size_t i = 0; i < members; ++i) room->leave(ClientId{static_cast<std::uint32_t>(i + 1)});
}

BENCHMARK(frame_parse)->Arg(32)->Arg(1024)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK(frame_queue)->Arg(32)->Arg(65536)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK_CAPTURE(room_message, one_client, 1)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK_CAPTURE(room_message, broadcast_1000, 1000)->Repetitions(5)->ReportAggregatesOnly(true);

}  // namespace

BENCHMARK_MAIN();
