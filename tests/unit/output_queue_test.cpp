// The output queue of a connection (src/server/output_queue.hpp).
#include "server/output_queue.hpp"

#include <gtest/gtest.h>

#include <array>
#include <memory>
#include <string>

using stateroom::server::OutputQueue;

namespace {

std::span<const std::uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

void frame(OutputQueue& q, std::string_view s) {
  q.append(bytes(s));
  q.end_frame();
}

/// Everything the queue would write, written `chunk` bytes at a time.
std::string drain(OutputQueue& q, std::size_t chunk = 1 << 20) {
  std::string out;
  while (!q.empty()) {
    std::array<std::span<const std::uint8_t>, 4> pieces;  // few, to exercise partial gathers
    const std::size_t n = q.gather(pieces);
    std::size_t take = 0;
    for (std::size_t i = 0; i < n && take < chunk; ++i) {
      const std::size_t part = std::min(pieces[i].size(), chunk - take);
      out.append(reinterpret_cast<const char*>(pieces[i].data()), part);
      take += part;
    }
    q.consume(take);
  }
  return out;
}

}  // namespace

TEST(OutputQueue, KeepsCopiedAndSharedPiecesInOrder) {
  OutputQueue q;
  auto big = std::make_shared<const std::string>(100000, 'B');
  q.append(bytes("h1"));
  q.append_shared(big);
  q.end_frame();
  frame(q, "small");
  q.append(bytes("h3"));
  q.append_shared(big);  // the same payload again, for another frame
  q.end_frame();
  EXPECT_EQ(q.size(), 2 + 100000 + 5 + 2 + 100000u);
  EXPECT_EQ(q.frames(), 3u);
  std::array<std::span<const std::uint8_t>, 8> pieces;
  EXPECT_EQ(q.gather(pieces), 4u);  // h1 | big | "small" "h3" together | big
  EXPECT_EQ(pieces[1].data(), reinterpret_cast<const std::uint8_t*>(big->data())) << "shared, not copied";
  EXPECT_EQ(drain(q, 777), "h1" + *big + "small" + "h3" + *big);
  EXPECT_EQ(q.frames(), 0u);
  EXPECT_TRUE(q.empty());
}

TEST(OutputQueue, CountsFramesAsTheyLeave) {
  OutputQueue q;
  frame(q, "aaaa");
  frame(q, "bbbb");
  q.consume(3);
  EXPECT_EQ(q.frames(), 2u);
  q.consume(1);
  EXPECT_EQ(q.frames(), 1u);
  EXPECT_EQ(q.size(), 4u);
  EXPECT_EQ(drain(q), "bbbb");
}

TEST(OutputQueue, DropsOnlyTheFramesNotYetBegun) {
  OutputQueue q;
  frame(q, "first");
  frame(q, "second");
  frame(q, "third");
  q.consume(7);  // "first" and "se" are out
  q.drop_unstarted();
  EXPECT_EQ(q.frames(), 1u);
  frame(q, "close");
  EXPECT_EQ(drain(q), "cond" "close");

  // At a frame boundary nothing is kept.
  frame(q, "one");
  frame(q, "two");
  q.consume(3);
  q.drop_unstarted();
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.frames(), 0u);

  // A partly written frame with a shared payload stays whole, the rest goes.
  auto big = std::make_shared<const std::string>(50000, 'x');
  q.append(bytes("H"));
  q.append_shared(big);
  q.end_frame();
  q.append(bytes("G"));
  q.append_shared(big);
  q.end_frame();
  q.consume(10);
  q.drop_unstarted();
  EXPECT_EQ(q.size(), 50001u - 10u);
  EXPECT_EQ(drain(q), std::string(50001 - 10, 'x'));
}

TEST(OutputQueue, StaysBoundedWhileItNeverEmpties) {
  // A reader that keeps a little behind: written bytes are reclaimed even though the queue never
  // runs empty.
  OutputQueue q;
  const std::string piece(1000, 'p');
  frame(q, piece);
  for (int i = 0; i < 10000; ++i) {
    frame(q, piece);
    std::array<std::span<const std::uint8_t>, 1> one;
    q.gather(one);
    q.consume(one[0].size() < 1000 ? one[0].size() : 1000);
    ASSERT_LE(q.size(), 2000u);
    ASSERT_LE(q.memory(), 512u * 1024) << "after " << i << " frames";
  }
  EXPECT_EQ(drain(q).size(), 1000u);
  q.release_memory();
  EXPECT_TRUE(q.empty());
  EXPECT_LT(q.memory(), 64u);
}

TEST(OutputQueue, KeepsTheFramesAskedForWhenDropping) {
  // Nothing written yet: the HTTP response (up to the offset kept) stays, the frames after it go.
  OutputQueue q;
  frame(q, "HTTP/1.1 101\r\n\r\n");
  const auto response_end = q.appended();
  auto big = std::make_shared<const std::string>(40000, 'w');
  q.append(bytes("W"));
  q.append_shared(big);
  q.end_frame();
  frame(q, "more");
  q.drop_unstarted(response_end);
  EXPECT_EQ(q.frames(), 1u);
  frame(q, "close");
  EXPECT_EQ(drain(q, 5), "HTTP/1.1 101\r\n\r\n" "close");

  // Once the response has left, the offset keeps nothing more.
  frame(q, "a");
  frame(q, "b");
  q.drop_unstarted(response_end);
  EXPECT_TRUE(q.empty());
}

// A message sent to recipients that negotiated different windows is compressed once for each
// window, whatever order they come in (alternating windows must not compress it for each of them).
TEST(OutgoingMessage, IsCompressedOnceForEachWindowWhateverTheOrder) {
  stateroom::protocol::MessageDeflaters deflaters;
  const stateroom::MessagePayload payload(std::string(4000, 'a') + std::string(4000, 'b'));
  const stateroom::server::OutgoingMessage message(payload);
  // Held here: a frame compressed again could not take their place in memory.
  const auto nine = message.deflated(deflaters, 9, 0)->payload;
  const auto ten = message.deflated(deflaters, 10, 0)->payload;
  ASSERT_TRUE(nine && ten);
  EXPECT_NE(nine, ten);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(message.deflated(deflaters, 9, 0)->payload, nine) << "compressed again for window 9";
    EXPECT_EQ(message.deflated(deflaters, 10, 0)->payload, ten) << "compressed again for window 10";
  }
  EXPECT_EQ(message.deflated(deflaters, 9, 0)->window_bits, 9);
  EXPECT_EQ(message.deflated(deflaters, 10, 0)->window_bits, 10);
}
