// A native server written the way the README shows: a service and a one-line main; and, given a
// module, the WebAssembly host of the installed package loading it.
#include <stateroom/server.hpp>
#include <stateroom/wasm.hpp>

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

int main(int argc, char** argv) {
  if (argc > 2) {  // `consumer --check MODULE`: the module loads as a v2 service
    auto engine = std::make_shared<stateroom::wasm::Engine>(stateroom::wasm::Limits{.max_instances = 1});
    return stateroom::wasm::Module::load(engine, argv[2])->abi() == stateroom::wasm::Abi::v2 ? 0 : 1;
  }
  if (argc > 1) return 0;  // `consumer --check`: linked and runs
  return stateroom::serve<Counter>({.port = 8080});
}
