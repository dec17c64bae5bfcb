// cpu-hog: spins forever in `connect` and never sends anything. It demonstrates the per-event CPU
// limit of WebAssembly rooms: run as build/wasm/cpu-hog.wasm, the first client's connect runs past
// the room's CPU allowance, the host interrupts it, and the room fails — its clients are closed with
// WebSocket code 1011 while every other room keeps running.
//
// Run natively (build/bin/cpu-hog-native) nothing stops it: the connect really does hang, and that
// room's worker thread with it. The sandbox is what makes it harmless.
#include <stateroom/service.hpp>

using namespace stateroom;

struct CpuHog : Service {
  void connect(ClientId, Context&) override {
    // volatile: the compiler must keep every iteration (an empty infinite loop would be UB).
    volatile unsigned long long spins = 0;
    for (;;) spins = spins + 1;
  }
};

STATEROOM_SERVICE(CpuHog)
