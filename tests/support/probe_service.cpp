#include "probe_service.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>

namespace stateroom::test {

void EventLog::add(std::string event) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }
  cv_.notify_all();
}

std::vector<std::string> EventLog::events() const {
  std::lock_guard lock(mutex_);
  return events_;
}

std::size_t EventLog::count(const std::string& event) const {
  std::lock_guard lock(mutex_);
  return static_cast<std::size_t>(std::count(events_.begin(), events_.end(), event));
}

bool EventLog::wait_for(const std::string& event, std::size_t times,
                        std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] {
    return static_cast<std::size_t>(std::count(events_.begin(), events_.end(), event)) >= times;
  });
}

namespace {

class Probe final : public Service {
 public:
  Probe(std::string room, std::shared_ptr<EventLog> log) : room_(std::move(room)), log_(std::move(log)) {}
  ~Probe() override { log_->add("destroy " + room_); }

  void init(Context&) override { log_->add("init " + room_); }

  void connect(ClientId client, Context& ctx) override {
    log_->add("connect " + room_ + " " + std::to_string(client.value));
    ctx.send(client, "you are " + std::to_string(client.value));
  }

  void disconnect(ClientId client, Context& ctx) override {
    log_->add("disconnect " + room_ + " " + std::to_string(client.value));
    ctx.send(broadcast(), "left " + std::to_string(client.value));
  }

  void timer(Context& ctx) override {
    log_->add("timer " + room_);
    ctx.send(broadcast(), "timer");
  }

  void message(ClientId sender, const MessagePayload& msg, Context& ctx) override {
    log_->add("message " + room_ + " " + std::to_string(sender.value));
    if (msg.is_binary()) {
      ctx.send(sender, msg);
      return;
    }
    const std::string text(*msg.text());
    auto arg = [&](std::string_view prefix) { return text.substr(prefix.size()); };
    if (text.starts_with("echo:")) {
      ctx.send(sender, arg("echo:"));
    } else if (text.starts_with("bcast:")) {
      ctx.send(broadcast(), arg("bcast:"));
    } else if (text.starts_with("except:")) {
      ctx.send(everyone_except(sender), arg("except:"));
    } else if (text.starts_with("to:")) {
      const auto rest = arg("to:");
      const auto colon = rest.find(':');
      ctx.send(client(ClientId(static_cast<std::uint32_t>(std::stoul(rest.substr(0, colon))))),
               rest.substr(colon + 1));
    } else if (text.starts_with("timer:")) {
      ctx.set_timer(static_cast<std::uint32_t>(std::stoul(arg("timer:"))));
    } else if (text.starts_with("flood:")) {
      const auto rest = arg("flood:");
      const auto colon = rest.find(':');
      const auto count = std::stoul(rest.substr(0, colon));
      const std::string payload(std::stoul(rest.substr(colon + 1)), 'x');
      for (unsigned long i = 0; i < count; ++i) ctx.send(broadcast(), payload);
    } else if (text == "fail") {
      ctx.fail("the probe was asked to fail");
    } else if (text == "throw") {
      throw std::runtime_error("the probe was asked to throw");
    }
  }

 private:
  std::string room_;
  std::shared_ptr<EventLog> log_;
};

class ProbeFactory final : public ServiceFactory {
 public:
  explicit ProbeFactory(std::shared_ptr<EventLog> log) : log_(std::move(log)) {}
  std::unique_ptr<Service> create(std::string_view room_id, Context&) override {
    return std::make_unique<Probe>(std::string(room_id), log_);
  }

 private:
  std::shared_ptr<EventLog> log_;
};

}  // namespace

std::shared_ptr<ServiceFactory> probe_factory(std::shared_ptr<EventLog> log) {
  return std::make_shared<ProbeFactory>(std::move(log));
}

TestServer::TestServer(std::shared_ptr<ServiceFactory> factory, ServerOptions options) {
  options.host = "127.0.0.1";
  options.port = 0;
  if (options.threads == 0) options.threads = 2;
  server_ = std::make_unique<Server>(std::move(factory), std::move(options));
  auto status = server_->start();
  if (!status) throw std::runtime_error("test server failed to start: " + status.message());
}

TestServer::~TestServer() {
  server_->stop();
}

}  // namespace stateroom::test
