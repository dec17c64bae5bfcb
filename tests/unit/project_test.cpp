// stateroom.toml: what a project says, and every way it can be wrong (file, line and key named).
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "project.hpp"

namespace stateroom::cli {
namespace {

namespace fs = std::filesystem;

class ProjectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("stateroom-project-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_ / "static");
    write("CMakeLists.txt", "project(x)\n");
    write("service.cpp", "// service\n");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const std::string& name, const std::string& text) {
    fs::create_directories((dir_ / name).parent_path());
    std::ofstream(dir_ / name) << text;
  }
  /// The error loading stateroom.toml holding `text`, without the file name; "" when it loads.
  std::string error(const std::string& text) {
    write("stateroom.toml", text);
    try {
      Project::load(dir_ / "stateroom.toml");
      return "";
    } catch (const UserError& e) {
      const std::string what = e.what();
      const std::string prefix = (dir_ / "stateroom.toml").string() + ":";
      return what.starts_with(prefix) ? what.substr(prefix.size()) : what;
    }
  }

  fs::path dir_;
};

TEST_F(ProjectTest, AFullConfiguration) {
  write("stateroom.toml", R"(static_files = "static"
[service]
target = "counter"
[server]
port = 9000
host = "127.0.0.1"
room_grace = "never"
max_queued = "2MiB"
idle_timeout = 90
memory_limit = 33554432
cpu_limit = "250ms"
module_cache = true
log_level = "debug"
compression = true
)");
  const Project p = Project::load(dir_ / "stateroom.toml");
  EXPECT_EQ(p.dir, dir_);
  EXPECT_EQ(p.target, "counter");
  EXPECT_EQ(p.target_name(), "counter");
  ASSERT_TRUE(p.static_dir);
  EXPECT_EQ(*p.static_dir, dir_ / "static");
  // In key order (the order toml++ keeps), each as `stateroom serve` takes it.
  const std::vector<std::string> expected = {
      "--compression", "on",       "--cpu-limit",  "250ms",     "--host",       "127.0.0.1", "--idle-timeout",  "90",
      "--log-level",  "debug",     "--max-queued", "2MiB",      "--memory-limit",  "33554432",
      "--module-cache", "--port",  "9000",         "--room-grace", "never"};
  EXPECT_EQ(p.server_args, expected);
}

TEST_F(ProjectTest, TheGuestBudgets) {
  write("stateroom.toml", R"([service]
target = "counter"
[server]
cpu_share = "25%"
cpu_window = "5s"
total_memory_limit = "2GiB"
)");
  const std::vector<std::string> expected = {"--cpu-share", "25%", "--cpu-window", "5s", "--total-memory-limit",
                                             "2GiB"};
  EXPECT_EQ(Project::load(dir_ / "stateroom.toml").server_args, expected);
  write("stateroom.toml", "[service]\ntarget = \"x\"\n[server]\nstate_dir = \"state\"\nsnapshot_interval = 5\n");
  EXPECT_EQ(Project::load(dir_ / "stateroom.toml").server_args,
            (std::vector<std::string>{"--snapshot-interval", "5", "--state-dir", (dir_ / "state").string()}))
      << "the state directory is the project's, made when the server starts";
  write("stateroom.toml", "[service]\ntarget = \"x\"\n[server]\ncpu_share = 80\n");
  EXPECT_EQ(Project::load(dir_ / "stateroom.toml").server_args, (std::vector<std::string>{"--cpu-share", "80"}));
}

TEST_F(ProjectTest, OriginsAndTheTokenSecretFile) {
  write("secret.txt", "0123456789abcdef0123456789abcdef\n");
  write("stateroom.toml", R"([service]
target = "counter"
[server]
allowed_origins = ["https://app.example", "http://localhost:8080"]
auth_token_secret_file = "secret.txt"
)");
  const std::vector<std::string> expected = {"--allowed-origins", "https://app.example,http://localhost:8080",
                                             "--auth-token-secret-file", (dir_ / "secret.txt").string()};
  EXPECT_EQ(Project::load(dir_ / "stateroom.toml").server_args, expected);
  write("stateroom.toml", "[service]\ntarget = \"x\"\n[server]\nallowed_origins = \"https://a.example, *\"\n");
  EXPECT_EQ(Project::load(dir_ / "stateroom.toml").server_args,
            (std::vector<std::string>{"--allowed-origins", "https://a.example, *"}));
  EXPECT_EQ(error("[service]\ntarget = \"x\"\n[server]\nallowed_origins = [\"https://a.example/\"]\n"),
            "4: server.allowed_origins: 'https://a.example/' is not a list of origins (scheme://host[:port] or *)");
  EXPECT_EQ(error("[service]\ntarget = \"x\"\n[server]\nallowed_origins = [1]\n"),
            "4: server.allowed_origins must be origins (strings)");
  EXPECT_EQ(error("[service]\ntarget = \"x\"\n[server]\nauth_token_secret_file = \"nope.txt\"\n"),
            "4: server.auth_token_secret_file: " + (dir_ / "nope.txt").string() + " is not a file");
  const std::string secret_in_file = error("[service]\ntarget = \"x\"\n[server]\nauth_token_secret = \"hunter2\"\n");
  EXPECT_TRUE(secret_in_file.starts_with("4: unknown key 'server.auth_token_secret' (known:"))
      << "a secret has no place in a project file (its file has): " << secret_in_file;
}

TEST_F(ProjectTest, SourcesInsteadOfATarget) {
  write("stateroom.toml", "[service]\nsources = [\"service.cpp\"]\n");
  const Project p = Project::load(dir_ / "stateroom.toml");
  EXPECT_TRUE(p.target.empty());
  EXPECT_EQ(p.target_name(), "service");
  ASSERT_EQ(p.sources.size(), 1u);
  EXPECT_EQ(p.sources[0], dir_ / "service.cpp");
  EXPECT_FALSE(p.static_dir);
}

TEST_F(ProjectTest, EveryMistakeNamesItsLineAndKey) {
  EXPECT_EQ(error("statc_files = \"static\"\n[service]\ntarget = \"x\"\n"),
            "1: unknown key 'statc_files' (known: static_files, [service], [server])");
  EXPECT_EQ(error("[service]\ntarget = \"x\"\n[server]\nportt = 1\n"),
            "4: unknown key 'server.portt' (known: host, port, threads, client_files, state_dir, snapshot_interval, "
            "state_max_bytes, state_max_rooms, state_ttl, "
            "on_module_change, default_room, room_grace, "
            "max_message_size, max_queued, max_send_size, max_room_queue, write_timeout, ping_interval, idle_timeout, "
            "request_timeout, close_timeout, log_level, memory_limit, total_memory_limit, cpu_limit, cpu_share, "
            "cpu_window, max_rooms, max_rooms_per_ip, max_new_rooms_per_ip, "
            "max_connections, max_connections_per_ip, compression, compression_window_bits, compression_threshold, "
            "max_inflate_rate, allowed_origins, auth_token_secret_file, module_cache)");
  EXPECT_EQ(error("[service]\ntarget = \"x\"\n[server]\ncompression = \"yes\"\n"),
            "4: server.compression must be true or false");
  EXPECT_EQ(error("[service]\ntarget = \"x\"\n[server]\nport = \"eighty\"\n"),
            "4: server.port must be an integer from 0 to 65535");
  EXPECT_EQ(error("[service]\ntarget = \"x\"\n[server]\nport = 70000\n"),
            "4: server.port must be an integer from 0 to 65535");
  EXPECT_EQ(error("[service]\ntarget = \"x\"\n[server]\nmax_queued = \"lots\"\n"),
            "4: server.max_queued: 'lots' is not a size");
  EXPECT_EQ(error("[service]\ntarget = \"x\"\n[server]\nping_interval = true\n"),
            "4: server.ping_interval must be a duration (a string like \"30s\", or an integer)");
  EXPECT_EQ(error("[service]\ntarget = \"x\"\n[server]\nroom_grace = \"sometimes\"\n"),
            "4: server.room_grace: 'sometimes' is not a grace period (never, immediate or a duration)");
  EXPECT_EQ(error("[service]\ntarget = \"x\"\n[server]\ncpu_share = 0\n"),
            "4: server.cpu_share must be an integer from 1 to 100");
  EXPECT_EQ(error("[service]\ntarget = \"x\"\n[server]\ncpu_share = \"half\"\n"),
            "4: server.cpu_share must be a percentage from 1 to 100 (50 or \"50%\")");
  EXPECT_EQ(error("[service]\ntarget = \"x\"\n[server]\nmodule_cache = \"yes\"\n"),
            "4: server.module_cache must be true or false");
  EXPECT_EQ(error("[service]\ntarget = \"x\"\n[server]\nlog_level = \"loud\"\n"),
            "4: server.log_level: 'loud' is not trace, debug, info, warn, error, critical or off");
  EXPECT_EQ(error("static_files = \"public\"\n[service]\ntarget = \"x\"\n"),
            "1: static_files: " + (dir_ / "public").string() + " is not a directory");
  EXPECT_EQ(error("[service]\ntarget = \"x\"\nsources = [\"service.cpp\"]\n"),
            "1: [service] needs either `target` (a CMake target of the project's CMakeLists.txt) or `sources` (the "
            "files to build), not both");
  EXPECT_EQ(error("[service]\nsources = [\"missing.cpp\"]\n"),
            "2: service.sources: " + (dir_ / "missing.cpp").string() + " does not exist");
  EXPECT_EQ(error("[service]\ntargett = \"x\"\n"), "2: unknown key 'service.targett' (known: target, sources)");
  EXPECT_EQ(error("[service]\ntarget = \"x\"\n[server]\nport = \n"), "4: Error while parsing key-value pair: expected value, saw '\\n'");
  const std::string missing = error("[server]\nport = 1\n");
  EXPECT_NE(missing.find("no [service] table"), std::string::npos) << missing;
}

TEST_F(ProjectTest, FoundFromASubdirectoryAndNotOutsideOne) {
  write("stateroom.toml", "[service]\ntarget = \"x\"\n");
  EXPECT_EQ(Project::find(dir_ / "static").dir, dir_);
  const auto outside = fs::temp_directory_path() / ("stateroom-no-project-" + std::to_string(::getpid()));
  fs::create_directories(outside);
  try {
    Project::find(outside);
    ADD_FAILURE() << "found a project where there is none";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("no stateroom.toml in " + outside.string()), std::string::npos) << e.what();
  }
  fs::remove_all(outside);
}

TEST_F(ProjectTest, TheWatchedFilesAreTheSources) {
  write("stateroom.toml", "static_files = \"static\"\n[service]\ntarget = \"x\"\n");
  write("src/more.cpp", "");
  write("static/index.html", "");
  write("dist/server.wasm", "");
  write(".stateroom/build/CMakeCache.txt", "");
  write(".hidden", "");
  const auto files = source_snapshot(Project::load(dir_ / "stateroom.toml"));
  std::vector<std::string> names;
  for (const auto& [file, stamp] : files) names.push_back(file.lexically_relative(dir_).string());
  EXPECT_EQ(names, (std::vector<std::string>{"CMakeLists.txt", "service.cpp", "src/more.cpp", "stateroom.toml"}));
}

}  // namespace
}  // namespace stateroom::cli
