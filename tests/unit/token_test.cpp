// Room tokens: the format of docs/auth.md, and every way a token can be wrong.
#include "server/token.hpp"

#include <gtest/gtest.h>

#include <string>

namespace stateroom::server {
namespace {

const std::string secret = "0123456789abcdef0123456789abcdef";
constexpr std::int64_t now = 1'700'000'000;

TEST(Token, TheFormatIsTheDocumentedOne) {
  // Made by the Python minter of docs/auth.md (payload "1700000000\nlobby"), not by this code.
  const std::string python = "MTcwMDAwMDAwMApsb2JieQ.J41d5dELKjkDU-t2FV2Dv6PC1IDXId5sGfQPqHAbKdU";
  EXPECT_EQ(mint_token(secret, "lobby", 1'700'000'000), python);
  EXPECT_EQ(check_token(secret, python, "lobby", now - 1), TokenCheck::valid);
  EXPECT_EQ(base64url_encode("1700000000\nlobby"), "MTcwMDAwMDAwMApsb2JieQ");
  EXPECT_EQ(base64url_encode(""), "");
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
}

TEST(Token, AGoodTokenIsValidForItsRoomUntilItExpires) {
  const std::string token = mint_token(secret, "lobby", now + 60);
  EXPECT_EQ(check_token(secret, token, "lobby", now), TokenCheck::valid);
  EXPECT_EQ(check_token(secret, token, "lobby", now + 59), TokenCheck::valid);
  EXPECT_EQ(check_token(secret, token, "lobby", now + 60), TokenCheck::expired)
      << "expiry is the first second refused";
  EXPECT_EQ(check_token(secret, mint_token(secret, "lobby", 0), "lobby", now), TokenCheck::expired);
  EXPECT_EQ(check_token(secret, token, "lobby2", now), TokenCheck::wrong_room);
  EXPECT_EQ(check_token(secret, token, "Lobby", now), TokenCheck::wrong_room);
  EXPECT_EQ(check_token(secret, token, "", now), TokenCheck::wrong_room);
}

TEST(Token, RoomIdsAreComparedByteForByteWhateverTheyHold) {
  for (const std::string& room :
       {std::string("a\nb"), std::string("caf\xc3\xa9"), std::string(256, 'r'), std::string("x\0y", 3)}) {
    const std::string token = mint_token(secret, room, now + 60);
    EXPECT_EQ(check_token(secret, token, room, now), TokenCheck::valid) << room;
    EXPECT_EQ(check_token(secret, token, room.substr(0, room.size() - 1), now), TokenCheck::wrong_room)
        << room;
  }
}

TEST(Token, AnotherSecretOrAnyChangedByteIsABadSignature) {
  const std::string token = mint_token(secret, "lobby", now + 60);
  EXPECT_EQ(check_token(secret + "x", token, "lobby", now), TokenCheck::bad_signature);
  EXPECT_EQ(check_token("another secret of 32 bytes......", token, "lobby", now), TokenCheck::bad_signature);
  // A payload that says another room or a later expiry, with the original signature.
  const std::string signature = token.substr(token.find('.'));
  EXPECT_EQ(
      check_token(secret, base64url_encode(std::to_string(now + 60) + "\nother") + signature, "other", now),
      TokenCheck::bad_signature);
  EXPECT_EQ(check_token(secret, base64url_encode(std::to_string(now + 99999) + "\nlobby") + signature,
                        "lobby", now),
            TokenCheck::bad_signature);
  // Every character of the signature changed in turn (to another of the alphabet).
  for (std::size_t i = token.find('.') + 1; i < token.size(); ++i) {
    std::string forged = token;
    forged[i] = forged[i] == 'A' ? 'B' : 'A';
    const TokenCheck got = check_token(secret, forged, "lobby", now);
    // The last character carries 4 bits of padding: some changes there make it non-canonical.
    EXPECT_TRUE(got == TokenCheck::bad_signature || (i + 1 == token.size() && got == TokenCheck::malformed))
        << "character " << i;
  }
  // An expired token for another room, badly signed, is first of all badly signed: nothing it
  // says is believed before its signature.
  EXPECT_EQ(check_token(secret, mint_token(secret + "x", "b", 0), "lobby", now), TokenCheck::bad_signature);
}

TEST(Token, WhatIsNotATokenIsMissingOrMalformed) {
  const std::string token = mint_token(secret, "lobby", now + 60);
  const std::string payload = token.substr(0, token.find('.'));
  const std::string signature = token.substr(token.find('.') + 1);
  EXPECT_EQ(check_token(secret, "", "lobby", now), TokenCheck::missing);
  const std::string sig_of_31 = base64url_encode(std::string(31, 'x'));
  const std::string sig_of_33 = base64url_encode(std::string(33, 'x'));
  for (const std::string& bad : {
           token.substr(0, token.size() - 1),     // truncated: its last character gone
           token.substr(0, token.size() - 2),     // truncated: a signature of 31 bytes and change
           token.substr(0, token.find('.')),      // no signature
           token.substr(0, token.find('.') + 1),  // an empty one
           "." + signature,                       // no payload
           payload + "." + sig_of_31,             // a signature of 31 bytes
           payload + "." + sig_of_33,             // or 33
           payload + "=." + signature,            // padding
           payload + "." + signature + "=",       //
           payload + "." + signature + ".x",      // three parts
           payload + "+." + signature,            // the standard alphabet, not base64url
           payload.substr(0, 5) + "*" + payload.substr(6) + "." + signature, payload + " ." + signature,
           std::string("x"), std::string("."), std::string(max_token_size + 1, 'A'),  // huge
       }) {
    EXPECT_EQ(check_token(secret, bad, "lobby", now), TokenCheck::malformed) << bad;
  }
  // Well-formed base64url, well-sized signatures, but payloads that are not `<expiry>\n<room>`.
  for (const std::string& text :
       {std::string("lobby"), std::string("\nlobby"), std::string("12x\nlobby"), std::string("-5\nlobby"),
        std::string("+5\nlobby"), std::string(" 5\nlobby"), std::string("99999999999999999999\nlobby"),
        std::string("1e9\nlobby"), std::string()}) {
    EXPECT_EQ(check_token(secret, base64url_encode(text) + "." + signature, "lobby", now),
              TokenCheck::malformed)
        << text;
  }
  // The largest token that is not refused for its size is read (and here badly signed).
  const std::string long_room(max_token_size, 'r');
  const std::string largest =
      base64url_encode("9\n" + long_room).substr(0, max_token_size - 44) + "." + signature;
  ASSERT_EQ(largest.size(), max_token_size);
  EXPECT_EQ(check_token(secret, largest, "lobby", now), TokenCheck::bad_signature);
}

}  // namespace
}  // namespace stateroom::server
