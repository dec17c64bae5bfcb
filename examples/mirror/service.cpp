// mirror: sends every message back to its sender unchanged, text as text and binary as binary.
// Nothing else is sent, so the server's replies are exactly the client's messages: the service
// the WebSocket conformance run (tests/autobahn/) drives, natively and as WebAssembly.
#include <stateroom/service.hpp>

using namespace stateroom;

struct Mirror : Service {
  void message(ClientId sender, const MessagePayload& msg, Context& ctx) override {
    ctx.send(sender, msg);
  }
};

STATEROOM_SERVICE(Mirror)
