// Runs a server binary as a child process, as a user would, and finds the port it listens on.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace stateroom::test {

class ServerProcess {
 public:
  /// Starts `argv` (with `--port 0 --host 127.0.0.1` appended when `add_listen_flags`) and waits
  /// up to `timeout` for its "listening on HOST:PORT" log line.
  explicit ServerProcess(std::vector<std::string> argv, bool add_listen_flags = true,
                         std::chrono::milliseconds timeout = std::chrono::seconds(20));
  ~ServerProcess();  ///< SIGKILLs the child if it still runs

  bool listening() const { return port_ != 0; }
  std::uint16_t port() const { return port_; }
  /// Everything the child printed so far (stdout and stderr).
  std::string output() const;
  /// Sends `signal` and waits for the exit; the exit code, or nothing after `timeout`.
  std::optional<int> stop(int signal, std::chrono::milliseconds timeout = std::chrono::seconds(15));
  /// Waits for the child to exit by itself; its exit code, or nothing after `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  /// Waits until the output contains `text`.
  bool wait_for_output(const std::string& text, std::chrono::milliseconds timeout) const;

 private:
  int pid_ = -1;
  int out_fd_ = -1;
  std::uint16_t port_ = 0;
  std::optional<int> exit_code_;
  mutable std::mutex mutex_;
  std::string output_;
  std::thread reader_;
};

}  // namespace stateroom::test
