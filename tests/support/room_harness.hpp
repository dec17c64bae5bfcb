// Rooms without sockets or threads: a worker whose io_context the caller runs, and clients that
// keep what a room sends them. For tests and micro-benchmarks of the room layer.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/client.hpp"
#include "server/output_queue.hpp"
#include "server/room.hpp"
#include "server/worker.hpp"
#include "stateroom/service.hpp"

namespace stateroom::test {

/// A client that does what a session does with a message (queue it), and flushes without I/O.
class QueueClient final : public server::Client {
 public:
  server::SendResult send(const server::OutgoingMessage& message) override {
    queue.append(message);
    ++delivered;
    return server::SendResult::sent;
  }
  void close(protocol::CloseCode code, std::string_view reason) override {
    closed_with = code;
    close_reason = reason;
  }
  void resume_reading() override { ++resumed; }
  void flush() { queue.consume(queue.size()); }

  server::OutputQueue queue;
  std::uint64_t delivered = 0;
  std::uint64_t resumed = 0;
  std::optional<protocol::CloseCode> closed_with;  ///< set when the room closed this client
  std::string close_reason;
};

/// One worker with no thread of its own: the test (or benchmark) is its thread and runs its
/// io_context (`poll`) when it wants posted work done.
struct RoomHarness {
  explicit RoomHarness(std::shared_ptr<ServiceFactory> factory, RoomGrace grace = RoomGrace::never()) {
    shared.options.room_grace = grace;
    shared.factory.store(std::make_shared<const server::FactoryVersion>(server::FactoryVersion{std::move(factory), 0}));
    shared.workers.push_back(std::make_unique<server::Worker>(shared, 0));
  }
  ~RoomHarness() {
    // As the server's shutdown does: rooms go before their worker's io_context.
    worker().ioc.poll();
    worker().rooms.clear();
    worker().ioc.poll();
  }
  RoomHarness(const RoomHarness&) = delete;
  RoomHarness& operator=(const RoomHarness&) = delete;

  server::Worker& worker() { return *shared.workers.front(); }
  server::Shared shared;
};

}  // namespace stateroom::test
