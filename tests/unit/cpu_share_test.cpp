// The CPU share of a WebAssembly room (src/wasm/cpu_share.hpp): guest time over a sliding window.
#include "wasm/cpu_share.hpp"

#include <gtest/gtest.h>

namespace stateroom::wasm::detail {
namespace {

using namespace std::chrono_literals;
using Clock = CpuShare::Clock;

TEST(CpuShare, ARoomWithinItsShareIsNeverOver) {
  CpuShare share(1000ms, 50);
  const auto t0 = Clock::now();
  for (int i = 0; i < 100; ++i) share.charge(t0 + i * 10ms, 5ms);  // 50 % exactly
  EXPECT_FALSE(share.over());
  EXPECT_EQ(share.used(t0 + 999ms), 500ms);
}

TEST(CpuShare, ARoomPastItsShareWaitsUntilTheOldestTimeLeavesTheWindow) {
  CpuShare share(1000ms, 50);
  const auto t0 = Clock::now();
  // 0.3 s in the first tenth, 0.3 s in the third: 0.6 s of a 0.5 s share.
  share.charge(t0, 300ms);
  EXPECT_FALSE(share.over());
  share.charge(t0 + 250ms, 300ms);
  EXPECT_TRUE(share.over());
  // Within the share again once the first tenth leaves the window, at t0 + 1 s.
  EXPECT_EQ(share.wait(t0 + 400ms), 600ms);
  EXPECT_TRUE(share.over());
  EXPECT_EQ(share.wait(t0 + 1000ms), Clock::duration{});
  EXPECT_FALSE(share.over());
  EXPECT_EQ(share.used(t0 + 1000ms), 300ms);
}

TEST(CpuShare, AWindowWithoutUseForgetsEverything) {
  CpuShare share(1000ms, 10);
  const auto t0 = Clock::now();
  share.charge(t0, 800ms);
  EXPECT_TRUE(share.over());
  EXPECT_EQ(share.wait(t0 + 5s), Clock::duration{});
  EXPECT_EQ(share.used(t0 + 5s), Clock::duration{});
  share.charge(t0 + 5s, 50ms);
  EXPECT_FALSE(share.over());
}

TEST(CpuShare, AFullShareNeverHoldsBack) {
  CpuShare share(1000ms, 100);
  EXPECT_FALSE(share.enabled());
  const auto t0 = Clock::now();
  for (int i = 0; i < 10; ++i) share.charge(t0 + i * 100ms, 100ms);  // a whole core
  EXPECT_FALSE(share.over());
  EXPECT_EQ(share.wait(t0 + 1s), Clock::duration{});
}

TEST(CpuShare, TheWaitIsAtMostAWindow) {
  CpuShare share(1000ms, 1);
  const auto t0 = Clock::now();
  share.charge(t0 + 50ms, 5s);  // more than the window can hold: all of it goes at once
  EXPECT_TRUE(share.over());
  const auto wait = share.wait(t0 + 50ms);
  EXPECT_GT(wait, 900ms);
  EXPECT_LE(wait, 1000ms);
}

}  // namespace
}  // namespace stateroom::wasm::detail
