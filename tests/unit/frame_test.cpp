// The frame-header writer, masking and close payloads (src/protocol/frame.hpp).
#include "protocol/frame.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace stateroom::protocol;

namespace {

std::vector<std::uint8_t> header(const FrameHeader& h) {
  std::vector<std::uint8_t> out(max_header_size);
  out.resize(write_header(out.data(), h));
  return out;
}

}  // namespace

TEST(FrameHeader, UsesTheMinimalLengthEncoding) {
  EXPECT_EQ(header({.opcode = Opcode::text, .payload_size = 0}), (std::vector<std::uint8_t>{0x81, 0x00}));
  EXPECT_EQ(header({.opcode = Opcode::binary, .payload_size = 125}), (std::vector<std::uint8_t>{0x82, 125}));
  EXPECT_EQ(header({.opcode = Opcode::binary, .payload_size = 126}), (std::vector<std::uint8_t>{0x82, 126, 0, 126}));
  EXPECT_EQ(header({.opcode = Opcode::text, .payload_size = 0xFFFF}),
            (std::vector<std::uint8_t>{0x81, 126, 0xFF, 0xFF}));
  EXPECT_EQ(header({.opcode = Opcode::text, .payload_size = 0x10000}),
            (std::vector<std::uint8_t>{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}));
  for (std::uint64_t size : {0ull, 125ull, 126ull, 0xFFFFull, 0x10000ull, 1ull << 40}) {
    EXPECT_EQ(header({.payload_size = size}).size(), header_size(size, false)) << size;
  }
}

TEST(FrameHeader, CarriesFinRsv1OpcodeAndMask) {
  const std::uint8_t mask[4] = {1, 2, 3, 4};
  EXPECT_EQ(header({.opcode = Opcode::continuation, .payload_size = 3, .fin = false, .rsv1 = true, .mask = mask}),
            (std::vector<std::uint8_t>{0x40, 0x83, 1, 2, 3, 4}));
  EXPECT_EQ(header({.opcode = Opcode::close, .payload_size = 2}), (std::vector<std::uint8_t>{0x88, 2}));
  EXPECT_EQ(header({.opcode = Opcode::pong, .payload_size = 200, .mask = mask}).size(), header_size(200, true));
}

TEST(Masking, IsItsOwnInverseAndContinuesAcrossPieces) {
  const std::uint8_t mask[4] = {0xA1, 0xB2, 0xC3, 0xD4};
  std::vector<std::uint8_t> data(1000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 7);
  const auto original = data;

  auto whole = data;
  apply_mask(whole, mask);
  for (std::size_t i = 0; i < data.size(); ++i) ASSERT_EQ(whole[i], original[i] ^ mask[i % 4]) << i;

  // The same result in uneven pieces, each continuing the mask where the last one stopped.
  auto pieces = data;
  std::size_t offset = 0, at = 0;
  for (std::size_t len : {1u, 2u, 3u, 13u, 64u, 7u, 500u}) {
    offset = apply_mask(std::span(pieces).subspan(at, len), mask, offset);
    at += len;
  }
  apply_mask(std::span(pieces).subspan(at), mask, offset);
  EXPECT_EQ(pieces, whole);

  apply_mask(whole, mask);
  EXPECT_EQ(whole, original);
}

TEST(ClosePayload, IsACodeAndAReasonCutAtACharacterBoundary) {
  std::uint8_t out[max_control_payload];
  ASSERT_EQ(write_close_payload(out, 1000, "bye"), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(out), 5), std::string("\x03\xE8" "bye", 5));
  EXPECT_EQ(write_close_payload(out, 0, "ignored"), 0u);

  // 122 ASCII bytes and then a two-byte character: the character does not fit in 123.
  const std::string reason = std::string(122, 'x') + "\xC3\xA9" + "tail";
  const std::size_t n = write_close_payload(out, 1011, reason);
  EXPECT_EQ(n, 2u + 122u);
  EXPECT_LE(n, max_control_payload);
}

TEST(CloseCodes, FollowRfc6455Section7_4) {
  for (std::uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999})
    EXPECT_TRUE(is_valid_close_code(code)) << code;
  for (std::uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535})
    EXPECT_FALSE(is_valid_close_code(code)) << code;
}
