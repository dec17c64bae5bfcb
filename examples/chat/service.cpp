// chat: `/name X` sets your name; anything else goes to everyone else as "name: text".
#include <stateroom/service.hpp>

#include <string>
#include <unordered_map>

using namespace stateroom;

struct Chat : Service {
  std::unordered_map<ClientId, std::string> names;

  std::string name_of(ClientId client) const {
    auto it = names.find(client);
    return it != names.end() ? it->second : "user" + std::to_string(client.value);
  }

  void connect(ClientId client, Context& ctx) override {
    ctx.send(client, "welcome, " + name_of(client) + "; /name X renames you");
    ctx.send(everyone_except(client), name_of(client) + " joined");
  }

  void message(ClientId client, const MessagePayload& msg, Context& ctx) override {
    const auto text = msg.text();
    if (!text || text->empty()) return;
    if (text->starts_with("/name ") && text->size() > 6) {
      const std::string old = name_of(client);
      names[client] = std::string(text->substr(6));
      ctx.send(broadcast(), old + " is now " + names[client]);
      return;
    }
    ctx.send(everyone_except(client), name_of(client) + ": " + std::string(*text));
  }

  void disconnect(ClientId client, Context& ctx) override {
    ctx.send(broadcast(), name_of(client) + " left");
    names.erase(client);
  }
};

STATEROOM_SERVICE(Chat)
