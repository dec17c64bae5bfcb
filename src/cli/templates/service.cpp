// {{name}}: a shared counter. `increment` and `decrement` change it and every client of the room
// hears the new value. Edit this file while `stateroom dev` runs: new rooms get the new code at once.
#include <stateroom/service.hpp>

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
};

STATEROOM_SERVICE(Counter)
