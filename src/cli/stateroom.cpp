// The `stateroom` command.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "options.hpp"
#include "stateroom/server.hpp"
#include "stateroom/wasm.hpp"

namespace fs = std::filesystem;

namespace {

/// `stateroom serve MODULE|DIR`: a directory holds server.wasm and, optionally, static/.
int serve(const std::string& target, stateroom::ServerOptions options, const stateroom::wasm::Limits& limits,
          const stateroom::wasm::LoadOptions& load) {
  fs::path module = target;
  std::error_code ec;
  if (fs::is_directory(module, ec)) {
    const fs::path dir = module;
    module = dir / "server.wasm";
    if (!fs::exists(module, ec)) {
      std::cerr << "error: " << dir.string() << " holds no server.wasm (a directory to serve holds server.wasm "
                << "and, optionally, static/)\n";
      return 1;
    }
    if (options.static_dir.empty() && fs::is_directory(dir / "static", ec)) options.static_dir = (dir / "static").string();
  } else if (!fs::exists(module, ec)) {
    std::cerr << "error: " << module.string() << ": no such file\n";
    return 1;
  }
  std::shared_ptr<stateroom::wasm::Module> factory;
  try {
    auto engine = std::make_shared<stateroom::wasm::Engine>(limits);
    factory = stateroom::wasm::Module::load(engine, module, load);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return stateroom::serve(std::move(factory), std::move(options));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Stateroom: WebSocket services in rooms, each room a sandboxed WebAssembly instance.", "stateroom"};
  app.require_subcommand(1);

  CLI::App* serve_cmd = app.add_subcommand(
      "serve",
      "Serves a WebAssembly service module (.wasm, or .wat text) over WebSocket: connect to /ws/<room> (or /ws for "
      "the default room); GET /status answers ok. Given a directory, serves its server.wasm and its static/ at /.");
  std::string target;
  serve_cmd->add_option("module", target, "The module file (.wasm or .wat), or a directory holding server.wasm")
      ->required();
  stateroom::ServerOptions options;
  std::string log_level;
  stateroom::cli::add_server_options(*serve_cmd, options, log_level);
  stateroom::wasm::Limits limits;
  stateroom::wasm::LoadOptions load;
  stateroom::cli::add_wasm_options(*serve_cmd, limits, load);

  CLI11_PARSE(app, argc, argv);
  if (!stateroom::cli::apply_log_level(log_level)) return 2;
  if (*serve_cmd) return serve(target, std::move(options), limits, load);
  return 2;
}
