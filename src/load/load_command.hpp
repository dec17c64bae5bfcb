// The load generator's command line, shared by `stateroom-load` and a `stateroom load` subcommand.
#pragma once

#include <CLI/App.hpp>
#include <ostream>

#include "load.hpp"

namespace stateroom::load {

/// Registers the load options (--target, --workload, --connections, ...) on `app`; parsed values
/// land in `options`.
void add_load_options(CLI::App& app, LoadOptions& options);

/// Runs `options` as a command: progress lines and any error on `progress`, the report on `out`.
/// Returns the exit status: 0, 1 when the run counted errors (its report is still printed), 2
/// when it could not run (after one line starting `error:`).
int run_load_command(const LoadOptions& options, std::ostream& out, std::ostream& progress);

}  // namespace stateroom::load
