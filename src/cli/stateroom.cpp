// The `stateroom` command: serve, dev, build, new.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <regex>
#include <thread>

#include "common/text.hpp"
#include "load/load_command.hpp"
#include "options.hpp"
#include "project.hpp"
#include "server/stop_signals.hpp"
#include "stateroom/server.hpp"
#include "stateroom/wasm.hpp"
#include "templates.hpp"
#include "trial_room.hpp"

namespace fs = std::filesystem;
using namespace stateroom;
using cli::UserError;

namespace {

/// Everything the command line can say.
struct Args {
  ServerOptions options;
  std::string log_level;
  wasm::Limits limits;
  wasm::LoadOptions load;
  std::string module;  ///< serve
  int dev_port = -1;   ///< dev [PORT]
  std::string name;    ///< new
  std::string out = "dist";  ///< build
  load::LoadOptions load_test;  ///< load
};

struct App {
  CLI::App app{"Stateroom: WebSocket services in rooms, each room a sandboxed WebAssembly instance.\n"
               "Start with `stateroom new NAME`, then `stateroom dev` in it.",
               "stateroom"};
  CLI::App* serve = nullptr;
  CLI::App* dev = nullptr;
  CLI::App* build = nullptr;
  CLI::App* create = nullptr;
  CLI::App* load = nullptr;
};

void add_serving_options(CLI::App& cmd, Args& a) {
  cli::add_server_options(cmd, a.options, a.log_level);
  cli::add_wasm_options(cmd, a.limits, a.load);
}

std::unique_ptr<App> make_app(Args& a) {
  auto app = std::make_unique<App>();
  app->app.require_subcommand(1);
  app->app.set_version_flag("--version", "stateroom " STATEROOM_VERSION);
  // A project's settings come first on the command line and the user's flags after: the last wins.
  app->app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  app->serve = app->app.add_subcommand(
      "serve",
      "Serves a WebAssembly service module (.wasm, or .wat text) over WebSocket: connect to /ws/<room> (or /ws for "
      "the default room); GET /status answers ok. Given a directory (as `stateroom build` writes), serves its "
      "server.wasm and its static/ at /.");
  app->serve->add_option("module", a.module, "The module file (.wasm or .wat), or a directory holding server.wasm")
      ->required();
  add_serving_options(*app->serve, a);

  app->dev = app->app.add_subcommand(
      "dev",
      "In a project (a directory with stateroom.toml, or below one): builds the service to WebAssembly, serves it "
      "with the project's static files, and rebuilds when a source changes. A new build takes over every room at "
      "once, its clients staying connected: a room keeps its state when the build changed only code (the same "
      "static data, globals and tables; the log says which), else starts afresh. A failed build shows the "
      "compiler's errors, one whose service cannot start a room (it traps in init) shows why, and the last "
      "good build keeps serving, every room with its state. Rooms' state is kept in memory (across "
      "hibernation too) unless --state-dir is given, and --on-module-change defaults to layout. The [server] "
      "table of stateroom.toml sets options; flags override it.");
  app->dev->add_option("port", a.dev_port, "Port to serve on (default: stateroom.toml's, else 8080; 0 picks a free one)")
      ->check(CLI::Range(0, 65535));
  add_serving_options(*app->dev, a);

  app->build = app->app.add_subcommand(
      "build", "In a project: builds the service and writes DIR/server.wasm and DIR/static/ (the project's static "
               "files), ready for `stateroom serve DIR`.");
  app->build->add_option("--out,-o", a.out, "The directory to write")->capture_default_str();

  app->create = app->app.add_subcommand(
      "new", "Creates the project NAME/ (a counter service, a page that uses it, stateroom.toml, CMakeLists.txt and "
             "a README); `cd NAME && stateroom dev` runs it.");
  app->create->add_option("name", a.name, "The project's directory and name (letters, digits, - and _)")->required();

  app->load = app->app.add_subcommand(
      "load", "Load-tests a running server (yours or any WebSocket room server) with one workload and reports "
              "messages per second, latency percentiles and, with --server-pid, the server's CPU time per message "
              "and memory per connection. The same as the stateroom-load program.");
  load::add_load_options(*app->load, a.load_test);
  return app;
}

// --- serve ------------------------------------------------------------------------------------------

std::shared_ptr<wasm::Engine> make_engine(const wasm::Limits& limits) {
  try {
    return std::make_shared<wasm::Engine>(limits);
  } catch (const std::invalid_argument& e) {
    throw UserError(e.what());
  }
}

/// The sandbox limits in force (the total's default depends on the machine), once listening.
void log_limits(const wasm::Engine& engine) {
  const auto& limits = engine.limits();
  spdlog::info("rooms get up to {} of memory each and {} together, and {} ms of CPU time per event",
               stateroom::detail::format_bytes(limits.memory_bytes), stateroom::detail::format_bytes(limits.total_memory_bytes),
               limits.cpu_time_per_event.count());
}

/// A message a client may send must fit in a room's guest memory (and under the 32-bit module
/// interface's 2 GiB block): a --max-message-size beyond --memory-limit is a mistake.
void check_message_fits(const ServerOptions& options, const wasm::Limits& limits) {
  const std::uint64_t fits = std::min<std::uint64_t>(limits.memory_bytes, std::uint64_t{1} << 31);
  if (options.max_message_bytes >= fits)
    throw UserError(fmt::format("--max-message-size ({} bytes) must be smaller than a room's guest memory "
                                "(--memory-limit, {} bytes) and 2 GiB",
                                options.max_message_bytes, limits.memory_bytes));
}

int serve(Args& a) {
  // First: the runtime's threads (made below) must not take SIGINT or SIGTERM (stateroom::serve
  // waits for them on this thread).
  server::StopSignals signals;
  check_message_fits(a.options, a.limits);
  a.limits.max_instances = static_cast<std::uint32_t>(a.options.max_rooms);  // one instance per room
  auto engine = make_engine(a.limits);  // the limits are checked before the module is looked for
  a.options.memory_budget = engine->memory_budget();  // snapshots held in memory count with the rooms
  fs::path module = a.module;
  std::error_code ec;
  if (fs::is_directory(module, ec)) {
    const fs::path dir = module;
    module = dir / "server.wasm";
    if (!fs::exists(module, ec))
      throw UserError(dir.string() + " holds no server.wasm (a directory to serve holds server.wasm and, optionally, "
                                     "static/; `stateroom build` writes one)");
    if (a.options.static_dir.empty() && fs::is_directory(dir / "static", ec))
      a.options.static_dir = (dir / "static").string();
  } else if (!fs::exists(module, ec)) {
    throw UserError(module.string() + ": no such file");
  }
  std::shared_ptr<wasm::Module> factory;
  try {
    factory = wasm::Module::load(engine, module, a.load);
  } catch (const wasm::LoadError& e) {
    throw UserError(e.what());
  }
  if (!a.options.state_dir.empty() && !factory->persistence_problem().empty())
    spdlog::warn("{}: its rooms will not be kept in {}: {}", module.string(), a.options.state_dir,
                 factory->persistence_problem());
  return stateroom::serve(std::move(factory), std::move(a.options), [&](Server&) { log_limits(*engine); });
}

// --- dev ----------------------------------------------------------------------------------------------

/// SIGINT / SIGTERM, taken by a thread of their own so the main loop can wait with a timeout.
std::string seconds(std::chrono::milliseconds d) {
  return fmt::format("{:.1f} s", static_cast<double>(d.count()) / 1000);
}

/// A build of the project's service, loaded.
struct LoadedBuild {
  std::shared_ptr<wasm::Module> module;  ///< null (after reporting why) when the build or the load failed
  fs::path file;                         ///< the built .wasm
};

LoadedBuild build_and_load(const cli::Project& project, const cli::GuestSdk& sdk,
                           const std::shared_ptr<wasm::Engine>& engine, const wasm::LoadOptions& load) {
  spdlog::info("building {} ...", project.target_name());
  auto built = cli::build_project(project, sdk);
  if (!built.ok) {
    std::cerr << built.output;
    if (!built.output.empty() && built.output.back() != '\n') std::cerr << '\n';
    spdlog::error("the build of {} failed after {}", project.target_name(), seconds(built.took));
    return {};
  }
  try {
    auto module = wasm::Module::load(engine, built.module, load);
    std::error_code ec;
    spdlog::info("built {} in {} ({})", built.module.filename().string(), seconds(built.took),
                 stateroom::detail::format_bytes(fs::file_size(built.module, ec)));
    if (!module->persistence_problem().empty())
      spdlog::warn("{}: its rooms cannot keep their state across rebuilds or hibernation: {}",
                   built.module.filename().string(), module->persistence_problem());
    return {std::move(module), built.module};
  } catch (const wasm::LoadError& e) {
    spdlog::error("the build of {} cannot be served: {}", project.target_name(), e.what());
    return {};
  }
}

std::string list_changes(const std::map<fs::path, cli::FileStamp>& before,
                         const std::map<fs::path, cli::FileStamp>& after, const fs::path& base) {
  std::vector<std::string> changed;
  for (const auto& [file, stamp] : after) {
    auto it = before.find(file);
    if (it == before.end() || !(it->second == stamp)) changed.push_back(file.lexically_relative(base).string());
  }
  for (const auto& [file, stamp] : before)
    if (!after.contains(file)) changed.push_back(file.lexically_relative(base).string() + " (removed)");
  std::string out;
  for (std::size_t i = 0; i < changed.size() && i < 5; ++i) out += (i ? ", " : "") + changed[i];
  if (changed.size() > 5) out += fmt::format(" and {} more", changed.size() - 5);
  return out;
}

int dev(const cli::Project& project, Args& a) {
  server::StopSignals stop;
  const auto sdk = cli::GuestSdk::locate();
  if (a.dev_port >= 0) a.options.port = static_cast<std::uint16_t>(a.dev_port);
  if (a.options.static_dir.empty() && project.static_dir) a.options.static_dir = project.static_dir->string();
  check_message_fits(a.options, a.limits);
  a.limits.max_instances = static_cast<std::uint32_t>(a.options.max_rooms);  // one instance per room
  auto engine = make_engine(a.limits);
  a.options.memory_budget = engine->memory_budget();  // snapshots held in memory count with the rooms
  spdlog::info("project {} ({})", project.dir.filename().string(), project.dir.string());
  // Rooms' state outlives rebuilds and hibernation: in memory, unless a state directory keeps it
  // across restarts of `stateroom dev` too.
  if (a.options.state_dir.empty()) {
    a.options.state_store = make_memory_store({.memory = engine->memory_budget()});
    spdlog::info("rooms' state is kept in memory across rebuilds (--state-dir DIR keeps it across restarts too)");
  }

  std::unique_ptr<Server> server;
  auto snapshot = cli::source_snapshot(project);
  auto install = [&](std::shared_ptr<wasm::Module> module) {
    if (server) {
      // A build that cannot even start a room would fail every room it took over: the rooms stay
      // on the last good build, with their state.
      if (auto error = cli::start_trial_room(*module)) {
        spdlog::error("the new build of {} cannot start a room: {}", project.target_name(), *error);
        spdlog::warn("still serving the last good build");
        return true;
      }
      server->replace_factory(std::move(module), Server::RunningRooms::carry_over);
      return true;
    }
    server = std::make_unique<Server>(std::move(module), a.options);
    if (auto status = server->start(); !status) {
      spdlog::error("{}", status.message());
      server.reset();
      return false;
    }
    if (!a.options.static_dir.empty()) spdlog::info("static files from {} at /", a.options.static_dir);
    log_limits(*engine);
    return true;
  };
  if (auto build = build_and_load(project, sdk, engine, a.load); build.module) {
    if (!install(std::move(build.module))) return 1;
  } else {
    spdlog::warn("waiting for a change to build again (Ctrl-C stops)");
  }
  spdlog::info("watching {} for changes", project.dir.string());

  while (!stop.wait_for(std::chrono::milliseconds(300))) {
    auto now = cli::source_snapshot(project);
    if (now == snapshot) continue;
    // Let a burst of saves settle before building.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    now = cli::source_snapshot(project);
    spdlog::info("changed: {}", list_changes(snapshot, now, project.dir));
    snapshot = std::move(now);
    if (auto build = build_and_load(project, sdk, engine, a.load); build.module) {
      if (!install(std::move(build.module))) return 1;
    } else if (server) {
      spdlog::warn("still serving the last good build");
    }
  }
  if (server) server->stop();
  return 0;
}

// --- build --------------------------------------------------------------------------------------------

int build(const cli::Project& project, const Args& a) {
  const auto sdk = cli::GuestSdk::locate();
  auto engine = make_engine(wasm::Limits{.max_instances = 1});
  const auto build = build_and_load(project, sdk, engine, {});  // loaded: only a servable module is written
  if (!build.module) return 1;
  const fs::path out = fs::absolute(a.out);
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw UserError("cannot create " + out.string() + ": " + ec.message());
  fs::copy_file(build.file, out / "server.wasm", fs::copy_options::overwrite_existing, ec);
  if (ec) throw UserError("cannot write " + (out / "server.wasm").string() + ": " + ec.message());
  fs::remove_all(out / "static", ec);
  std::size_t files = 0;
  if (project.static_dir) {
    fs::copy(*project.static_dir, out / "static", fs::copy_options::recursive, ec);
    if (ec) throw UserError("cannot copy the static files to " + (out / "static").string() + ": " + ec.message());
    for (auto it = fs::recursive_directory_iterator(out / "static", ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      files += it->is_regular_file(ec) ? 1 : 0;
  }
  spdlog::info("wrote {} ({}){}; serve it with: stateroom serve {}", (out / "server.wasm").string(),
               stateroom::detail::format_bytes(fs::file_size(out / "server.wasm", ec)),
               project.static_dir ? fmt::format(" and {} ({} file(s))", (out / "static").string(), files) : "",
               a.out);
  return 0;
}

// --- new ----------------------------------------------------------------------------------------------

int create(const Args& a) {
  static const std::regex valid("[A-Za-z0-9][A-Za-z0-9_-]*");
  if (!std::regex_match(a.name, valid))
    throw UserError("'" + a.name + "' is not a project name: use letters, digits, - and _ (starting with a letter or "
                                   "digit)");
  const fs::path dir = fs::absolute(a.name);
  std::error_code ec;
  if (fs::exists(dir, ec)) throw UserError(dir.string() + " already exists: choose another name");
  const std::string target = std::regex_replace(a.name, std::regex("-"), "_");
  auto instantiate = [&](std::string_view text) {
    std::string out(text);
    for (const auto& [key, value] : {std::pair<std::string, std::string>{"{{name}}", a.name}, {"{{target}}", target}})
      for (auto at = out.find(key); at != std::string::npos; at = out.find(key, at + value.size()))
        out.replace(at, key.size(), value);
    return out;
  };
  const std::pair<const char*, fs::path> files[] = {
      {"stateroom.toml", "stateroom.toml"}, {"CMakeLists.txt", "CMakeLists.txt"}, {"service.cpp", "service.cpp"},
      {"index.html", "static/index.html"},  {"README.md", "README.md"},           {"gitignore", ".gitignore"},
  };
  for (const auto& [name, path] : files) {
    fs::create_directories((dir / path).parent_path(), ec);
    std::ofstream out(dir / path, std::ios::binary);
    out << instantiate(cli::templates().at(name));
    if (!out) throw UserError("cannot write " + (dir / path).string());
  }
  std::cout << "created " << a.name << "/: stateroom.toml, CMakeLists.txt, service.cpp (a counter), "
            << "static/index.html, README.md\n"
            << "next: cd " << a.name << " && stateroom dev   (then open http://localhost:8080)\n";
  return 0;
}

/// The arguments after the subcommand `name`, with `first` inserted before them.
std::vector<std::string> with_project_args(int argc, char** argv, const std::string& name,
                                           const std::vector<std::string>& first) {
  std::vector<std::string> args;
  bool inserted = false;
  for (int i = 1; i < argc; ++i) {
    args.emplace_back(argv[i]);
    if (!inserted && args.back() == name) {
      args.insert(args.end(), first.begin(), first.end());
      inserted = true;
    }
  }
  return args;
}

int run(int argc, char** argv) {
  Args args;
  auto app = make_app(args);
  try {
    app->app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app->app.exit(e);
  }
  if (*app->load) return load::run_load_command(args.load_test, std::cout, std::cerr);
  if (*app->serve || *app->create) {
    if (!cli::apply_log_level(args.log_level)) return 2;
    return *app->serve ? serve(args) : create(args);
  }
  const auto project = cli::Project::find(fs::current_path());
  if (*app->build) return build(project, args);

  // dev: parse again with the project's [server] settings ahead of the user's flags.
  Args merged;
  auto merged_app = make_app(merged);
  // dev's own defaults come first, the project's settings next, the user's flags last.
  std::vector<std::string> first{"--on-module-change", "layout"};
  first.insert(first.end(), project.server_args.begin(), project.server_args.end());
  std::vector<std::string> again = with_project_args(argc, argv, "dev", first);
  std::reverse(again.begin(), again.end());  // CLI11 takes a reversed vector
  try {
    merged_app->app.parse(again);
  } catch (const CLI::ParseError& e) {
    return merged_app->app.exit(e);
  }
  if (!cli::apply_log_level(merged.log_level)) return 2;
  return dev(project, merged);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UserError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
