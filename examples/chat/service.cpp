// chat: `/name X` sets your name; anything else goes to everyone else as "name: text". A newcomer
// gets the room's recent messages after its welcome. With a state directory (--state-dir) they
// survive restarts: natively through snapshot() and restore(), as WebAssembly without them.
//
// What a room keeps and sends is bounded, whatever its clients post: a line is at most 4 KiB (a
// longer one is refused, and its sender told), a name 32 bytes, and the history the last 50 lines
// within 64 KiB. A newcomer's welcome and history stay far below the server's send queue
// (--max-queued), so no amount of posting makes the room unjoinable.
#include <stateroom/service.hpp>

#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>

using namespace stateroom;

struct Chat : Service {
  static constexpr std::size_t kept = 50;                ///< lines a newcomer is shown, at most
  static constexpr std::size_t kept_bytes = 64 * 1024;   ///< and their bytes, at most
  static constexpr std::size_t max_line = 4 * 1024;      ///< bytes of a message someone posts
  static constexpr std::size_t max_name = 32;            ///< bytes of a name
  std::unordered_map<ClientId, std::string> names;
  std::deque<std::string> history;
  std::size_t history_bytes = 0;

  std::string name_of(ClientId client) const {
    auto it = names.find(client);
    return it != names.end() ? it->second : "user" + std::to_string(client.value);
  }

  void keep(std::string line) {
    history_bytes += line.size();
    history.push_back(std::move(line));
    while (history.size() > kept || history_bytes > kept_bytes) {
      history_bytes -= history.front().size();
      history.pop_front();
    }
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
      if (text->size() - 6 > max_name) {
        ctx.send(client, "a name is at most " + std::to_string(max_name) + " bytes");
        return;
      }
      const std::string old = name_of(client);
      names[client] = std::string(text->substr(6));
      ctx.send(broadcast(), old + " is now " + names[client]);
      return;
    }
    if (text->size() > max_line) {
      ctx.send(client, "not sent: a message is at most " + std::to_string(max_line) + " bytes");
      return;
    }
    std::string line = name_of(client) + ": " + std::string(*text);
    ctx.send(everyone_except(client), line);
    keep(std::move(line));
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
  // A history saved with other bounds keeps its latest lines within these.
  bool restore(std::span<const std::byte> state, Context&) override {
    Chat restored;
    while (!state.empty()) {
      if (state.size() < 4) return false;
      std::size_t size = 0;
      for (int i = 0; i < 4; ++i) size |= static_cast<std::size_t>(state[i]) << (8 * i);
      state = state.subspan(4);
      if (size > state.size()) return false;
      restored.keep(std::string(reinterpret_cast<const char*>(state.data()), size));
      state = state.subspan(size);
    }
    history = std::move(restored.history);
    history_bytes = restored.history_bytes;
    return true;
  }
};

STATEROOM_SERVICE(Chat)
