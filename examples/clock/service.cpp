// clock: ticks every 4 seconds and tells everyone in the room.
#include <stateroom/service.hpp>

#include <string>

using namespace stateroom;

struct Clock : Service {
  static constexpr std::uint32_t period_ms = 4000;
  unsigned ticks = 0;

  void init(Context& ctx) override { ctx.set_timer(period_ms); }

  void timer(Context& ctx) override {
    ctx.send(broadcast(), "Timer @ " + std::to_string(ticks++));
    ctx.set_timer(period_ms);
  }
};

STATEROOM_SERVICE(Clock)
