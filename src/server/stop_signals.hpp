// StopSignals: SIGINT and SIGTERM, taken synchronously, for a process that stops on them.
#pragma once

#include <signal.h>

#include <chrono>

namespace stateroom::server {

/// While it lives, SIGINT and SIGTERM are blocked in the thread that made it and in every thread
/// that thread starts from then on, so no worker (nor a runtime's helper thread) is ever killed by
/// one: make it first, before any thread starts, and wait on the same thread (the kernel hands a
/// signal to the thread waiting for it). Going away, it takes a signal that came late (it would
/// otherwise kill the process then) and gives the thread its signal mask back.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  /// Waits up to `timeout`; true once a signal came (logged).
  bool wait_for(std::chrono::milliseconds timeout);
  /// Waits for a signal (logged).
  void wait();

 private:
  void received(int signal);

  sigset_t signals_;
  sigset_t previous_mask_;
  bool stopped_ = false;
};

}  // namespace stateroom::server
