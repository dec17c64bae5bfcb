// permessage-deflate (RFC 7692): the negotiation, both directions of compression, and the limits a
// hostile sender meets.
#include "protocol/deflate.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace stateroom::protocol {
namespace {

std::span<const std::uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string json_like(int i) {
  return R"({"type":"state","room":"lobby","players":[{"id":)" + std::to_string(i) +
         R"(,"x":12.5,"y":-3.25,"name":"player one"},{"id":)" + std::to_string(i + 1) +
         R"(,"x":0.5,"y":8.0,"name":"player two"}],"tick":)" + std::to_string(i * 7) + "}";
}

// --- negotiation ----------------------------------------------------------------------------------

TEST(DeflateNegotiation, NoOfferNoCompression) {
  EXPECT_FALSE(negotiate_deflate("", 15));
  EXPECT_FALSE(negotiate_deflate("x-webkit-deflate-frame", 15));
}

TEST(DeflateNegotiation, APlainOfferIsAcceptedWithTheServerCompressingEachMessageOnItsOwn) {
  const auto agreed = negotiate_deflate("permessage-deflate", 15);
  ASSERT_TRUE(agreed);
  EXPECT_EQ(agreed->response, "permessage-deflate; server_no_context_takeover");
  EXPECT_EQ(agreed->params, (DeflateParams{.server_window_bits = 15, .client_window_bits = 15,
                                           .client_no_context_takeover = false}));
}

TEST(DeflateNegotiation, ABrowsersOfferGetsTheConfiguredWindowInBothDirections) {
  const auto agreed = negotiate_deflate("permessage-deflate; client_max_window_bits", 10);
  ASSERT_TRUE(agreed);
  EXPECT_EQ(agreed->response,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=10");
  EXPECT_EQ(agreed->params.server_window_bits, 10);
  EXPECT_EQ(agreed->params.client_window_bits, 10);
  EXPECT_FALSE(agreed->params.client_no_context_takeover);
}

TEST(DeflateNegotiation, TheClientsRequestedWindowsAreHonoured) {
  const auto agreed =
      negotiate_deflate("permessage-deflate; server_max_window_bits=9; client_max_window_bits=12", 15);
  ASSERT_TRUE(agreed);
  EXPECT_EQ(agreed->params.server_window_bits, 9);
  EXPECT_EQ(agreed->params.client_window_bits, 12);
  EXPECT_EQ(agreed->response,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=12");
  // A quoted value is the same value (§7.1).
  const auto quoted = negotiate_deflate(R"(permessage-deflate; server_max_window_bits="11")", 15);
  ASSERT_TRUE(quoted);
  EXPECT_EQ(quoted->params.server_window_bits, 11);
}

TEST(DeflateNegotiation, AClientThatCannotBeToldASmallerWindowCompressesEachMessageOnItsOwn) {
  // Without client_max_window_bits in its offer the client may use 15 bits: more than a server
  // configured for 12 keeps per connection, so it is asked to keep no context instead.
  const auto agreed = negotiate_deflate("permessage-deflate", 12);
  ASSERT_TRUE(agreed);
  EXPECT_TRUE(agreed->params.client_no_context_takeover);
  EXPECT_EQ(agreed->response,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; client_no_context_takeover");
}

TEST(DeflateNegotiation, AClientsOwnNoContextTakeoverIsAcknowledged) {
  const auto agreed = negotiate_deflate("permessage-deflate; client_no_context_takeover", 15);
  ASSERT_TRUE(agreed);
  EXPECT_TRUE(agreed->params.client_no_context_takeover);
  EXPECT_EQ(agreed->response, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
}

TEST(DeflateNegotiation, InvalidOffersAreDeclinedAndTheNextOneIsTried) {
  for (const char* bad : {
           "permessage-deflate; server_max_window_bits",        // the value is required
           "permessage-deflate; server_max_window_bits=16",     // out of range
           "permessage-deflate; server_max_window_bits=7",
           "permessage-deflate; server_max_window_bits=09",     // not a canonical number
           "permessage-deflate; client_max_window_bits=abc",
           "permessage-deflate; server_max_window_bits=8",      // zlib cannot keep to 256 bytes
           "permessage-deflate; client_no_context_takeover=1",  // takes no value
           "permessage-deflate; server_no_context_takeover; server_no_context_takeover",  // repeated
           "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
           "permessage-deflate; mystery_parameter",
       }) {
    EXPECT_FALSE(negotiate_deflate(bad, 15)) << bad;
    const auto next = negotiate_deflate(std::string(bad) + ", permessage-deflate; client_max_window_bits=11", 15);
    ASSERT_TRUE(next) << bad;
    EXPECT_EQ(next->params.client_window_bits, 11) << bad;
  }
}

TEST(DeflateNegotiation, TheHeaderGrammarIsFollowed) {
  // Several offers, parameters without values, spaces and tabs, case-insensitive names, a quoted
  // comma, and an element that breaks the grammar.
  const auto agreed = negotiate_deflate(
      "x-foo; a=\"1,2\", PerMessage-Deflate;\tclient_no_context_takeover ;client_max_window_bits , "
      "permessage-deflate",
      12);
  ASSERT_TRUE(agreed);
  EXPECT_EQ(agreed->params.client_window_bits, 12);
  EXPECT_TRUE(agreed->params.client_no_context_takeover);
  EXPECT_FALSE(negotiate_deflate("permessage-deflate; client_max_window_bits=\"1\\0\"", 15));
  EXPECT_FALSE(negotiate_deflate("permessage-deflate; =10", 15));
  EXPECT_FALSE(negotiate_deflate("permessage deflate", 15));
  EXPECT_FALSE(negotiate_deflate(",,,", 15));
  const auto after_junk = negotiate_deflate("permessage-deflate; x=\"unterminated, permessage-deflate", 15);
  EXPECT_FALSE(after_junk) << "an unterminated quote swallows the rest: nothing valid is left";
}

TEST(DeflateNegotiation, TheClientReadsTheServersResponse) {
  for (int bits : {9, 12, 15}) {
    const auto agreed = negotiate_deflate(deflate_offer(), bits);
    ASSERT_TRUE(agreed);
    const auto read = read_deflate_response(agreed->response);
    ASSERT_TRUE(read) << agreed->response;
    EXPECT_EQ(*read, agreed->params);
  }
  EXPECT_FALSE(read_deflate_response("permessage-deflate; client_max_window_bits"));  // a response gives a value
  EXPECT_FALSE(read_deflate_response("permessage-deflate, permessage-deflate"));
  EXPECT_FALSE(read_deflate_response("x-other"));
}

// --- compression ----------------------------------------------------------------------------------

TEST(Deflate, TheServersMessagesInflateBackAndDoNotDependOnEachOther) {
  MessageDeflaters deflaters;
  Inflater inflater(15, false);
  std::string first_compressed;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 50; ++i) {
      const std::string message = json_like(i);
      std::string compressed, back;
      ASSERT_TRUE(deflaters.compress(15, bytes(message), compressed));
      EXPECT_LT(compressed.size(), message.size());
      ASSERT_EQ(inflater.inflate(bytes(compressed), 1 << 20, back), Inflater::Result::ok);
      EXPECT_EQ(back, message);
      if (i == 0 && round == 0) first_compressed = compressed;
      if (i == 0 && round == 1) {
        EXPECT_EQ(compressed, first_compressed);  // no context carried over
      }
    }
  }
}

TEST(Deflate, AClientKeepingItsContextIsInflatedWithItsOwnContext) {
  Deflater client(15, true);
  Inflater server(15, true);
  std::size_t first = 0, later = 0;
  for (int i = 0; i < 20; ++i) {
    const std::string message = json_like(i);
    std::string compressed, back;
    ASSERT_TRUE(client.compress(bytes(message), compressed));
    (i == 0 ? first : later) = compressed.size();
    ASSERT_EQ(server.inflate(bytes(compressed), 1 << 20, back), Inflater::Result::ok);
    ASSERT_EQ(back, message) << i;
  }
  EXPECT_LT(later, first / 2) << "later messages refer to earlier ones";
}

TEST(Deflate, EverySmallWindowRoundTrips) {
  std::mt19937 rng(7);
  std::string message;
  for (int i = 0; i < 100000; ++i) message += static_cast<char>('a' + rng() % 8);
  MessageDeflaters deflaters;
  for (int bits = min_server_window_bits; bits <= max_window_bits; ++bits) {
    std::string compressed, back;
    ASSERT_TRUE(deflaters.compress(bits, bytes(message), compressed));
    Inflater inflater(bits, false);
    ASSERT_EQ(inflater.inflate(bytes(compressed), 1 << 20, back), Inflater::Result::ok) << bits;
    EXPECT_EQ(back, message) << bits;
  }
}

TEST(Deflate, AnEmptyMessageRoundTrips) {
  Deflater deflater(15, false);
  std::string compressed, back = "stale";
  ASSERT_TRUE(deflater.compress({}, compressed));
  Inflater inflater(15, false);
  ASSERT_EQ(inflater.inflate(bytes(compressed), 100, back), Inflater::Result::ok);
  EXPECT_EQ(back, "");
}

TEST(Deflate, ABombStopsAtTheLimitNotAtItsInflatedSize) {
  const std::string zeros(64 << 20, '\0');
  Deflater deflater(15, false, 9);  // an attacker compresses as hard as zlib can
  std::string compressed;
  ASSERT_TRUE(deflater.compress(bytes(zeros), compressed));
  ASSERT_LT(compressed.size(), 128u * 1024) << "64 MiB of zeros compress to next to nothing";
  Inflater inflater(15, true);
  std::string out;
  EXPECT_EQ(inflater.inflate(bytes(compressed), 1 << 20, out), Inflater::Result::too_big);
  EXPECT_LE(out.size(), (1u << 20) + 1) << "it stopped one byte past the limit";
  EXPECT_LE(out.capacity(), 2u * (1u << 20) + 64 * 1024) << "the buffer grows by doubling, to twice the limit at most";
}

TEST(Deflate, AMessageOfExactlyTheLimitPasses) {
  const std::string message(5000, 'x');
  Deflater deflater(15, false);
  std::string compressed, out;
  ASSERT_TRUE(deflater.compress(bytes(message), compressed));
  Inflater inflater(15, false);
  EXPECT_EQ(inflater.inflate(bytes(compressed), 5000, out), Inflater::Result::ok);
  EXPECT_EQ(out, message);
  EXPECT_EQ(inflater.inflate(bytes(compressed), 4999, out), Inflater::Result::too_big);
}

TEST(Deflate, GarbageIsCorrupt) {
  Inflater inflater(15, true);
  std::string out;
  // 0xFF: BFINAL set, block type 3, which does not exist.
  const std::string garbage = "\xff\xff\xff\xff garbage";
  EXPECT_EQ(inflater.inflate(bytes(garbage), 1 << 20, out), Inflater::Result::corrupt);
}

TEST(Deflate, BytesAfterAFinalBlockAreCorrupt) {
  // A complete raw deflate stream with BFINAL set ("hello" in a final fixed block), then junk.
  std::string stream = std::string("\xcb\x48\xcd\xc9\xc9\x07\x00", 7);
  Inflater inflater(15, false);
  std::string out;
  ASSERT_EQ(inflater.inflate(bytes(stream), 100, out), Inflater::Result::ok);
  EXPECT_EQ(out, "hello");
  EXPECT_EQ(inflater.inflate(bytes(stream + "junk"), 100, out), Inflater::Result::corrupt);
}

}  // namespace
}  // namespace stateroom::protocol
