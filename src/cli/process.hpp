// Running a command and collecting what it prints.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace stateroom::cli {

struct CommandResult {
  int exit_code = -1;  ///< -1 when it could not start or was killed by a signal
  std::string output;  ///< stdout and stderr, interleaved as printed
};

/// A child started by spawn_with_output.
struct SpawnedProcess {
  int pid = -1;        ///< -1 when it could not start (`error` says why)
  int output_fd = -1;  ///< the read end of its stdout and stderr (close it when done)
  std::string error;
};

/// Starts `argv` (looked up in PATH) in `cwd` (empty: this directory) with stdin from /dev/null and
/// stdout and stderr into one pipe, whose read end it returns.
SpawnedProcess spawn_with_output(const std::vector<std::string>& argv, const std::filesystem::path& cwd = {});

/// Runs `argv` in `cwd` (stdin from /dev/null) and waits for it.
CommandResult run_command(const std::vector<std::string>& argv, const std::filesystem::path& cwd);

/// `argv` as a shell would show it.
std::string describe_command(const std::vector<std::string>& argv);

}  // namespace stateroom::cli
