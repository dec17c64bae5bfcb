// The opening handshake's keys (src/protocol/handshake.hpp).
#include "protocol/handshake.hpp"

#include <gtest/gtest.h>

using namespace stateroom::protocol;

TEST(Handshake, AnswersTheRfcExampleKey) {
  // RFC 6455 §1.3.
  EXPECT_EQ(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(Handshake, AcceptsOnlyKeysOfSixteenBytes) {
  EXPECT_TRUE(is_valid_client_key("dGhlIHNhbXBsZSBub25jZQ=="));
  EXPECT_FALSE(is_valid_client_key(""));
  EXPECT_FALSE(is_valid_client_key("dGhlIHNhbXBsZSBub25jZQ="));    // too short
  EXPECT_FALSE(is_valid_client_key("dGhlIHNhbXBsZSBub25jZQ==="));  // too long
  EXPECT_FALSE(is_valid_client_key("dGhlIHNhbXBsZSBub25jZQAA"));   // 18 bytes, no padding
  EXPECT_FALSE(is_valid_client_key("dGhlIHNhbXBsZSBub25j!Q=="));   // not base64
  EXPECT_FALSE(is_valid_client_key("dGhlIHNhbXBsZSBub2=ZQ=="));    // padding in the middle
}

TEST(Handshake, MakesValidClientKeys) {
  const std::array<std::uint8_t, 16> bytes{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 255};
  const std::string key = make_client_key(bytes);
  EXPECT_EQ(key.size(), 24u);
  EXPECT_TRUE(is_valid_client_key(key));
}
