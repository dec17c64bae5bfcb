// echo: greets each client, broadcasts what anyone sends, and says who left.
#include <stateroom/service.hpp>

#include <string>

using namespace stateroom;

struct Echo : Service {
  void connect(ClientId client, Context& ctx) override {
    ctx.send(client, "User " + to_string(client) + " connected.");
  }

  void message(ClientId client, const MessagePayload& msg, Context& ctx) override {
    const auto text = msg.text();
    if (!text) return;
    ctx.send(broadcast(), "User " + to_string(client) + " sent '" + std::string(*text) + "'");
  }

  void disconnect(ClientId client, Context& ctx) override {
    ctx.send(broadcast(), "User " + to_string(client) + " left.");
  }
};

STATEROOM_SERVICE(Echo)
