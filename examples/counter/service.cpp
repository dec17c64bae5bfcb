// counter: a shared integer; `increment` and `decrement` change it and everyone hears the new value.
// With a state directory (--state-dir) the count survives restarts: natively through snapshot() and
// restore(), as WebAssembly without them (the host keeps the module's memory).
#include <stateroom/service.hpp>

#include <cstring>
#include <string>

using namespace stateroom;

struct Counter : Service {
  int value = 0;

  void message(ClientId, const MessagePayload& msg, Context& ctx) override {
    if (msg.text() == "increment") {
      ++value;
    } else if (msg.text() == "decrement") {
      --value;
    } else {
      return;  // other messages are ignored
    }
    ctx.send(broadcast(), "new value: " + std::to_string(value));
  }

  std::vector<std::byte> snapshot() override {
    std::vector<std::byte> state(sizeof value);
    std::memcpy(state.data(), &value, sizeof value);
    return state;
  }
  bool restore(std::span<const std::byte> state, Context&) override {
    if (state.size() != sizeof value) return false;
    std::memcpy(&value, state.data(), sizeof value);
    return true;
  }
};

STATEROOM_SERVICE(Counter)
