// memory-hog: allocates without bound in `connect`. It demonstrates the memory cap of WebAssembly
// rooms: run as build/wasm/memory-hog.wasm, the module's linear memory hits the room's limit, the
// allocation fails, the guest traps, and the room fails — its clients are closed with WebSocket
// code 1011 while every other room keeps running.
//
// Run natively (build/bin/memory-hog-native) nothing stops it: it really does eat the machine's
// memory until the operating system kills the process. The sandbox is what makes it harmless.
#include <stateroom/service.hpp>

#include <cstddef>
#include <vector>

using namespace stateroom;

struct MemoryHog : Service {
  static constexpr std::size_t block_size = std::size_t{1} << 20;  // 1 MiB
  std::vector<std::vector<char>> blocks;

  void connect(ClientId, Context&) override {
    for (;;) {
      // Every byte is written, so the pages are really committed (natively too).
      blocks.emplace_back(block_size, static_cast<char>(blocks.size() | 1));
    }
  }
};

STATEROOM_SERVICE(MemoryHog)
