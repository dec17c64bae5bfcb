// Command-line options shared by every server binary: the native example servers and `stateroom`.
#pragma once

#include <CLI/App.hpp>
#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "stateroom/server.hpp"
#include "stateroom/wasm.hpp"

namespace stateroom::cli {

/// `1048576`, `512KiB`, `1MiB`, `2GiB` (binary) or `1MB` (decimal); units are case-insensitive.
std::optional<std::size_t> parse_size(std::string_view text);
/// `250ms`, `30s`, `5m`, `1h`; a bare number is seconds.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
/// `never`, `immediate`, or a duration (a bare number is seconds).
std::optional<RoomGrace> parse_room_grace(std::string_view text);

/// What an option's value is; the command line and stateroom.toml check it the same way.
/// `toggle`: `on` or `off` on the command line, a boolean (or "on"/"off") in stateroom.toml.
/// `duration_or_off`: a duration, or `off` (as `0`).
enum class ValueKind {
  text, port, threads, rooms, count, percent, size, duration, duration_or_off, grace, flag, toggle, level, path, file,
  origins,
  output_dir  ///< a directory the server makes if it is missing (in stateroom.toml: relative to the project)
};

/// One option of the server commands: its flag, its `[server]` key in stateroom.toml (empty when
/// the file has none) and the kind of its value.
struct OptionInfo {
  std::string_view flag;
  std::string_view key;
  ValueKind kind;
};

/// Every option add_server_options and add_wasm_options register, in --help order: one table for
/// the command line and the project file.
std::span<const OptionInfo> server_option_table();

/// Whether every default the options' --help shows is what the option structs default to; names
/// the first that is not.
bool option_defaults_match(std::string* mismatch = nullptr);

/// `50` or `50%` as a percentage from 1 to 100; nothing for anything else.
std::optional<std::uint32_t> parse_percent(std::string_view text);

/// `https://a.example, http://localhost:8080` as a list of origins (each `scheme://host[:port]` or
/// `*`; spaces around the commas and empty items ignored); nothing when one is not an origin.
std::optional<std::vector<std::string>> parse_origins(std::string_view text);

/// What a secret file holds, without one trailing newline (`\n` or `\r\n`); nothing when it cannot
/// be read or holds nothing else.
std::optional<std::string> read_secret_file(const std::string& path);

/// Registers the server options on `app`; parsed values land in `options` and `log_level`.
/// `log_level` starts as the STATEROOM_LOG environment variable, or `info`; the auth token secret
/// as STATEROOM_AUTH_TOKEN_SECRET, or none.
void add_server_options(CLI::App& app, ServerOptions& options, std::string& log_level);

/// Registers the WebAssembly sandbox limits and loading options on `app`.
void add_wasm_options(CLI::App& app, wasm::Limits& limits, wasm::LoadOptions& load);

/// Applies `log_level`; returns false after printing an error when it is not a level.
bool apply_log_level(const std::string& log_level);

}  // namespace stateroom::cli
