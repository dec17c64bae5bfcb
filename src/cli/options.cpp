#include "options.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <utility>

namespace stateroom::cli {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Splits `123unit` into its number and its (lower-cased) unit.
std::optional<std::pair<std::uint64_t, std::string>> number_and_unit(std::string_view text) {
  std::uint64_t number = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec != std::errc{} || end == text.data()) return std::nullopt;
  return std::pair{number, lower(std::string_view(end, text.data() + text.size() - end))};
}

std::optional<std::uint64_t> scaled(std::uint64_t number, std::uint64_t factor) {
  if (number > std::numeric_limits<std::uint64_t>::max() / factor) return std::nullopt;
  return number * factor;
}

template <class Parse>
auto checked(std::string_view what, Parse parse) {
  return [what, parse](const std::string& text) {
    auto value = parse(text);
    if (!value) throw CLI::ValidationError(std::string(what), "'" + text + "' is not " + std::string(what));
    return *value;
  };
}

}  // namespace

std::optional<std::size_t> parse_size(std::string_view text) {
  auto parsed = number_and_unit(text);
  if (!parsed) return std::nullopt;
  static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 8> units{{
      {"", 1},
      {"b", 1},
      {"kb", 1000},
      {"mb", 1000 * 1000},
      {"gb", 1000 * 1000 * 1000},
      {"kib", 1024},
      {"mib", 1024 * 1024},
      {"gib", 1024 * 1024 * 1024},
  }};
  for (const auto& [unit, factor] : units) {
    if (parsed->second == unit) {
      auto bytes = scaled(parsed->first, factor);
      if (!bytes || *bytes > std::numeric_limits<std::size_t>::max()) return std::nullopt;
      return static_cast<std::size_t>(*bytes);
    }
  }
  return std::nullopt;
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  auto parsed = number_and_unit(text);
  if (!parsed) return std::nullopt;
  static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 5> units{{
      {"", 1000},
      {"ms", 1},
      {"s", 1000},
      {"m", 60 * 1000},
      {"h", 3600 * 1000},
  }};
  for (const auto& [unit, factor] : units) {
    if (parsed->second == unit) {
      auto ms = scaled(parsed->first, factor);
      if (!ms || *ms > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        return std::nullopt;
      return std::chrono::milliseconds(static_cast<std::int64_t>(*ms));
    }
  }
  return std::nullopt;
}

std::optional<RoomGrace> parse_room_grace(std::string_view text) {
  const std::string word = lower(text);
  if (word == "never") return RoomGrace::never();
  if (word == "immediate") return RoomGrace::immediate();
  auto delay = parse_duration(text);
  if (!delay) return std::nullopt;
  return RoomGrace::after(*delay);
}

void add_server_options(CLI::App& app, ServerOptions& o, std::string& log_level) {
  const char* env = std::getenv("STATEROOM_LOG");
  log_level = env && *env ? env : "info";

  app.add_option("--host", o.host, "Address to listen on (:: for all IPv6 addresses)")->capture_default_str();
  app.add_option("--port,-p", o.port, "Port to listen on (0 picks a free one)")->capture_default_str();
  app.add_option("--threads", o.threads, "Worker threads (0 = one per core)")
      ->capture_default_str()
      ->check(CLI::Range(0u, 1024u));
  app.add_option("--static", o.static_dir, "Directory served at / (directories serve index.html)");
  app.add_option("--client", o.client_dir, "Directory served at /client");
  app.add_option("--default-room", o.default_room, "Room joined by GET /ws")->capture_default_str();
  app.add_option_function<std::string>(
         "--room-grace",
         [&o](const std::string& s) { o.room_grace = checked("a grace period", parse_room_grace)(s); },
         "How long an empty room is kept: never, immediate, or a duration (300s)")
      ->default_str("300s");
  app.add_option_function<std::string>(
         "--max-message-size",
         [&o](const std::string& s) { o.max_message_bytes = checked("a size", parse_size)(s); },
         "Largest message a client may send; larger closes it with 1009")
      ->default_str("1MiB");
  app.add_option_function<std::string>(
         "--max-queued",
         [&o](const std::string& s) { o.max_queued_bytes = checked("a size", parse_size)(s); },
         "Bytes queued for one client (frame headers and 16 bytes per message included) before it is closed "
         "with 1008 as too slow")
      ->default_str("4MiB");
  app.add_option_function<std::string>(
         "--max-room-queue",
         [&o](const std::string& s) { o.max_room_queue_bytes = checked("a size", parse_size)(s); },
         "Bytes of messages a busy room holds before its senders stop being read until it catches up")
      ->default_str("4MiB");
  app.add_option_function<std::string>(
         "--write-timeout",
         [&o](const std::string& s) { o.write_timeout = checked("a duration", parse_duration)(s); },
         "Drop a client whose socket takes nothing for this long while data waits for it")
      ->default_str("30s");
  app.add_option_function<std::string>(
         "--ping-interval",
         [&o](const std::string& s) { o.ping_interval = checked("a duration", parse_duration)(s); },
         "Ping a client silent for this long")
      ->default_str("30s");
  app.add_option_function<std::string>(
         "--idle-timeout",
         [&o](const std::string& s) { o.idle_timeout = checked("a duration", parse_duration)(s); },
         "Close a client silent for this long (must exceed the ping interval)")
      ->default_str("120s");
  app.add_option_function<std::string>(
         "--close-timeout",
         [&o](const std::string& s) { o.close_timeout = checked("a duration", parse_duration)(s); },
         "How long a close handshake may take before the connection is dropped")
      ->default_str("5s");
  app.add_option("--log-level", log_level,
                 "trace, debug, info, warn, error, critical or off (default: $STATEROOM_LOG, else info)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
}

void add_wasm_options(CLI::App& app, wasm::Limits& limits, wasm::LoadOptions& load) {
  app.add_option_function<std::string>(
         "--memory-limit",
         [&limits](const std::string& s) { limits.memory_bytes = checked("a size", parse_size)(s); },
         "Linear memory one room's instance may use; growing past it fails the room")
      ->default_str("64MiB");
  app.add_option_function<std::string>(
         "--cpu-limit",
         [&limits](const std::string& s) { limits.cpu_time_per_event = checked("a duration", parse_duration)(s); },
         "Time a room's guest may run for one event; past it the room fails")
      ->default_str("1s");
  app.add_option("--max-rooms", limits.max_instances, "WebAssembly rooms alive at once; a room beyond fails to start")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000000u));
  app.add_flag("--module-cache", load.cache_compiled,
               "Keep the compiled module in <module>.cwasm next to it and reuse it on the next start (native "
               "code: only for a directory as trusted as this program)");
}

bool apply_log_level(const std::string& log_level) {
  if (set_log_level(log_level)) return true;
  std::cerr << "error: unknown log level '" << log_level
            << "' (expected trace, debug, info, warn, error, critical or off)\n";
  return false;
}

}  // namespace stateroom::cli
