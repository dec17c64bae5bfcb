// A service for integration tests: records every event and obeys commands sent as text.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "stateroom/server.hpp"

namespace stateroom::test {

/// Events as `<event> <room> [client]`: "init r", "connect r 1", "message r 1", "disconnect r 1",
/// "timer r", "destroy r". Thread-safe; shared by every room the factory builds.
class EventLog {
 public:
  void add(std::string event);
  std::vector<std::string> events() const;
  std::size_t count(const std::string& event) const;
  /// Waits until `event` has been recorded at least `times` times.
  bool wait_for(const std::string& event, std::size_t times = 1,
                std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  std::vector<std::string> events_;
};

/// Commands (text messages):
///   echo:X         X back to the sender          bcast:X      X to everyone
///   except:X       X to everyone but the sender  to:N:X       X to client N
///   timer:MS       set the timer (it broadcasts "timer")
///   flood:N:SIZE   broadcast N messages of SIZE bytes ('x')
///   fail           Context::fail             throw        throw std::runtime_error
/// Binary messages come back to the sender as binary. On connect the client receives
/// "you are N"; on disconnect everyone else receives "left N".
std::shared_ptr<ServiceFactory> probe_factory(std::shared_ptr<EventLog> log);

/// A server on 127.0.0.1 with a free port, stopped on destruction.
class TestServer {
 public:
  explicit TestServer(std::shared_ptr<ServiceFactory> factory, ServerOptions options = {});
  ~TestServer();
  std::uint16_t port() const { return server_->port(); }
  Server& server() { return *server_; }

 private:
  std::unique_ptr<Server> server_;
};

}  // namespace stateroom::test
