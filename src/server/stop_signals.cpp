#include "stop_signals.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <cerrno>

namespace stateroom::server {

StopSignals::StopSignals() {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals_, &previous_mask_);  // threads started from here inherit it
}

StopSignals::~StopSignals() {
  const timespec now{0, 0};
  while (sigtimedwait(&signals_, nullptr, &now) > 0) {
  }
  pthread_sigmask(SIG_SETMASK, &previous_mask_, nullptr);
}

void StopSignals::received(int signal) {
  stopped_ = true;
  spdlog::info("received {}", signal == SIGINT ? "SIGINT" : "SIGTERM");
}

bool StopSignals::wait_for(std::chrono::milliseconds timeout) {
  if (stopped_) return true;
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(timeout);
  const timespec wait{static_cast<time_t>(s.count()),
                      static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout - s).count())};
  const int signal = sigtimedwait(&signals_, nullptr, &wait);
  if (signal > 0) received(signal);
  return stopped_;
}

void StopSignals::wait() {
  while (!stopped_) {
    int signal = 0;
    if (sigwait(&signals_, &signal) == 0) received(signal);
  }
}

}  // namespace stateroom::server
