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

/// Runs `argv` in `cwd` (stdin from /dev/null) and waits for it.
CommandResult run_command(const std::vector<std::string>& argv, const std::filesystem::path& cwd);

/// `argv` as a shell would show it.
std::string describe_command(const std::vector<std::string>& argv);

}  // namespace stateroom::cli
