// The WebSocket frame parser (src/protocol/parser.hpp): every rule of RFC 6455 it enforces, and
// input split anywhere.
#include "protocol/parser.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

using namespace stateroom::protocol;
using Kind = Event::Kind;

namespace {

constexpr std::uint8_t test_mask[4] = {0x37, 0xFA, 0x21, 0x3D};

/// One client frame, masked unless `masked` is false.
std::vector<std::uint8_t> frame(Opcode op, std::string_view payload, bool fin = true, bool masked = true,
                                bool rsv1 = false) {
  std::vector<std::uint8_t> out(max_header_size + payload.size());
  const std::size_t n = write_header(out.data(), {.opcode = op,
                                                  .payload_size = payload.size(),
                                                  .fin = fin,
                                                  .rsv1 = rsv1,
                                                  .mask = masked ? test_mask : nullptr});
  std::copy(payload.begin(), payload.end(), out.begin() + static_cast<std::ptrdiff_t>(n));
  out.resize(n + payload.size());
  if (masked) apply_mask(std::span(out).subspan(n), test_mask);
  return out;
}

/// A header with raw first bytes (for malformed frames), masked, followed by `payload`.
std::vector<std::uint8_t> raw(std::vector<std::uint8_t> head, std::string_view payload = {}) {
  head.insert(head.end(), test_mask, test_mask + 4);
  const std::size_t at = head.size();
  head.insert(head.end(), payload.begin(), payload.end());
  apply_mask(std::span(head).subspan(at), test_mask);
  return head;
}

std::vector<std::uint8_t> concat(std::initializer_list<std::vector<std::uint8_t>> parts) {
  std::vector<std::uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

/// What a test sees of an event, with the payload copied out.
struct Seen {
  Kind kind;
  Opcode opcode = Opcode::text;
  std::string payload;
  std::uint16_t code = 0;
  bool compressed = false;
  friend bool operator==(const Seen&, const Seen&) = default;
};

std::ostream& operator<<(std::ostream& os, const Seen& s) {
  return os << "{kind " << static_cast<int>(s.kind) << ", op " << static_cast<int>(s.opcode) << ", '" << s.payload
            << "', code " << s.code << "}";
}

/// Feeds `bytes` in pieces of the given sizes (the rest in one piece) and collects the events up
/// to and including a close or an error.
std::vector<Seen> parse(std::vector<std::uint8_t> bytes, ParserOptions options = {},
                        std::vector<std::size_t> pieces = {}) {
  Parser parser(options);
  std::vector<Seen> seen;
  std::size_t at = 0;
  std::size_t piece = 0;
  while (true) {
    std::size_t len = piece < pieces.size() ? pieces[piece++] : bytes.size() - at;
    len = std::min(len, bytes.size() - at);
    std::span<std::uint8_t> input(bytes.data() + at, len);
    at += len;
    for (;;) {
      const Event e = parser.next(input);
      if (e.kind == Kind::need_more) break;
      Seen s{e.kind, e.opcode, std::string(reinterpret_cast<const char*>(e.payload.data()), e.payload.size()),
             e.close_code, e.compressed};
      if (e.kind == Kind::close || e.kind == Kind::error) {
        s.payload = std::string(e.reason);
        seen.push_back(s);
        return seen;
      }
      seen.push_back(s);
    }
    if (at == bytes.size()) return seen;
  }
}

/// The first event's kind and code (the reason is left out).
std::pair<Kind, std::uint16_t> first(std::vector<std::uint8_t> bytes, ParserOptions options = {}) {
  auto seen = parse(std::move(bytes), options);
  if (seen.empty()) return {Kind::need_more, 0};
  return {seen.front().kind, seen.front().code};
}

}  // namespace

TEST(Parser, HandsOutAWholeMessageInPlace) {
  auto bytes = frame(Opcode::text, "hello");
  Parser parser;
  std::span<std::uint8_t> input(bytes);
  const Event e = parser.next(input);
  ASSERT_EQ(e.kind, Kind::message);
  EXPECT_EQ(e.opcode, Opcode::text);
  EXPECT_EQ(std::string(e.payload.begin(), e.payload.end()), "hello");
  // No copy: the payload is the input, unmasked in place.
  EXPECT_GE(e.payload.data(), bytes.data());
  EXPECT_LT(e.payload.data(), bytes.data() + bytes.size());
  EXPECT_TRUE(input.empty());
  EXPECT_EQ(parser.next(input).kind, Kind::need_more);
  EXPECT_FALSE(parser.in_progress());
}

TEST(Parser, ReadsEveryMessageOfOneInput) {
  const auto bytes = concat({frame(Opcode::text, "a"), frame(Opcode::binary, std::string(300, 'b')),
                             frame(Opcode::text, ""), frame(Opcode::binary, std::string(70000, 'c'))});
  const auto seen = parse(bytes);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0], (Seen{Kind::message, Opcode::text, "a"}));
  EXPECT_EQ(seen[1], (Seen{Kind::message, Opcode::binary, std::string(300, 'b')}));
  EXPECT_EQ(seen[2], (Seen{Kind::message, Opcode::text, ""}));
  EXPECT_EQ(seen[3], (Seen{Kind::message, Opcode::binary, std::string(70000, 'c')}));
}

TEST(Parser, GivesTheSameEventsWhereverTheInputIsSplit) {
  // 7-bit, 16-bit and 64-bit lengths, a fragmented message with a ping inside, a UTF-8 character
  // split across fragments, and a close.
  const auto bytes = concat({frame(Opcode::text, "h\xC3\xA9llo"), frame(Opcode::binary, std::string(200, 'x')),
                             frame(Opcode::text, "fr\xE2\x82", false), frame(Opcode::ping, "p"),
                             frame(Opcode::continuation, "\xAC", false), frame(Opcode::continuation, "!"),
                             frame(Opcode::binary, std::string(65536, 'y')),
                             frame(Opcode::close, std::string("\x03\xE8" "done", 6))});
  const auto whole = parse(bytes);
  ASSERT_EQ(whole.size(), 6u);
  EXPECT_EQ(whole[2], (Seen{Kind::ping, Opcode::text, "p"}));
  EXPECT_EQ(whole[3], (Seen{Kind::message, Opcode::text, "fr\xE2\x82\xAC!"}));
  EXPECT_EQ(whole[5], (Seen{Kind::close, Opcode::text, "done", 1000}));
  // One byte at a time.
  EXPECT_EQ(parse(bytes, {}, std::vector<std::size_t>(bytes.size(), 1)), whole);
  // Random splits.
  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::size_t> pieces;
    for (std::size_t total = 0; total < bytes.size();) {
      const std::size_t len = std::uniform_int_distribution<std::size_t>(0, round % 2 ? 20 : 3000)(rng);
      pieces.push_back(len);
      total += len;
    }
    ASSERT_EQ(parse(bytes, {}, pieces), whole) << "round " << round;
  }
}

TEST(Parser, DeliversControlFramesInsideAFragmentedMessage) {
  const auto seen = parse(concat({frame(Opcode::binary, "ab", false), frame(Opcode::pong, "q"),
                                  frame(Opcode::continuation, "", false), frame(Opcode::ping, ""),
                                  frame(Opcode::continuation, "cd")}));
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], (Seen{Kind::pong, Opcode::text, "q"}));
  EXPECT_EQ(seen[1], (Seen{Kind::ping, Opcode::text, ""}));
  EXPECT_EQ(seen[2], (Seen{Kind::message, Opcode::binary, "abcd"}));
}

TEST(Parser, RequiresMaskedClientFramesAndUnmaskedServerFrames) {
  EXPECT_EQ(first(frame(Opcode::text, "x", true, false)), std::pair(Kind::error, std::uint16_t{1002}));
  ParserOptions client_side{.expect_masked = false};
  EXPECT_EQ(first(frame(Opcode::text, "x", true, true), client_side), std::pair(Kind::error, std::uint16_t{1002}));
  const auto seen = parse(frame(Opcode::text, "x", true, false), client_side);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (Seen{Kind::message, Opcode::text, "x"}));
}

TEST(Parser, RejectsReservedBitsAndOpcodes) {
  EXPECT_EQ(first(raw({0xA1, 0x80})), std::pair(Kind::error, std::uint16_t{1002}));  // RSV2
  EXPECT_EQ(first(raw({0x91, 0x80})), std::pair(Kind::error, std::uint16_t{1002}));  // RSV3
  EXPECT_EQ(first(frame(Opcode::text, "x", true, true, true)), std::pair(Kind::error, std::uint16_t{1002}));
  for (std::uint8_t op : {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF})
    EXPECT_EQ(first(raw({static_cast<std::uint8_t>(0x80 | op), 0x80})), std::pair(Kind::error, std::uint16_t{1002}))
        << int(op);
}

TEST(Parser, MarksCompressedMessagesWhenAnExtensionAllowsRsv1) {
  ParserOptions deflate{.allow_rsv1 = true};
  auto seen = parse(concat({frame(Opcode::text, "\xFF", false, true, true), frame(Opcode::continuation, "z")}), deflate);
  ASSERT_EQ(seen.size(), 1u);  // compressed text is checked for UTF-8 after inflating, not here
  EXPECT_TRUE(seen[0].compressed);
  EXPECT_EQ(seen[0].payload, "\xFFz");
  // Only the first frame of a message may carry RSV1, and never a control frame.
  EXPECT_EQ(first(concat({frame(Opcode::text, "a", false), frame(Opcode::continuation, "b", true, true, true)}), deflate),
            std::pair(Kind::error, std::uint16_t{1002}));
  EXPECT_EQ(first(frame(Opcode::ping, "", true, true, true), deflate), std::pair(Kind::error, std::uint16_t{1002}));
}

TEST(Parser, EnforcesTheControlFrameRules) {
  EXPECT_EQ(first(frame(Opcode::ping, "x", false)), std::pair(Kind::error, std::uint16_t{1002}));
  EXPECT_EQ(first(frame(Opcode::ping, std::string(126, 'x'))), std::pair(Kind::error, std::uint16_t{1002}));
  auto seen = parse(frame(Opcode::pong, std::string(125, 'x')));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].kind, Kind::pong);
}

TEST(Parser, EnforcesTheFragmentationRules) {
  EXPECT_EQ(first(frame(Opcode::continuation, "x")), std::pair(Kind::error, std::uint16_t{1002}));
  EXPECT_EQ(first(concat({frame(Opcode::text, "a", false), frame(Opcode::text, "b")})),
            std::pair(Kind::error, std::uint16_t{1002}));
  EXPECT_EQ(first(concat({frame(Opcode::binary, "a", false), frame(Opcode::binary, "b")})),
            std::pair(Kind::error, std::uint16_t{1002}));
}

TEST(Parser, RejectsLengthsThatAreNotMinimalOrTooLarge) {
  EXPECT_EQ(first(raw({0x82, 0x80 | 126, 0, 125}, std::string(125, 'x'))), std::pair(Kind::error, std::uint16_t{1002}));
  EXPECT_EQ(first(raw({0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF})), std::pair(Kind::error, std::uint16_t{1002}));
  EXPECT_EQ(first(raw({0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0})), std::pair(Kind::error, std::uint16_t{1002}));
}

TEST(Parser, FailsAnOversizedMessageBeforeItsPayloadArrives) {
  ParserOptions small{.max_message_size = 100};
  // Only the header of a 101-byte frame.
  auto head = frame(Opcode::binary, std::string(101, 'x'));
  head.resize(header_size(101, true));
  EXPECT_EQ(first(head, small), std::pair(Kind::error, std::uint16_t{1009}));
  // Exactly the limit is fine, over it across fragments is not.
  EXPECT_EQ(first(frame(Opcode::binary, std::string(100, 'x')), small).first, Kind::message);
  EXPECT_EQ(first(concat({frame(Opcode::binary, std::string(60, 'x'), false),
                          frame(Opcode::continuation, std::string(41, 'x'))}),
                  small),
            std::pair(Kind::error, std::uint16_t{1009}));
}

TEST(Parser, ChecksTextForUtf8AndFailsFast) {
  EXPECT_EQ(first(frame(Opcode::text, "\xC0\xAF")), std::pair(Kind::error, std::uint16_t{1007}));       // overlong
  EXPECT_EQ(first(frame(Opcode::text, "\xED\xA0\x80")), std::pair(Kind::error, std::uint16_t{1007}));   // surrogate
  EXPECT_EQ(first(frame(Opcode::text, "\xF4\x90\x80\x80")), std::pair(Kind::error, std::uint16_t{1007}));
  EXPECT_EQ(first(frame(Opcode::text, "ends inside \xE2\x82")), std::pair(Kind::error, std::uint16_t{1007}));
  // The bad byte is in the first fragment: the error comes before the message is complete.
  EXPECT_EQ(first(frame(Opcode::text, "ok \xFF", false)), std::pair(Kind::error, std::uint16_t{1007}));
  // A character split across fragments is fine; binary is never checked.
  EXPECT_EQ(first(concat({frame(Opcode::text, "\xF0\x9F", false), frame(Opcode::continuation, "\x98\x80")})).first,
            Kind::message);
  EXPECT_EQ(first(frame(Opcode::binary, "\xFF\xFE")).first, Kind::message);
}

TEST(Parser, ReadsCloseFramesAndStopsThere) {
  auto seen = parse(concat({frame(Opcode::close, ""), frame(Opcode::text, "after")}));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], (Seen{Kind::close, Opcode::text, "", 1005}));
  EXPECT_EQ(first(frame(Opcode::close, std::string("\x0B\xB8", 2))), std::pair(Kind::close, std::uint16_t{3000}));
  EXPECT_EQ(first(frame(Opcode::close, std::string("\x13\x87", 2))), std::pair(Kind::close, std::uint16_t{4999}));
  EXPECT_EQ(first(frame(Opcode::close, "\x03")), std::pair(Kind::error, std::uint16_t{1002}));  // one byte
  for (std::uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535}) {
    const std::string payload{static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
    EXPECT_EQ(first(frame(Opcode::close, payload)), std::pair(Kind::error, std::uint16_t{1002})) << code;
  }
  EXPECT_EQ(first(frame(Opcode::close, std::string("\x03\xE8\xFF", 3))), std::pair(Kind::error, std::uint16_t{1007}));

  // The state is terminal.
  auto bytes = frame(Opcode::close, std::string("\x03\xE9" "away", 6));
  Parser parser;
  std::span<std::uint8_t> input(bytes);
  EXPECT_EQ(parser.next(input).kind, Kind::close);
  auto more = frame(Opcode::text, "x");
  std::span<std::uint8_t> again(more);
  const Event e = parser.next(again);
  EXPECT_EQ(e.kind, Kind::close);
  EXPECT_EQ(e.close_code, 1001);
  EXPECT_EQ(e.reason, "away");
}

TEST(Parser, ReleasesItsBufferBetweenMessages) {
  auto bytes = frame(Opcode::binary, std::string(5000, 'x'));
  Parser parser;
  std::span<std::uint8_t> first_half(bytes.data(), 2000), second_half(bytes.data() + 2000, bytes.size() - 2000);
  EXPECT_EQ(parser.next(first_half).kind, Kind::need_more);
  EXPECT_TRUE(parser.in_progress());
  EXPECT_GT(parser.buffered(), 0u);
  const Event e = parser.next(second_half);
  ASSERT_EQ(e.kind, Kind::message);
  EXPECT_EQ(e.payload.size(), 5000u);
  EXPECT_EQ(parser.next(second_half).kind, Kind::need_more);
  EXPECT_FALSE(parser.in_progress());
  parser.release_memory();
  EXPECT_EQ(parser.buffered(), 0u);
}

// Random bytes, split at random, never break the parser's invariants: it ends in an error or
// consumes everything, and the events do not depend on where the input was split.
TEST(Parser, SurvivesArbitraryInput) {
  std::mt19937 rng(7);
  for (int round = 0; round < 2000; ++round) {
    std::vector<std::uint8_t> bytes;
    // Mostly well-formed frames with random damage, so the parser gets deep.
    const int frames = std::uniform_int_distribution<int>(1, 6)(rng);
    for (int f = 0; f < frames; ++f) {
      const auto op = std::array{Opcode::text, Opcode::binary, Opcode::continuation, Opcode::ping,
                                 Opcode::close}[std::uniform_int_distribution<int>(0, 4)(rng)];
      std::string payload(std::uniform_int_distribution<std::size_t>(0, 300)(rng), '\0');
      for (auto& c : payload) c = static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng));
      auto fr = frame(op, payload, rng() % 3 != 0);
      if (rng() % 4 == 0) fr[rng() % fr.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
      bytes.insert(bytes.end(), fr.begin(), fr.end());
    }
    const auto whole = parse(bytes, {.max_message_size = 1000});
    std::vector<std::size_t> pieces;
    for (std::size_t total = 0; total < bytes.size(); total += pieces.back())
      pieces.push_back(std::uniform_int_distribution<std::size_t>(1, 40)(rng));
    ASSERT_EQ(parse(bytes, {.max_message_size = 1000}, pieces), whole) << "round " << round;
  }
}
