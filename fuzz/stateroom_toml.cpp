// stateroom_toml: a project's stateroom.toml read by Project::load (src/cli/project.hpp), the input
// being the file, in a fixture project (a CMakeLists.txt, service.cpp, src/a.cpp and static/).
//   A file that is refused throws UserError, whose message starts with the file's path (a
//     `file:line: message` or `file: message`); anything else thrown, or a crash, is a finding.
//   A file that is accepted names a target or sources (not both; the sources exist), a static
//     directory that exists, and [server] settings whose arguments the server options' own command
//     line (add_server_options, add_wasm_options, as `stateroom dev` parses them) takes without an
//     error and reads back as the file said: text keys, the port, the threads.
#include <CLI/CLI.hpp>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common.hpp"
#include "options.hpp"
#include "project.hpp"

using namespace stateroom;
namespace fs = std::filesystem;

namespace {

fs::path project_dir;
fs::path config;

void remove_fixture() {
  std::error_code ec;
  fs::remove_all(project_dir, ec);
}

void make_fixture() {
  project_dir = fuzz::scratch_directory() / ("stateroom-fuzz-toml-" + std::to_string(::getpid()));
  fs::remove_all(project_dir);
  fs::create_directories(project_dir / "static");
  fs::create_directories(project_dir / "src");
  std::ofstream(project_dir / "CMakeLists.txt") << "# a project\n";
  std::ofstream(project_dir / "service.cpp") << "// a service\n";
  std::ofstream(project_dir / "src/a.cpp") << "// a source\n";
  config = project_dir / "stateroom.toml";
  std::atexit(remove_fixture);
}

/// What `stateroom dev` does with the [server] arguments: the server's command line, the project's
/// settings first (the last of an option wins).
struct Parsed {
  ServerOptions server;
  std::string log_level;
  wasm::Limits limits;
  wasm::LoadOptions load;
};

Parsed parse_args(const std::vector<std::string>& args) {
  Parsed out;
  CLI::App app;
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cli::add_server_options(app, out.server, out.log_level);
  cli::add_wasm_options(app, out.limits, out.load);
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them reversed
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    std::string line;
    for (const auto& a : args) line += " [" + a + "]";
    std::fprintf(stderr, "the [server] arguments%s do not parse: %s\n", line.c_str(), e.what());
    FUZZ_CHECK(!"stateroom.toml's [server] arguments parse as a command line");
  }
  return out;
}

void check_accepted(const cli::Project& project, std::string_view text) {
  FUZZ_CHECK(project.target.empty() != project.sources.empty());
  std::error_code ec;
  for (const auto& s : project.sources) FUZZ_CHECK(fs::is_regular_file(s, ec));
  if (project.static_dir) FUZZ_CHECK(fs::is_directory(*project.static_dir, ec));

  const Parsed parsed = parse_args(project.server_args);
  // The file's own values, read again with toml++, as the options hold them now.
  const toml::table file = toml::parse(text);
  const toml::table* server = file["server"].as_table();
  if (!server) return;
  if (auto host = (*server)["host"].value<std::string>()) FUZZ_CHECK(parsed.server.host == *host);
  if (auto room = (*server)["default_room"].value<std::string>()) FUZZ_CHECK(parsed.server.default_room == *room);
  if (auto port = (*server)["port"].value<std::int64_t>()) FUZZ_CHECK(parsed.server.port == *port);
  if (auto threads = (*server)["threads"].value<std::int64_t>()) FUZZ_CHECK(parsed.server.threads == *threads);
  if (auto level = (*server)["log_level"].value<std::string>()) FUZZ_CHECK(parsed.log_level == *level);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ::unsetenv("STATEROOM_LOG");
  make_fixture();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  {
    std::ofstream out(config, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
  }
  try {
    const cli::Project project = cli::Project::load(config);
    FUZZ_CHECK(project.config_file == config);
    FUZZ_CHECK(project.dir == project_dir);
    check_accepted(project, text);
  } catch (const cli::UserError& e) {
    FUZZ_CHECK(std::string_view(e.what()).starts_with(config.string()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "Project::load threw %s, not a UserError: %s\n", typeid(e).name(), e.what());
    FUZZ_CHECK(!"Project::load throws only UserError");
  }
  return 0;
}
