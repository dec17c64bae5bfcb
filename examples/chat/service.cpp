// chat: `/name X` sets your name; anything else goes to everyone else as "name: text". A newcomer
// gets the room's last 50 messages after its welcome. With a state directory (--state-dir) they
// survive restarts: natively through snapshot() and restore(), as WebAssembly without them.
#include <stateroom/service.hpp>

#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>

using namespace stateroom;

struct Chat : Service {
  static constexpr std::size_t kept = 50;  ///< messages a newcomer is shown
  std::unordered_map<ClientId, std::string> names;
  std::deque<std::string> history;

  std::string name_of(ClientId client) const {
    auto it = names.find(client);
    return it != names.end() ? it->second : "user" + std::to_string(client.value);
  }

  void connect(ClientId client, Context& ctx) override {
    ctx.send(client, "welcome, " + name_of(client) + "; /name X renames you");
    for (const std::string& line : history) ctx.send(client, line);
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
    std::string line = name_of(client) + ": " + std::string(*text);
    ctx.send(everyone_except(client), line);
    history.push_back(std::move(line));
    if (history.size() > kept) history.pop_front();
  }

  void disconnect(ClientId client, Context& ctx) override {
    ctx.send(broadcast(), name_of(client) + " left");
    names.erase(client);
  }

  // The history, each line as a 4-byte little-endian length and its bytes. Names are not kept: the
  // clients they belong to are gone when the room comes back.
  std::vector<std::byte> snapshot() override {
    std::vector<std::byte> state;
    for (const std::string& line : history) {
      for (int i = 0; i < 4; ++i) state.push_back(static_cast<std::byte>(line.size() >> (8 * i)));
      for (char c : line) state.push_back(static_cast<std::byte>(c));
    }
    return state;
  }
  bool restore(std::span<const std::byte> state, Context&) override {
    std::deque<std::string> lines;
    while (!state.empty()) {
      if (state.size() < 4) return false;
      std::size_t size = 0;
      for (int i = 0; i < 4; ++i) size |= static_cast<std::size_t>(state[i]) << (8 * i);
      state = state.subspan(4);
      if (size > state.size() || lines.size() == kept) return false;
      lines.emplace_back(reinterpret_cast<const char*>(state.data()), size);
      state = state.subspan(size);
    }
    history = std::move(lines);
    return true;
  }
};

STATEROOM_SERVICE(Chat)
