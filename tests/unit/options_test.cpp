// Parsing of the server's command-line values.
#include "../../src/cli/options.hpp"

#include <gtest/gtest.h>
#include <CLI/CLI.hpp>

namespace stateroom::cli {
namespace {

using namespace std::chrono_literals;

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

// --help shows a default for each option; it must be what the option structs really default to.
TEST(Options, TheDefaultsHelpShowsAreTheStructsDefaults) {
  std::string mismatch;
  EXPECT_TRUE(option_defaults_match(&mismatch)) << mismatch;
}

TEST(Options, OneTableServesTheCommandLineAndTheProjectFile) {
  CLI::App app;
  ServerOptions options;
  std::string level;
  wasm::Limits limits;
  wasm::LoadOptions load;
  add_server_options(app, options, level);
  add_wasm_options(app, limits, load);
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
