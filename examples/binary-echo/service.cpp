// binary-echo: sends every message back to its sender as binary (a text message's UTF-8 bytes).
#include <stateroom/service.hpp>

using namespace stateroom;

struct BinaryEcho : Service {
  void message(ClientId client, const MessagePayload& msg, Context& ctx) override {
    // A binary view of the same bytes: nothing is copied (send takes them before it returns).
    ctx.send(client, MessagePayload::view(PayloadKind::binary, msg.bytes()));
  }
};

STATEROOM_SERVICE(BinaryEcho)
