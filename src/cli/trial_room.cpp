#include "trial_room.hpp"

#include <exception>
#include <memory>
#include <thread>

#include "stateroom/hosted_service.hpp"

namespace stateroom::cli {

namespace {

/// The trial room's context: it keeps the first failure and nothing else.
class TrialContext final : public Context {
 public:
  void send(MessageRecipient, const MessagePayload&) override {}
  void set_timer(std::uint32_t) override {}
  void fail(std::string_view reason) override {
    if (!failure) failure = std::string(reason);
  }
  /// Wanting what all rooms share (memory, instance slots) says nothing of the build.
  void unavailable(std::string_view) override { stopped = true; }
  std::optional<std::string> failure;
  bool stopped = false;
};

}  // namespace

std::optional<std::string> start_trial_room(ServiceFactory& factory, std::chrono::milliseconds limit) {
  TrialContext ctx;
  try {
    auto service = factory.create("stateroom-trial", ctx);
    if (ctx.failure || ctx.stopped) return ctx.failure;
    if (!service) return std::string("the service factory built nothing");
    service->init(ctx);
    if (auto* hosted = dynamic_cast<HostedService*>(service.get())) {
      const auto deadline = std::chrono::steady_clock::now() + limit;
      while (!ctx.failure && !ctx.stopped && hosted->pending()) {
        if (std::chrono::steady_clock::now() > deadline)
          return "its init did not finish within " + std::to_string(limit.count()) + " ms";
        std::this_thread::sleep_for(hosted->resume_delay());
        hosted->resume(ctx);
      }
    }
  } catch (const std::exception& e) {
    return std::string("it threw: ") + e.what();
  }
  return ctx.failure;
}

}  // namespace stateroom::cli
