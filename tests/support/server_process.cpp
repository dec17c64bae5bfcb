#include "server_process.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>
#include <stdexcept>

#include "process.hpp"  // src/cli: spawning with the output in a pipe

namespace stateroom::test {

ServerProcess::ServerProcess(std::vector<std::string> argv, bool add_listen_flags,
                             std::chrono::milliseconds timeout) {
  if (add_listen_flags) {
    for (const char* flag : {"--port", "0", "--host", "127.0.0.1"}) argv.emplace_back(flag);
  }
  const cli::SpawnedProcess child = cli::spawn_with_output(argv);
  if (child.pid < 0) throw std::runtime_error(child.error);
  pid_ = child.pid;
  out_fd_ = child.output_fd;
  reader_ = std::thread([this] {
    char buf[4096];
    for (;;) {
      const auto n = ::read(out_fd_, buf, sizeof buf);
      if (n <= 0) break;
      std::lock_guard lock(mutex_);
      output_.append(buf, static_cast<std::size_t>(n));
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  static const std::regex listening(R"(listening on \S+:(\d+))");
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(mutex_);
      std::smatch m;
      if (std::regex_search(output_, m, listening)) {
        port_ = static_cast<std::uint16_t>(std::stoi(m[1]));
        return;
      }
    }
    if (wait(std::chrono::milliseconds(0))) return;  // exited early
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

ServerProcess::~ServerProcess() {
  if (!exit_code_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  if (reader_.joinable()) reader_.join();
  if (out_fd_ >= 0) ::close(out_fd_);
}

std::string ServerProcess::output() const {
  std::lock_guard lock(mutex_);
  return output_;
}

std::optional<int> ServerProcess::wait(std::chrono::milliseconds timeout) {
  if (exit_code_) return exit_code_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  do {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      // The child is gone, so its end of the pipe is closed: take the rest of what it printed.
      if (reader_.joinable()) reader_.join();
      return exit_code_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  } while (std::chrono::steady_clock::now() < deadline);
  return std::nullopt;
}

std::optional<int> ServerProcess::stop(int signal, std::chrono::milliseconds timeout) {
  if (!exit_code_) ::kill(pid_, signal);
  return wait(timeout);
}

bool ServerProcess::wait_for_output(const std::string& text, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (output().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace stateroom::test
