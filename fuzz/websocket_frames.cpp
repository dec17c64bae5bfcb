// websocket_frames: the I/O-free WebSocket frame parser (src/protocol/parser.hpp), server side and
// client side, with the frame writer of frame.hpp.
//
// The input's first four bytes choose the connection: byte 0 its side (bit 0: client side, frames
// unmasked; else server side, frames masked), bit 1 allow_rsv1, bit 2 the mode below; bytes 1-2
// max_message_size (0 to 65535); byte 3 seeds the random splits. The rest is, by mode:
//   raw         the bytes of a stream from the peer;
//   structured  a list of frames to send (messages, fragmented, with control frames between their
//               fragments; pings, pongs, a close), written with write_header, apply_mask and
//               write_close_payload.
// The stream is parsed twice: whole in one input, and in random splits (inside headers, masks,
// UTF-8 characters). Both runs must give the same events. Every event must hold what parser.hpp
// promises: a message is at most max_message_size, text (uncompressed) is valid UTF-8, RSV1 only
// when allowed, control payloads at most 125 bytes, a close code valid on the wire (or 1005 without
// one) and its reason UTF-8, an error is 1002, 1007 or 1009 with a reason, need_more only once the
// input is used up, and after close or error the parser answers the same again. In structured
// mode the events must be the frames that were written: the messages reassembled, in order, up to
// the first one that is invalid (text that is not UTF-8, too big, a close reason that is not UTF-8),
// which must fail the connection with 1007 or 1009.
#include <fuzzer/FuzzedDataProvider.h>

#include <array>
#include <string>
#include <vector>

#include "common.hpp"
#include "protocol/frame.hpp"
#include "protocol/parser.hpp"

using namespace stateroom;
using namespace stateroom::protocol;

namespace {

/// An event with its payload copied (the parser's views last until its next call).
struct Seen {
  Event::Kind kind;
  Opcode opcode = Opcode::text;
  bool compressed = false;
  std::string payload;
  std::uint16_t code = 0;
  std::string reason;
  friend bool operator==(const Seen&, const Seen&) = default;
};

/// xorshift32: the split lengths, reproducible from the input.
struct Splits {
  std::uint32_t state;
  std::size_t next(std::size_t left) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    // Mostly short pieces (inside headers, masks and characters), sometimes long ones.
    const std::size_t n = (state & 0x100) ? (state % 4096) + 1 : (state % 7) + 1;
    return n < left ? n : left;
  }
};

void check_event(const Event& e, const ParserOptions& options, std::span<const std::uint8_t> rest) {
  switch (e.kind) {
    case Event::Kind::need_more:
      FUZZ_CHECK(rest.empty());
      break;
    case Event::Kind::message:
      FUZZ_CHECK(e.opcode == Opcode::text || e.opcode == Opcode::binary);
      FUZZ_CHECK(e.payload.size() <= options.max_message_size);
      FUZZ_CHECK(!e.compressed || options.allow_rsv1);
      if (e.opcode == Opcode::text && !e.compressed) FUZZ_CHECK(fuzz::reference_utf8(e.payload));
      break;
    case Event::Kind::ping:
    case Event::Kind::pong:
      FUZZ_CHECK(e.payload.size() <= max_control_payload);
      break;
    case Event::Kind::close:
      FUZZ_CHECK(e.close_code == static_cast<std::uint16_t>(CloseCode::no_status) ? e.reason.empty()
                                                                                   : is_valid_close_code(e.close_code));
      FUZZ_CHECK(e.reason.size() <= max_control_payload - 2);
      FUZZ_CHECK(fuzz::reference_utf8(e.reason));
      break;
    case Event::Kind::error:
      FUZZ_CHECK(e.close_code == 1002 || e.close_code == 1007 || e.close_code == 1009);
      FUZZ_CHECK(!e.reason.empty());
      break;
  }
}

Seen copy(const Event& e) {
  return {e.kind, e.opcode, e.compressed, std::string(reinterpret_cast<const char*>(e.payload.data()), e.payload.size()),
          e.close_code, std::string(e.reason)};
}

/// Parses `stream` in pieces (all of it at once when `splits` is null); the events but need_more.
std::vector<Seen> parse(const ParserOptions& options, std::vector<std::uint8_t> stream, Splits* splits) {
  Parser parser(options);
  std::vector<Seen> seen;
  std::size_t at = 0;
  while (at < stream.size()) {
    const std::size_t n = splits ? splits->next(stream.size() - at) : stream.size() - at;
    std::span<std::uint8_t> input(stream.data() + at, n);
    for (;;) {
      const std::size_t before = input.size();
      const Event e = parser.next(input);
      FUZZ_CHECK(input.size() <= before);
      check_event(e, options, input);
      FUZZ_CHECK(parser.buffered() <= options.max_message_size);
      if (e.kind == Event::Kind::need_more) break;
      seen.push_back(copy(e));
      if (e.kind == Event::Kind::close || e.kind == Event::Kind::error) {
        // Terminal: the same answer again, whatever comes next.
        std::array<std::uint8_t, 2> more{0x81, 0x00};
        std::span<std::uint8_t> after(more);
        FUZZ_CHECK(copy(parser.next(after)) == seen.back());
        return seen;
      }
    }
    at += n;
  }
  return seen;
}

// --- structured mode: frames written with the frame layer's own writer ------------------------------

struct Writer {
  bool masked;
  std::array<std::uint8_t, 4> mask;
  std::vector<std::uint8_t> out;

  void frame(Opcode op, bool fin, bool rsv1, std::string_view payload) {
    std::uint8_t header[max_header_size];
    const FrameHeader h{op, payload.size(), fin, rsv1, masked ? mask.data() : nullptr};
    const std::size_t n = write_header(header, h);
    FUZZ_CHECK(n == header_size(payload.size(), masked));
    out.insert(out.end(), header, header + n);
    const std::size_t start = out.size();
    out.insert(out.end(), payload.begin(), payload.end());
    if (masked) {
      // Masked in two pieces, as a writer continuing a payload would: the offset carries over.
      std::span<std::uint8_t> data(out.data() + start, payload.size());
      const std::size_t cut = data.size() / 2;
      const std::size_t offset = apply_mask(data.first(cut), mask.data(), 0);
      FUZZ_CHECK(offset == cut % 4);
      apply_mask(data.subspan(cut), mask.data(), offset);
    }
  }
};

void structured(const ParserOptions& options, FuzzedDataProvider& in, std::uint32_t seed) {
  Writer w{options.expect_masked, {}, {}};
  const auto mask = in.ConsumeBytes<std::uint8_t>(4);
  std::copy(mask.begin(), mask.end(), w.mask.begin());
  std::vector<Seen> expected;
  bool invalid = false;  // the last frame written must fail the connection
  for (int ops = 0; ops < 12 && in.remaining_bytes() > 0 && !invalid; ++ops) {
    switch (in.ConsumeIntegralInRange(0, 3)) {
      case 0: {  // a message in 1 to 4 fragments, a ping or pong between them
        const bool text = in.ConsumeBool();
        const bool rsv1 = options.allow_rsv1 && in.ConsumeBool();
        const int fragments = in.ConsumeIntegralInRange(1, 4);
        std::string whole;
        std::vector<Seen> controls;
        bool too_big = false;
        for (int f = 0; f < fragments && !too_big; ++f) {
          const std::string piece = in.ConsumeRandomLengthString(300);
          const bool last = f == fragments - 1;
          w.frame(f == 0 ? (text ? Opcode::text : Opcode::binary) : Opcode::continuation, last, f == 0 && rsv1, piece);
          whole += piece;
          too_big = whole.size() > options.max_message_size;
          if (!last && !too_big && in.ConsumeBool()) {
            const std::string ping = in.ConsumeRandomLengthString(max_control_payload);
            w.frame(Opcode::ping, true, false, ping);
            controls.push_back({Event::Kind::ping, Opcode::text, false, ping, 0, {}});
          }
        }
        if (too_big || (text && !rsv1 && !fuzz::reference_utf8(whole))) {
          invalid = true;  // the pings before the failure may or may not be seen: stop comparing here
          break;
        }
        expected.insert(expected.end(), controls.begin(), controls.end());
        expected.push_back({Event::Kind::message, text ? Opcode::text : Opcode::binary, rsv1, whole, 0, {}});
        break;
      }
      case 1:
      case 2: {
        const bool ping = in.ConsumeBool();
        const std::string payload = in.ConsumeRandomLengthString(max_control_payload);
        w.frame(ping ? Opcode::ping : Opcode::pong, true, false, payload);
        expected.push_back({ping ? Event::Kind::ping : Event::Kind::pong, Opcode::text, false, payload, 0, {}});
        break;
      }
      case 3: {  // a close frame ends the stream
        std::uint16_t code = in.ConsumeIntegralInRange<std::uint16_t>(1000, 4999);
        if (!is_valid_close_code(code)) code = 1000;
        const std::string reason = in.ConsumeRandomLengthString(200);
        std::uint8_t payload[max_control_payload];
        const std::size_t n = write_close_payload(payload, code, reason);
        FUZZ_CHECK(n >= 2 && n <= max_control_payload);
        const std::string_view written(reinterpret_cast<const char*>(payload), n);
        FUZZ_CHECK(reason.starts_with(written.substr(2)));
        w.frame(Opcode::close, true, false, written);
        if (!fuzz::reference_utf8(written.substr(2))) {
          // Cut at a character boundary, so only a reason that was not UTF-8 is refused.
          FUZZ_CHECK(!fuzz::reference_utf8(reason));
          invalid = true;
          break;
        }
        expected.push_back({Event::Kind::close, Opcode::text, false, {}, code, std::string(written.substr(2))});
        ops = 12;
        break;
      }
    }
  }
  Splits splits{seed * 2654435761u | 1};
  for (Splits* s : {static_cast<Splits*>(nullptr), &splits}) {
    const std::vector<Seen> seen = parse(options, w.out, s);
    if (!invalid) {
      FUZZ_CHECK(seen == expected);
      continue;
    }
    // The valid frames, then the failure (pings written inside the failing message may come first).
    FUZZ_CHECK(seen.size() >= expected.size() + 1);
    FUZZ_CHECK(std::equal(expected.begin(), expected.end(), seen.begin()));
    for (std::size_t i = expected.size(); i + 1 < seen.size(); ++i) FUZZ_CHECK(seen[i].kind == Event::Kind::ping);
    FUZZ_CHECK(seen.back().kind == Event::Kind::error);
    FUZZ_CHECK(seen.back().code == 1007 || seen.back().code == 1009);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  ParserOptions options;
  options.expect_masked = !(data[0] & 1);
  options.allow_rsv1 = data[0] & 2;
  options.max_message_size = static_cast<std::uint64_t>(data[1]) << 8 | data[2];
  const std::uint32_t seed = data[3] + 1;
  if (data[0] & 4) {
    FuzzedDataProvider in(data + 4, size - 4);
    structured(options, in, seed);
    return 0;
  }
  const std::vector<std::uint8_t> stream(data + 4, data + size);
  Splits splits{seed * 2654435761u | 1};
  const auto whole = parse(options, stream, nullptr);
  const auto pieces = parse(options, stream, &splits);
  FUZZ_CHECK(whole == pieces);
  return 0;
}
