// main() for a native server of one service: link `stateroom::main` and mark the service with
// STATEROOM_SERVICE(T).
#include <CLI/CLI.hpp>
#include <filesystem>

#include "../cli/options.hpp"
#include "stateroom/server.hpp"

int main(int argc, char** argv) {
  const std::string name = std::filesystem::path(argc > 0 ? argv[0] : "server").filename().string();
  CLI::App app{"Serves the " + name +
                   " Stateroom service over WebSocket: connect to /ws/<room> (or /ws for the "
                   "default room); GET /status answers ok.",
               name};
  stateroom::ServerOptions options;
  std::string log_level;
  stateroom::cli::add_server_options(app, options, log_level);
  CLI11_PARSE(app, argc, argv);
  if (!stateroom::cli::apply_log_level(log_level)) return 2;
  return stateroom::serve(stateroom::main_service_factory(), std::move(options));
}
