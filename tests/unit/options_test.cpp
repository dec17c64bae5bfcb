// Parsing of the server's command-line values.
#include "../../src/cli/options.hpp"
#include "../../src/cli/project.hpp"

#include <gtest/gtest.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace stateroom::cli {
namespace {

using namespace std::chrono_literals;

/// The server options `args` give, in order (CLI11 takes them reversed).
ServerOptions parsed(std::vector<std::string> args) {
  CLI::App app;
  ServerOptions options;
  std::string level;
  add_server_options(app, options, level);
  std::reverse(args.begin(), args.end());
  app.parse(args);
  return options;
}

TEST(Options, Sizes) {
  EXPECT_EQ(parse_size("1024"), 1024u);
  EXPECT_EQ(parse_size("1MiB"), 1u << 20);
  EXPECT_EQ(parse_size("64kib"), 64u * 1024);
  EXPECT_EQ(parse_size("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_size("1MB"), 1000000u);
  EXPECT_EQ(parse_size("10B"), 10u);
  for (auto bad : {"", "MiB", "1 MiB", "-1", "1.5MiB", "1TiB", "99999999999999999999"}) {
    EXPECT_FALSE(parse_size(bad)) << bad;
  }
}

TEST(Options, Durations) {
  EXPECT_EQ(parse_duration("30"), 30s);
  EXPECT_EQ(parse_duration("250ms"), 250ms);
  EXPECT_EQ(parse_duration("2m"), 120s);
  EXPECT_EQ(parse_duration("1h"), 3600s);
  for (auto bad : {"", "s", "1d", "-5s", "1.5s"}) EXPECT_FALSE(parse_duration(bad)) << bad;
}

TEST(Options, RoomGrace) {
  EXPECT_EQ(parse_room_grace("never"), RoomGrace::never());
  EXPECT_EQ(parse_room_grace("immediate"), RoomGrace::immediate());
  EXPECT_EQ(parse_room_grace("300"), RoomGrace::after(300s));
  EXPECT_EQ(parse_room_grace("10s"), RoomGrace::after(10s));
  EXPECT_FALSE(parse_room_grace("sometimes"));
}

TEST(Options, CommandLine) {
  CLI::App app;
  ServerOptions options;
  std::string level;
  add_server_options(app, options, level);
  app.parse(std::vector<std::string>{"never", "--room-grace", "64KiB", "--max-message-size", "9000",
                                     "--port"});  // CLI11 takes arguments in reverse
  EXPECT_EQ(options.port, 9000);
  EXPECT_EQ(options.max_message_bytes, 64u * 1024);
  EXPECT_EQ(options.room_grace, RoomGrace::never());
  CLI::App bad;
  ServerOptions o2;
  add_server_options(bad, o2, level);
  EXPECT_THROW(bad.parse(std::vector<std::string>{"lots", "--max-queued"}), CLI::ValidationError);
}

TEST(Options, Percentages) {
  EXPECT_EQ(parse_percent("50"), 50u);
  EXPECT_EQ(parse_percent("25%"), 25u);
  EXPECT_EQ(parse_percent("100%"), 100u);
  for (auto bad : {"", "%", "0", "0%", "101", "50 %", "-5", "half", "12.5%"}) EXPECT_FALSE(parse_percent(bad)) << bad;
}

/// The options of `stateroom serve`, registered on one CLI11 app.
struct ServeOptions {
  CLI::App app;
  ServerOptions options;
  std::string level;
  wasm::Limits limits;
  wasm::LoadOptions load;
  ServeOptions() {
    add_server_options(app, options, level);
    add_wasm_options(app, limits, load);
  }
};

TEST(Options, TheGuestBudgetsOnTheCommandLine) {
  ServeOptions serve;
  auto& [app, options, level, limits, load] = serve;
  app.parse(std::vector<std::string>{"2GiB", "--total-memory-limit", "500ms", "--cpu-window", "20%", "--cpu-share"});
  EXPECT_EQ(limits.cpu_share_percent, 20u);
  EXPECT_EQ(limits.cpu_window, 500ms);
  EXPECT_EQ(limits.total_memory_bytes, 2ull << 30);
  for (std::vector<std::string> bad : std::vector<std::vector<std::string>>{
           {"0", "--cpu-share"}, {"150%", "--cpu-share"}, {"50ms", "--cpu-window"}, {"lots", "--total-memory-limit"}}) {
    CLI::App again;
    wasm::Limits l2;
    add_wasm_options(again, l2, load);
    const std::string flag = bad[1];
    EXPECT_THROW(again.parse(bad), CLI::ValidationError) << flag;
  }
}

TEST(Options, Origins) {
  EXPECT_EQ(parse_origins("https://a.example, http://localhost:8080,,*"),
            (std::vector<std::string>{"https://a.example", "http://localhost:8080", "*"}));
  EXPECT_EQ(parse_origins(""), std::vector<std::string>{});
  for (auto bad : {"https://a.example/", "a.example", "https://a.example,null", "https://a example"})
    EXPECT_FALSE(parse_origins(bad)) << bad;
}

TEST(Options, TheTokenSecretFromAFileTheEnvironmentOrTheFlag) {
  const auto file = std::filesystem::temp_directory_path() / ("stateroom-secret-" + std::to_string(::getpid()));
  auto holding = [&](const std::string& text) {
    std::ofstream(file, std::ios::binary | std::ios::trunc) << text;
    return read_secret_file(file.string());
  };
  EXPECT_EQ(holding("0123456789abcdef\n"), "0123456789abcdef");
  EXPECT_EQ(holding("0123456789abcdef\r\n"), "0123456789abcdef");
  EXPECT_EQ(holding("0123456789abcdef"), "0123456789abcdef");
  EXPECT_EQ(holding("two lines\n\n"), "two lines\n") << "only one newline is dropped";
  EXPECT_FALSE(holding(""));
  EXPECT_FALSE(holding("\n"));
  EXPECT_FALSE(read_secret_file((file.string() + ".missing")));

  ::setenv("STATEROOM_AUTH_TOKEN_SECRET", "from the environment", 1);
  EXPECT_EQ(parsed({}).auth_token_secret, "from the environment");
  EXPECT_EQ(parsed({"--auth-token-secret", "from the flag"}).auth_token_secret, "from the flag");
  holding("from the file\n");
  EXPECT_EQ(parsed({"--auth-token-secret-file", file.string()}).auth_token_secret, "from the file");
  EXPECT_EQ(parsed({"--auth-token-secret-file", file.string(), "--auth-token-secret", "flag"}).auth_token_secret,
            "from the file");
  EXPECT_EQ(parsed({"--auth-token-secret", "flag", "--auth-token-secret-file", file.string()}).auth_token_secret,
            "from the file")
      << "the file wins, wherever it stands";
  ::unsetenv("STATEROOM_AUTH_TOKEN_SECRET");
  EXPECT_EQ(parsed({}).auth_token_secret, "");
  EXPECT_THROW(parsed({"--auth-token-secret-file", file.string() + ".missing"}), CLI::ValidationError);
  std::filesystem::remove(file);

  EXPECT_EQ(parsed({"--allowed-origins", "https://a.example,https://b.example"}).allowed_origins,
            (std::vector<std::string>{"https://a.example", "https://b.example"}));
  EXPECT_THROW(parsed({"--allowed-origins", "https://a.example/app"}), CLI::ValidationError);
}

// The state directory's bounds: --state-max-bytes takes a size as --memory-limit does, --state-max-rooms
// a count, --state-ttl a duration (whole seconds, rounded up) or 0 / off; stateroom.toml the same.
TEST(Options, TheStateDirectorysBoundsAndTtl) {
  const ServerOptions defaults = parsed({});
  EXPECT_EQ(defaults.state_max_bytes, 4ull << 30);
  EXPECT_EQ(defaults.state_max_rooms, 100000u);
  EXPECT_EQ(defaults.state_ttl, 0s);
  const ServerOptions set =
      parsed({"--state-max-bytes", "512MiB", "--state-max-rooms", "2500", "--state-ttl", "30m"});
  EXPECT_EQ(set.state_max_bytes, 512ull << 20);
  EXPECT_EQ(set.state_max_rooms, 2500u);
  EXPECT_EQ(set.state_ttl, 1800s);
  EXPECT_EQ(parsed({"--state-max-bytes", "10GB"}).state_max_bytes, 10000000000ull);
  EXPECT_EQ(parsed({"--state-ttl", "720h"}).state_ttl, 720h);
  EXPECT_EQ(parsed({"--state-ttl", "1500ms"}).state_ttl, 2s) << "rounded up to whole seconds";
  for (const char* off : {"off", "OFF", "0", "0s"}) EXPECT_EQ(parsed({"--state-ttl", off}).state_ttl, 0s) << off;
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"--state-max-bytes", "0"}, {"--state-max-bytes", "lots"},
        {"--state-max-bytes", "1TiB"}, {"--state-max-rooms", "0"}, {"--state-max-rooms", "-5"},
        {"--state-max-rooms", "many"}, {"--state-ttl", "soon"}, {"--state-ttl", "-1s"}, {"--state-ttl", "1d"}})
    EXPECT_THROW(parsed(bad), CLI::ValidationError) << bad[0] << " " << bad[1];

  // stateroom.toml: the same keys, checked as the flags are.
  const auto dir = std::filesystem::temp_directory_path() / ("stateroom-options-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "stateroom.toml") << "[service]\ntarget = \"x\"\n[server]\nstate_dir = \"state\"\n"
                                           "state_max_bytes = \"1GiB\"\nstate_max_rooms = 300\nstate_ttl = \"24h\"\n";
  std::ofstream(dir / "CMakeLists.txt") << "project(x)\n";
  const Project project = Project::load(dir / "stateroom.toml");
  const ServerOptions from_file = parsed(project.server_args);
  EXPECT_EQ(from_file.state_max_bytes, 1ull << 30);
  EXPECT_EQ(from_file.state_max_rooms, 300u);
  EXPECT_EQ(from_file.state_ttl, 24h);
  std::ofstream(dir / "stateroom.toml", std::ios::trunc) << "[service]\ntarget = \"x\"\n[server]\nstate_ttl = 0\n"
                                                            "state_max_bytes = 4096\n";
  EXPECT_EQ(parsed(Project::load(dir / "stateroom.toml").server_args).state_ttl, 0s);
  EXPECT_EQ(parsed(Project::load(dir / "stateroom.toml").server_args).state_max_bytes, 4096u);
  std::ofstream(dir / "stateroom.toml", std::ios::trunc) << "[service]\ntarget = \"x\"\n[server]\nstate_ttl = \"off\"\n";
  EXPECT_EQ(parsed(Project::load(dir / "stateroom.toml").server_args).state_ttl, 0s) << "off, as on the command line";
  std::ofstream(dir / "stateroom.toml", std::ios::trunc) << "[service]\ntarget = \"x\"\n[server]\nstate_ttl = \"soon\"\n";
  EXPECT_THROW(Project::load(dir / "stateroom.toml"), UserError);
  std::filesystem::remove_all(dir);
}

// --help shows a default for each option; it must be what the option structs really default to.
TEST(Options, TheDefaultsHelpShowsAreTheStructsDefaults) {
  std::string mismatch;
  EXPECT_TRUE(option_defaults_match(&mismatch)) << mismatch;
}

TEST(Options, OneTableServesTheCommandLineAndTheProjectFile) {
  ServeOptions serve;
  auto& [app, options, level, limits, load] = serve;
  for (const OptionInfo& option : server_option_table())
    EXPECT_NE(app.get_option_no_throw(std::string(option.flag)), nullptr) << option.flag;
  app.parse(std::vector<std::string>{"--module-cache", "7", "--max-rooms", "debug", "--log-level", "2", "--threads"});
  EXPECT_EQ(options.threads, 2u);
  EXPECT_EQ(level, "debug");
  EXPECT_EQ(options.max_rooms, 7u);
  EXPECT_TRUE(load.cache_compiled);
  for (const std::vector<std::string>& bad : {std::vector<std::string>{"2000", "--threads"},
                                              std::vector<std::string>{"70000", "--port"},
                                              std::vector<std::string>{"loud", "--log-level"},
                                              std::vector<std::string>{"0", "--max-rooms"}}) {
    CLI::App again;
    ServerOptions o;
    wasm::Limits l;
    add_server_options(again, o, level);
    add_wasm_options(again, l, load);
    std::vector<std::string> args = bad;
    EXPECT_THROW(again.parse(args), CLI::ValidationError) << bad[1] << " " << bad[0];
  }
}

TEST(Options, LogLevelsAreOneList) {
  EXPECT_EQ(log_level_names(), "trace, debug, info, warn, error, critical or off");
  for (std::string_view level : log_levels) EXPECT_TRUE(is_log_level(level)) << level;
  EXPECT_FALSE(is_log_level("warning"));
  EXPECT_FALSE(set_log_level("loud"));
}

}  // namespace
}  // namespace stateroom::cli
