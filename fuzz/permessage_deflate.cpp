// permessage_deflate: the extension's negotiation and decompression (src/protocol/deflate.hpp), the
// two places where a client's bytes reach zlib and the header grammar.
//
// The input's first byte chooses: bits 0-2 the server's window (9 + value, clamped to 15), bit 3
// whether the decompressor keeps its context, bit 4 the mode below. The rest is, by mode:
//   negotiation   a Sec-WebSocket-Extensions header. An agreement must keep to the window asked
//                 for and to the server's, and its response must read back (as a client reads it)
//                 to the same parameters.
//   inflate       messages for one decompressor, separated by the byte 0xFF 0x00: each is inflated
//                 with a 64 KiB limit. A result over the limit must be too_big, never ok; after a
//                 failure the stream is replaced (the connection would end). Every message that
//                 inflates is compressed again and must inflate back to itself.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common.hpp"
#include "protocol/deflate.hpp"

using namespace stateroom::protocol;
using stateroom::fuzz::bytes_of;

namespace {

constexpr std::size_t limit = 64 * 1024;

void negotiation(std::string_view header, int window_bits) {
  const auto agreed = negotiate_deflate(header, window_bits);
  if (!agreed) return;
  const DeflateParams& p = agreed->params;
  FUZZ_CHECK(p.server_window_bits >= min_server_window_bits && p.server_window_bits <= window_bits);
  FUZZ_CHECK(p.client_window_bits >= 8 && p.client_window_bits <= max_window_bits);
  // A client whose window the server could not bound must keep no context.
  FUZZ_CHECK(p.client_window_bits <= window_bits || p.client_no_context_takeover);
  const auto read = read_deflate_response(agreed->response);
  FUZZ_CHECK(read && *read == p);
}

void inflation(std::string_view data, int window_bits, bool context_takeover) {
  auto inflater = std::make_unique<Inflater>(window_bits, context_takeover);
  Deflater deflater(window_bits, false);
  Inflater check(window_bits, false);
  std::string out, again, back;
  for (;;) {
    const std::size_t cut = data.find(std::string_view("\xff\x00", 2));
    const std::string_view message = data.substr(0, cut);
    const auto result = inflater->inflate(
        {reinterpret_cast<const std::uint8_t*>(message.data()), message.size()}, limit, out);
    if (result == Inflater::Result::ok) {
      FUZZ_CHECK(out.size() <= limit);
      again.clear();
      FUZZ_CHECK(deflater.compress(bytes_of(out), again));
      FUZZ_CHECK(check.inflate(bytes_of(again), limit, back) == Inflater::Result::ok && back == out);
    } else {
      inflater = std::make_unique<Inflater>(window_bits, context_takeover);  // the connection would end
    }
    if (cut == std::string_view::npos) return;
    data.remove_prefix(cut + 2);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t mode = data[0];
  const int window_bits = std::min(min_server_window_bits + (mode & 0x7), max_window_bits);
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode & 0x10) {
    inflation(rest, window_bits, mode & 0x08);
  } else {
    negotiation(rest, window_bits);
  }
  return 0;
}
