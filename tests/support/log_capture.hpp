// What the integration tests share beyond the client: the log captured while a test runs, a
// client connected to a TestServer, and an echo checked.
#pragma once

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "probe_service.hpp"
#include "ws_client.hpp"

namespace stateroom::test {

/// Captures the log while a test runs.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000)) {
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  bool contains(const std::string& text) const {
    for (const auto& line : sink_->last_formatted())
      if (line.find(text) != std::string::npos) return true;
    return false;
  }
  std::vector<std::string> lines() const { return sink_->last_formatted(); }
  std::size_t count(const std::string& text) const {
    std::size_t n = 0;
    for (const auto& line : sink_->last_formatted())
      if (line.find(text) != std::string::npos) ++n;
    return n;
  }
  bool wait_for(const std::string& text, std::chrono::milliseconds timeout = std::chrono::seconds(5)) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (contains(text)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

inline std::unique_ptr<WsClient> connect(const TestServer& server, const std::string& target) {
  std::string error;
  auto c = WsClient::connect(server.port(), target, std::chrono::seconds(5), 0, "127.0.0.1", &error);
  EXPECT_TRUE(c) << error;
  return c;
}

/// Sends `text` and expects it back (from a service that echoes).
inline void expect_echo(WsClient& c, const std::string& text) {
  c.send_text(text);
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->is_text(text)) << r->data;
}

}  // namespace stateroom::test
