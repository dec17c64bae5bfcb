// A native server written the way the README shows: a service and a one-line main.
#include <stateroom/server.hpp>

#include <string>

struct Counter : stateroom::Service {
  int value = 0;
  void message(stateroom::ClientId, const stateroom::MessagePayload& msg, stateroom::Context& ctx) override {
    if (msg.text() == "increment") ++value;
    else if (msg.text() == "decrement") --value;
    else return;
    ctx.send(stateroom::broadcast(), "new value: " + std::to_string(value));
  }
};

int main(int argc, char**) {
  if (argc > 1) return 0;  // `consumer --check`: linked and runs
  return stateroom::serve<Counter>({.port = 8080});
}
