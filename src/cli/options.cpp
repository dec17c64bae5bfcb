#include "options.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

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

/// `parse(text)`'s value; std::invalid_argument naming what `text` should be when there is none.
template <class Parse>
auto checked(std::string_view what, Parse parse) {
  return [what = std::string(what), parse](const std::string& text) {
    auto value = parse(text);
    if (!value) throw std::invalid_argument(what);
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

std::optional<std::vector<std::string>> parse_origins(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const std::size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    while (item.starts_with(' ')) item.remove_prefix(1);
    while (item.ends_with(' ')) item.remove_suffix(1);
    if (item.empty()) continue;
    if (!is_origin_entry(item)) return std::nullopt;
    out.emplace_back(item);
  }
  return out;
}

std::optional<std::string> read_secret_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string secret((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return std::nullopt;
  if (secret.ends_with('\n')) secret.pop_back();
  if (secret.ends_with('\r')) secret.pop_back();
  if (secret.empty()) return std::nullopt;
  return secret;
}

namespace {

/// Where the options land: every server has `server` and `log_level`; `stateroom serve` also the
/// WebAssembly `limits` and `load`.
struct Targets {
  ServerOptions* server = nullptr;
  std::string* log_level = nullptr;
  wasm::Limits* limits = nullptr;
  wasm::LoadOptions* load = nullptr;
};

std::optional<std::uint64_t> parse_integer(std::string_view text, std::uint64_t lo, std::uint64_t hi) {
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < lo || value > hi) return std::nullopt;
  return value;
}

}  // namespace

std::optional<std::uint32_t> parse_percent(std::string_view text) {
  if (text.ends_with('%')) text.remove_suffix(1);
  const auto value = parse_integer(text, 1, 100);
  if (!value) return std::nullopt;
  return static_cast<std::uint32_t>(*value);
}

namespace {

template <std::uint64_t Lo, std::uint64_t Hi>
std::uint64_t integer(const std::string& text) {
  const std::string what = "an integer from " + std::to_string(Lo) + " to " + std::to_string(Hi);
  return checked(what, [](std::string_view t) { return parse_integer(t, Lo, Hi); })(text);
}

std::size_t size(const std::string& text) { return checked("a size", parse_size)(text); }
std::uint32_t percent(const std::string& text) { return checked("a percentage from 1 to 100", parse_percent)(text); }
bool toggle(const std::string& text) {
  const std::string word = lower(text);
  if (word == "on") return true;
  if (word == "off") return false;
  throw std::invalid_argument("on or off");
}
std::chrono::milliseconds duration(const std::string& text) { return checked("a duration", parse_duration)(text); }
/// A duration in whole seconds (rounded up), `0` or `off` for none.
std::chrono::seconds ttl(const std::string& text) {
  if (lower(text) == "off") return std::chrono::seconds(0);
  return std::chrono::ceil<std::chrono::seconds>(checked("a duration, or off", parse_duration)(text));
}

/// One option: its names, its [server] key and kind (shared with stateroom.toml), the default
/// --help shows (option_defaults_match checks it is the struct's), its help, and how its value
/// is applied.
struct Spec {
  OptionInfo info;
  std::string_view names;  ///< for CLI11: the flag and its short form, if any
  std::string_view default_text;
  std::string_view help;
  bool wasm;  ///< a WebAssembly option (only `stateroom serve` has them)
  void (*apply)(Targets&, const std::string&);
};

const Spec specs[] = {
    {{"--host", "host", ValueKind::text}, "--host", "0.0.0.0", "Address to listen on (:: for all IPv6 addresses)",
     false, [](Targets& t, const std::string& v) { t.server->host = v; }},
    {{"--port", "port", ValueKind::port}, "--port,-p", "8080", "Port to listen on (0 picks a free one)", false,
     [](Targets& t, const std::string& v) { t.server->port = static_cast<std::uint16_t>(integer<0, 65535>(v)); }},
    {{"--threads", "threads", ValueKind::threads}, "--threads", "0", "Worker threads (0 = one per core)", false,
     [](Targets& t, const std::string& v) { t.server->threads = static_cast<unsigned>(integer<0, 1024>(v)); }},
    {{"--static", "", ValueKind::path}, "--static", "", "Directory served at / (directories serve index.html)", false,
     [](Targets& t, const std::string& v) { t.server->static_dir = v; }},
    {{"--client", "client_files", ValueKind::path}, "--client", "", "Directory served at /client", false,
     [](Targets& t, const std::string& v) { t.server->client_dir = v; }},
    {{"--state-dir", "state_dir", ValueKind::output_dir}, "--state-dir", "",
     "Keep rooms' state in this directory (made if missing): a room is snapshotted when it hibernates, when "
     "the server stops and every --snapshot-interval, and comes back from its snapshot (default: none kept)",
     false, [](Targets& t, const std::string& v) { t.server->state_dir = v; }},
    {{"--snapshot-interval", "snapshot_interval", ValueKind::duration}, "--snapshot-interval", "30s",
     "How often a room with events since its last snapshot is snapshotted again, at most what a crash loses "
     "(0: only when it hibernates and when the server stops)",
     false, [](Targets& t, const std::string& v) { t.server->snapshot_interval = duration(v); }},
    {{"--state-max-bytes", "state_max_bytes", ValueKind::size}, "--state-max-bytes", "4GiB",
     "The bytes --state-dir's files may take together; past it the snapshots of the rooms not alive and unused "
     "for longest are removed (one log line each) and those rooms start afresh at their next connect",
     false, [](Targets& t, const std::string& v) {
       t.server->state_max_bytes = size(v);
       if (t.server->state_max_bytes == 0) throw std::invalid_argument("a size above 0");
     }},
    {{"--state-max-rooms", "state_max_rooms", ValueKind::count}, "--state-max-rooms", "100000",
     "The rooms' snapshots (files) --state-dir may hold; past it, as for --state-max-bytes", false,
     [](Targets& t, const std::string& v) { t.server->state_max_rooms = integer<1, 100000000>(v); }},
    {{"--state-ttl", "state_ttl", ValueKind::duration_or_off}, "--state-ttl", "off",
     "A room not alive and unused for longer than this loses its snapshot in --state-dir (checked every tenth "
     "of it, at least once a minute); 0 or off: kept however old",
     false, [](Targets& t, const std::string& v) { t.server->state_ttl = ttl(v); }},
    {{"--on-module-change", "on_module_change", ValueKind::text}, "--on-module-change", "fresh",
     "A snapshot made by another build of the service (and in stateroom dev a room moving to a new build): "
     "fresh starts the room afresh, layout restores its state when the build has the same data layout (its "
     "code alone changed; the default of stateroom dev), keep restores it anyway",
     false, [](Targets& t, const std::string& v) {
       if (v == "fresh") {
         t.server->on_module_change = ServerOptions::OnModuleChange::fresh;
       } else if (v == "layout") {
         t.server->on_module_change = ServerOptions::OnModuleChange::layout;
       } else if (v == "keep") {
         t.server->on_module_change = ServerOptions::OnModuleChange::keep;
       } else {
         throw std::invalid_argument("fresh, layout or keep");
       }
     }},
    {{"--default-room", "default_room", ValueKind::text}, "--default-room", "default", "Room joined by GET /ws", false,
     [](Targets& t, const std::string& v) { t.server->default_room = v; }},
    {{"--room-grace", "room_grace", ValueKind::grace}, "--room-grace", "300s",
     "How long an empty room is kept: never, immediate, or a duration (300s)", false,
     [](Targets& t, const std::string& v) { t.server->room_grace = checked("a grace period", parse_room_grace)(v); }},
    {{"--max-message-size", "max_message_size", ValueKind::size}, "--max-message-size", "1MiB",
     "Largest message a client may send; larger closes it with 1009", false,
     [](Targets& t, const std::string& v) { t.server->max_message_bytes = size(v); }},
    {{"--max-queued", "max_queued", ValueKind::size}, "--max-queued", "4MiB",
     "Bytes queued for one client (frame headers and 16 bytes per message included) before it is closed with "
     "1008 as too slow",
     false, [](Targets& t, const std::string& v) { t.server->max_queued_bytes = size(v); }},
    {{"--max-send-size", "max_send_size", ValueKind::size}, "--max-send-size", "",
     "Largest message a room may send; a room sending a larger one fails (1011) (default: what --max-queued "
     "holds)",
     false, [](Targets& t, const std::string& v) { t.server->max_send_bytes = size(v); }},
    {{"--max-room-queue", "max_room_queue", ValueKind::size}, "--max-room-queue", "4MiB",
     "Bytes of messages a busy room holds before its senders stop being read until it catches up", false,
     [](Targets& t, const std::string& v) { t.server->max_room_queue_bytes = size(v); }},
    {{"--write-timeout", "write_timeout", ValueKind::duration}, "--write-timeout", "30s",
     "Drop a client whose socket takes nothing for this long while data waits for it", false,
     [](Targets& t, const std::string& v) { t.server->write_timeout = duration(v); }},
    {{"--ping-interval", "ping_interval", ValueKind::duration}, "--ping-interval", "30s",
     "Ping a client silent for this long", false,
     [](Targets& t, const std::string& v) { t.server->ping_interval = duration(v); }},
    {{"--idle-timeout", "idle_timeout", ValueKind::duration}, "--idle-timeout", "120s",
     "Close a client silent for this long (must exceed the ping interval)", false,
     [](Targets& t, const std::string& v) { t.server->idle_timeout = duration(v); }},
    {{"--request-timeout", "request_timeout", ValueKind::duration}, "--request-timeout", "10s",
     "Time an HTTP request (a WebSocket upgrade too) may take to arrive once it has begun", false,
     [](Targets& t, const std::string& v) { t.server->request_timeout = duration(v); }},
    {{"--close-timeout", "close_timeout", ValueKind::duration}, "--close-timeout", "5s",
     "How long a close handshake may take before the connection is dropped", false,
     [](Targets& t, const std::string& v) { t.server->close_timeout = duration(v); }},
    {{"--log-level", "log_level", ValueKind::level}, "--log-level", "",
     "trace, debug, info, warn, error, critical or off (default: $STATEROOM_LOG, else info)", false,
     [](Targets& t, const std::string& v) {
       if (!is_log_level(v)) throw std::invalid_argument(log_level_names());
       *t.log_level = v;
     }},
    {{"--memory-limit", "memory_limit", ValueKind::size}, "--memory-limit", "64MiB",
     "Linear memory one room's instance may use; growing past it fails the room", true,
     [](Targets& t, const std::string& v) { t.limits->memory_bytes = size(v); }},
    {{"--total-memory-limit", "total_memory_limit", ValueKind::size}, "--total-memory-limit", "",
     "Linear memory all rooms' instances may use together; a growth past it fails its room, a room that "
     "cannot start within it is closed with 1013 (default: half the machine's memory, or of its cgroup's limit)",
     true, [](Targets& t, const std::string& v) { t.limits->total_memory_bytes = size(v); }},
    {{"--cpu-limit", "cpu_limit", ValueKind::duration}, "--cpu-limit", "1s",
     "Time a room's guest may run for one event; past it the room fails", true,
     [](Targets& t, const std::string& v) { t.limits->cpu_time_per_event = duration(v); }},
    {{"--cpu-share", "cpu_share", ValueKind::percent}, "--cpu-share", "50%",
     "Share of one core a room's guest may use over --cpu-window; past it the room's events wait, and a room "
     "held back for a whole window fails (100%: no share)",
     true, [](Targets& t, const std::string& v) { t.limits->cpu_share_percent = percent(v); }},
    {{"--cpu-window", "cpu_window", ValueKind::duration}, "--cpu-window", "10s",
     "The sliding window of --cpu-share (at least 100ms)", true, [](Targets& t, const std::string& v) {
       t.limits->cpu_window = duration(v);
       if (t.limits->cpu_window < std::chrono::milliseconds(100)) throw std::invalid_argument("at least 100ms");
     }},
    {{"--max-rooms", "max_rooms", ValueKind::rooms}, "--max-rooms", "1000",
     "Rooms alive at once (WebAssembly: instances); at it the room empty for longest makes way, and a client "
     "whose room would be one more while every room has a client is closed with 1013",
     false, [](Targets& t, const std::string& v) { t.server->max_rooms = integer<1, 1000000>(v); }},
    {{"--max-rooms-per-ip", "max_rooms_per_ip", ValueKind::count}, "--max-rooms-per-ip", "100",
     "Rooms alive that clients from one IP address created (loopback not counted; 0: no limit); past it such a "
     "client is closed with 1013",
     false, [](Targets& t, const std::string& v) { t.server->max_rooms_per_ip = integer<0, 1000000>(v); }},
    {{"--max-new-rooms-per-ip", "max_new_rooms_per_ip", ValueKind::count}, "--max-new-rooms-per-ip", "20",
     "Rooms one IP address may create per second (bursts of twice as many; loopback not counted; 0: no "
     "limit); past it its client is closed with 1013",
     false, [](Targets& t, const std::string& v) {
       t.server->max_new_rooms_per_ip = static_cast<std::uint32_t>(integer<0, 100000000>(v));
     }},
    {{"--max-connections", "max_connections", ValueKind::count}, "--max-connections", "",
     "Connections open at once; past it a new one is answered 503 (default: 90 % of the descriptor limit, "
     "which the server raises to its hard limit)",
     false, [](Targets& t, const std::string& v) { t.server->max_connections = integer<0, 100000000>(v); }},
    {{"--max-connections-per-ip", "max_connections_per_ip", ValueKind::count}, "--max-connections-per-ip", "1000",
     "Connections open at once from one IP address (loopback not counted; 0: no limit); past it 503", false,
     [](Targets& t, const std::string& v) { t.server->max_connections_per_ip = integer<0, 100000000>(v); }},
    {{"--compression", "compression", ValueKind::toggle}, "--compression", "off",
     "permessage-deflate with clients that offer it (on or off); an inflated message counts against "
     "--max-message-size",
     false, [](Targets& t, const std::string& v) { t.server->compression = toggle(v); }},
    {{"--compression-window-bits", "compression_window_bits", ValueKind::count}, "--compression-window-bits", "15",
     "LZ77 window of compressed messages, 9 to 15 bits; a client's decompressor costs its connection 2^bits "
     "bytes plus about 7 KiB",
     false, [](Targets& t, const std::string& v) { t.server->compression_window_bits = static_cast<int>(integer<9, 15>(v)); }},
    {{"--compression-threshold", "compression_threshold", ValueKind::size}, "--compression-threshold", "256",
     "Messages shorter than this are sent uncompressed", false,
     [](Targets& t, const std::string& v) { t.server->compression_threshold = size(v); }},
    {{"--max-inflate-rate", "max_inflate_rate", ValueKind::size}, "--max-inflate-rate", "16MiB",
     "Bytes per second the compressed messages of one IP address's clients may inflate to, together (loopback: "
     "each connection; bursts of a second's worth, or one largest message); past it the client is closed with "
     "1008; 0 = no bound",
     false, [](Targets& t, const std::string& v) { t.server->max_inflate_rate = size(v); }},
    {{"--allowed-origins", "allowed_origins", ValueKind::origins}, "--allowed-origins", "",
     "Origins whose pages may connect, comma-separated (https://example.com; * for any); an upgrade with another "
     "Origin header is answered 403 (default: no check; a request without Origin passes)",
     false, [](Targets& t, const std::string& v) {
       t.server->allowed_origins = checked("a comma-separated list of origins (scheme://host[:port] or *)",
                                           parse_origins)(v);
     }},
    {{"--auth-token-secret", "", ValueKind::text}, "--auth-token-secret", "",
     "Key of the HMAC-SHA256 tokens every upgrade must then carry (?token=), at least 16 bytes; without a valid "
     "one it is answered 401 or 403 (default: $STATEROOM_AUTH_TOKEN_SECRET, else no token needed)",
     false, [](Targets& t, const std::string& v) { t.server->auth_token_secret = v; }},
    {{"--auth-token-secret-file", "auth_token_secret_file", ValueKind::file}, "--auth-token-secret-file", "",
     "Read the token key from this file (a trailing newline dropped), so that it is not in the process list",
     false, [](Targets& t, const std::string& v) {
       t.server->auth_token_secret = checked("a readable file holding a secret", read_secret_file)(v);
     }},
    {{"--module-cache", "module_cache", ValueKind::flag}, "--module-cache", "",
     "Keep the compiled module in <module>.cwasm next to it and reuse it on the next start (native code: only "
     "for a directory as trusted as this program)",
     true, [](Targets& t, const std::string&) { t.load->cache_compiled = true; }},
};

/// How --help names an option's value.
const char* type_name(ValueKind kind) {
  switch (kind) {
    case ValueKind::port:
    case ValueKind::threads:
    case ValueKind::rooms:
    case ValueKind::count:
      return "INT";
    case ValueKind::percent:
      return "PERCENT";
    case ValueKind::size:
      return "SIZE";
    case ValueKind::duration:
    case ValueKind::duration_or_off:
      return "DURATION";
    case ValueKind::grace:
      return "GRACE";
    case ValueKind::level:
      return "LEVEL";
    case ValueKind::path:
    case ValueKind::output_dir:
      return "DIR";
    case ValueKind::toggle:
      return "on|off";
    case ValueKind::file:
      return "FILE";
    case ValueKind::origins:
      return "ORIGINS";
    case ValueKind::text:
    case ValueKind::flag:
      break;
  }
  return "TEXT";
}

void add_options(CLI::App& app, Targets targets, bool wasm) {
  for (const Spec& spec : specs) {
    if (spec.wasm != wasm) continue;
    const std::string names(spec.names);
    if (spec.info.kind == ValueKind::flag) {
      app.add_flag_callback(names, [targets, &spec]() mutable { spec.apply(targets, {}); }, std::string(spec.help));
      continue;
    }
    auto apply = [targets, &spec](const std::string& value) mutable {
      try {
        spec.apply(targets, value);
      } catch (const std::invalid_argument& e) {
        throw CLI::ValidationError(std::string(spec.info.flag), "'" + value + "' is not " + e.what());
      }
    };
    auto* option = app.add_option_function<std::string>(names, apply, std::string(spec.help));
    option->type_name(type_name(spec.info.kind));
    if (!spec.default_text.empty()) option->default_str(std::string(spec.default_text));
  }
}

}  // namespace

std::span<const OptionInfo> server_option_table() {
  static const std::vector<OptionInfo> infos = [] {
    std::vector<OptionInfo> out;
    for (const Spec& spec : specs) out.push_back(spec.info);
    return out;
  }();
  return infos;
}

bool option_defaults_match(std::string* mismatch) {
  ServerOptions server;
  std::string level;
  wasm::Limits limits;
  wasm::LoadOptions load;
  Targets targets{&server, &level, &limits, &load};
  for (const Spec& spec : specs)
    if (!spec.default_text.empty()) spec.apply(targets, std::string(spec.default_text));
  const ServerOptions fresh;
  const wasm::Limits fresh_limits;
  const std::pair<bool, const char*> checks[] = {
      {server.host == fresh.host, "--host"},
      {server.port == fresh.port, "--port"},
      {server.threads == fresh.threads, "--threads"},
      {server.default_room == fresh.default_room, "--default-room"},
      {server.room_grace == fresh.room_grace, "--room-grace"},
      {server.snapshot_interval == fresh.snapshot_interval, "--snapshot-interval"},
      {server.on_module_change == fresh.on_module_change, "--on-module-change"},
      {server.state_max_bytes == fresh.state_max_bytes, "--state-max-bytes"},
      {server.state_max_rooms == fresh.state_max_rooms, "--state-max-rooms"},
      {server.state_ttl == fresh.state_ttl, "--state-ttl"},
      {server.max_message_bytes == fresh.max_message_bytes, "--max-message-size"},
      {server.max_queued_bytes == fresh.max_queued_bytes, "--max-queued"},
      {server.max_send_bytes == fresh.max_send_bytes, "--max-send-size"},
      {server.max_room_queue_bytes == fresh.max_room_queue_bytes, "--max-room-queue"},
      {server.write_timeout == fresh.write_timeout, "--write-timeout"},
      {server.ping_interval == fresh.ping_interval, "--ping-interval"},
      {server.idle_timeout == fresh.idle_timeout, "--idle-timeout"},
      {server.request_timeout == fresh.request_timeout, "--request-timeout"},
      {server.close_timeout == fresh.close_timeout, "--close-timeout"},
      {limits.memory_bytes == fresh_limits.memory_bytes, "--memory-limit"},
      {limits.total_memory_bytes == fresh_limits.total_memory_bytes, "--total-memory-limit"},
      {limits.cpu_time_per_event == fresh_limits.cpu_time_per_event, "--cpu-limit"},
      {limits.cpu_share_percent == fresh_limits.cpu_share_percent, "--cpu-share"},
      {limits.cpu_window == fresh_limits.cpu_window, "--cpu-window"},
      {server.max_rooms == fresh.max_rooms, "--max-rooms"},
      {server.max_new_rooms_per_ip == fresh.max_new_rooms_per_ip, "--max-new-rooms-per-ip"},
      {server.max_rooms_per_ip == fresh.max_rooms_per_ip, "--max-rooms-per-ip"},
      {server.max_connections == fresh.max_connections, "--max-connections"},
      {server.max_connections_per_ip == fresh.max_connections_per_ip, "--max-connections-per-ip"},
      {server.compression == fresh.compression, "--compression"},
      {server.compression_window_bits == fresh.compression_window_bits, "--compression-window-bits"},
      {server.compression_threshold == fresh.compression_threshold, "--compression-threshold"},
      {server.max_inflate_rate == fresh.max_inflate_rate, "--max-inflate-rate"},
      {server.allowed_origins == fresh.allowed_origins, "--allowed-origins"},
      {server.auth_token_secret == fresh.auth_token_secret, "--auth-token-secret"},
  };
  for (const auto& [same, flag] : checks) {
    if (same) continue;
    if (mismatch) *mismatch = flag;
    return false;
  }
  return true;
}

void add_server_options(CLI::App& app, ServerOptions& o, std::string& log_level) {
  const char* env = std::getenv("STATEROOM_LOG");
  log_level = env && *env ? env : "info";
  if (const char* secret = std::getenv("STATEROOM_AUTH_TOKEN_SECRET"); secret && *secret) o.auth_token_secret = secret;
  add_options(app, Targets{&o, &log_level, nullptr, nullptr}, false);
}

void add_wasm_options(CLI::App& app, wasm::Limits& limits, wasm::LoadOptions& load) {
  add_options(app, Targets{nullptr, nullptr, &limits, &load}, true);
}

bool apply_log_level(const std::string& log_level) {
  if (set_log_level(log_level)) return true;
  std::cerr << "error: unknown log level '" << log_level << "' (expected " << log_level_names() << ")\n";
  return false;
}

}  // namespace stateroom::cli
