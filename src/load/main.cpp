// stateroom-load: drives a WebSocket server with a workload and reports what it measured.
#include <CLI/CLI.hpp>
#include <iostream>

#include "load/load_command.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "Drives a WebSocket server with one workload and reports throughput, latency and CPU cost. Workloads: "
      "echo "
      "(binary messages echoed to their sender, as binary-echo does), counter (`increment` answered by one "
      "text "
      "message, as counter does with a room per connection), broadcast (one publisher per room, every member "
      "receives), connect-churn (connect, upgrade, one echo, close, again) and idle (connections held open; "
      "with --server-pid, the server's memory per connection). Progress goes to stderr, the report to "
      "stdout; "
      "the exit status is 1 when the run counted errors.",
      "stateroom-load"};
  stateroom::load::LoadOptions options;
  stateroom::load::add_load_options(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  return stateroom::load::run_load_command(options, std::cout, std::cerr);
}
