// The v2 message format: golden byte vectors (byte-compatible with the Rust crates), round trips
// and every way a buffer can be malformed.
#include "stateroom/codec.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace stateroom::codec {
namespace {

std::vector<std::uint8_t> hex(std::string_view h) {
  std::vector<std::uint8_t> out;
  int nibble = -1;
  for (char c : h) {
    if (c == ' ') continue;
    const int v = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
    if (nibble < 0) {
      nibble = v;
    } else {
      out.push_back(static_cast<std::uint8_t>(nibble * 16 + v));
      nibble = -1;
    }
  }
  return out;
}

template <class Message>
std::vector<std::uint8_t> bytes_of(const Message& m) {
  const std::string s = encode(m);
  EXPECT_EQ(s.size(), encoded_size(m));
  return {s.begin(), s.end()};
}

using To = MessageToProcess;
using From = MessageFromProcess;

TEST(Codec, TheWorkedExampleFromTheInterfaceSpec) {
  const From m{From::Kind::message, broadcast(), MessagePayload("hi"), 0};
  EXPECT_EQ(bytes_of(m), hex("00000000 00000000 01000000 0200000000000000 6869"));
}

TEST(Codec, GoldenVectorsToProcess) {
  EXPECT_EQ(bytes_of(To{To::Kind::init, {}, {}}), hex("00000000"));
  EXPECT_EQ(bytes_of(To{To::Kind::connect, ClientId(7), {}}), hex("01000000 07000000"));
  EXPECT_EQ(bytes_of(To{To::Kind::disconnect, ClientId(258), {}}), hex("02000000 02010000"));
  EXPECT_EQ(bytes_of(To{To::Kind::message, ClientId(3), MessagePayload(std::vector<std::uint8_t>{1, 2})}),
            hex("03000000 03000000 00000000 0200000000000000 0102"));
  EXPECT_EQ(bytes_of(To{To::Kind::message, ClientId(1), MessagePayload("é")}),
            hex("03000000 01000000 01000000 0200000000000000 c3a9"));
  EXPECT_EQ(bytes_of(To{To::Kind::timer, {}, {}}), hex("04000000"));
}

TEST(Codec, GoldenVectorsFromProcess) {
  EXPECT_EQ(bytes_of(From{From::Kind::message, client(ClientId(5)),
                          MessagePayload::binary(std::string(1, '\0')), 0}),
            hex("00000000 01000000 05000000 00000000 0100000000000000 00"));
  EXPECT_EQ(bytes_of(From{From::Kind::message, everyone_except(ClientId(2)), MessagePayload(""), 0}),
            hex("00000000 02000000 02000000 01000000 0000000000000000"));
  EXPECT_EQ(bytes_of(From{From::Kind::set_timer, {}, {}, 1000}), hex("01000000 e8030000"));
  EXPECT_EQ(bytes_of(From{From::Kind::set_timer, {}, {}, 0}), hex("01000000 00000000"));
}

TEST(Codec, RoundTrips) {
  const std::vector<To> tos{
      {To::Kind::init, {}, {}},
      {To::Kind::connect, ClientId(1), {}},
      {To::Kind::disconnect, ClientId(0xFFFFFFFF), {}},
      {To::Kind::message, ClientId(9), MessagePayload("text ✓")},
      {To::Kind::message, ClientId(9), MessagePayload::binary(std::string(70000, '\xff'))},
      {To::Kind::timer, {}, {}},
  };
  for (const auto& m : tos) {
    const auto b = bytes_of(m);
    const auto d = decode_to_process(b);
    ASSERT_TRUE(d.ok()) << describe(d.error);
    EXPECT_EQ(d.value, m);
  }
  const std::vector<From> froms{
      {From::Kind::message, broadcast(), MessagePayload("all"), 0},
      {From::Kind::message, client(ClientId(4)), MessagePayload::binary("\x01\x02"), 0},
      {From::Kind::message, everyone_except(ClientId(4)), MessagePayload(""), 0},
      {From::Kind::set_timer, {}, {}, 4000},
  };
  for (const auto& m : froms) {
    const auto b = bytes_of(m);
    const auto d = decode_from_process(b);
    ASSERT_TRUE(d.ok()) << describe(d.error);
    EXPECT_EQ(d.value, m);
  }
}

TEST(Codec, EveryTruncationIsDetected) {
  const auto full = bytes_of(From{From::Kind::message, client(ClientId(5)), MessagePayload("hello"), 0});
  for (std::size_t n = 0; n < full.size(); ++n) {
    const auto d = decode_from_process(std::span(full.data(), n));
    EXPECT_EQ(d.error, DecodeError::truncated) << n;
  }
  const auto to = bytes_of(To{To::Kind::message, ClientId(5), MessagePayload("hello")});
  for (std::size_t n = 0; n < to.size(); ++n) {
    EXPECT_EQ(decode_to_process(std::span(to.data(), n)).error, DecodeError::truncated) << n;
  }
}

TEST(Codec, MalformedBuffers) {
  EXPECT_EQ(decode_from_process(hex("02000000")).error, DecodeError::unknown_tag);
  EXPECT_EQ(decode_from_process(hex("00000000 03000000")).error, DecodeError::unknown_tag);
  EXPECT_EQ(decode_from_process(hex("00000000 00000000 02000000 0000000000000000")).error,
            DecodeError::unknown_tag);
  EXPECT_EQ(decode_from_process(hex("00000000 00000000 01000000 0100000000000000 ff")).error,
            DecodeError::invalid_utf8);
  EXPECT_EQ(decode_from_process(hex("00000000 00000000 00000000 0100000000000000 ff")).error,
            DecodeError::none)
      << "bytes need not be UTF-8";
  EXPECT_EQ(decode_from_process(hex("01000000 e8030000 00")).error, DecodeError::trailing_bytes);
  // A length far past the buffer (and past what size_t arithmetic could hold) is a truncation.
  EXPECT_EQ(decode_from_process(hex("00000000 00000000 00000000 ffffffffffffffff 00")).error,
            DecodeError::truncated);
  EXPECT_EQ(decode_to_process(hex("05000000")).error, DecodeError::unknown_tag);
  EXPECT_EQ(decode_to_process(hex("00000000 00")).error, DecodeError::trailing_bytes);
}

TEST(Utf8, AcceptsWellFormedAndRejectsTheRest) {
  EXPECT_TRUE(is_valid_utf8("plain"));
  EXPECT_TRUE(is_valid_utf8("\xC3\xA9\xE2\x9C\x93\xF0\x9F\x98\x80"));
  EXPECT_FALSE(is_valid_utf8("\xFF"));
  EXPECT_FALSE(is_valid_utf8("\xC3"));              // truncated
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // past U+10FFFF
  static_assert(is_valid_utf8("constexpr ✓"));
}

}  // namespace
}  // namespace stateroom::codec
