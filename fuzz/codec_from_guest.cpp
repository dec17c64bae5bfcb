// codec_from_guest: what a guest hands the host through stateroom_send (codec::MessageFromProcess,
// docs/wasm-abi.md), both ways, with the one codec the host and the guest SDK share.
//   1. The input decoded as the host decodes a guest's output: a success re-encodes to exactly the
//      input (one encoding per value), names a recipient kind the host knows, and its payload is a
//      view into the input and, as text, valid UTF-8; every shorter prefix is truncated and one byte
//      more is trailing.
//   2. An action built from the input and encoded as the guest SDK does: encoded_size bytes,
//      decoding back to the same action; text that is not UTF-8 is refused as invalid_utf8.
// (wasm_guest_output feeds such bytes to the host from a real guest in a real room.)
#include <fuzzer/FuzzedDataProvider.h>

#include <string>
#include <vector>

#include "common.hpp"
#include "stateroom/codec.hpp"

using namespace stateroom;
using codec::DecodeError;
using codec::MessageFromProcess;

namespace {

void decode_any(std::span<const std::uint8_t> input) {
  const auto d = codec::decode_from_process(input);
  if (!d.ok()) {
    FUZZ_CHECK(fuzz::is_decode_error(d.error));
    return;
  }
  const MessageFromProcess& m = d.value;
  FUZZ_CHECK(m.kind == MessageFromProcess::Kind::message || m.kind == MessageFromProcess::Kind::set_timer);
  FUZZ_CHECK(codec::encoded_size(m) == input.size());
  const std::string again = codec::encode(m);
  FUZZ_CHECK(again.size() == input.size());
  FUZZ_CHECK(std::equal(again.begin(), again.end(), reinterpret_cast<const char*>(input.data())));
  if (m.kind == MessageFromProcess::Kind::message) {
    const auto r = m.recipient.kind;
    FUZZ_CHECK(r == MessageRecipient::Kind::broadcast || r == MessageRecipient::Kind::client ||
               r == MessageRecipient::Kind::everyone_except);
    FUZZ_CHECK(m.payload.is_view());
    FUZZ_CHECK(fuzz::within(m.payload.bytes(), input));
    if (m.payload.is_text()) FUZZ_CHECK(fuzz::reference_utf8(m.payload.view()));
  }
  const std::size_t step = input.size() <= 64 ? 1 : input.size() / 32;
  for (std::size_t n = 0; n < input.size(); n += step)
    FUZZ_CHECK(codec::decode_from_process(input.first(n)).error == DecodeError::truncated);
  std::vector<std::uint8_t> longer(input.begin(), input.end());
  longer.push_back(0);
  FUZZ_CHECK(codec::decode_from_process(longer).error == DecodeError::trailing_bytes);
}

void encode_built(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  MessageFromProcess m;
  std::string payload;
  bool text = false;
  if (in.ConsumeBool()) {
    m.kind = MessageFromProcess::Kind::set_timer;
    m.ms_delay = in.ConsumeIntegral<std::uint32_t>();
  } else {
    m.kind = MessageFromProcess::Kind::message;
    m.recipient.kind = static_cast<MessageRecipient::Kind>(in.ConsumeIntegralInRange<int>(0, 2));
    if (m.recipient.kind != MessageRecipient::Kind::broadcast) m.recipient.id = ClientId{in.ConsumeIntegral<std::uint32_t>()};
    text = in.ConsumeBool();
    payload = in.ConsumeRemainingBytesAsString();
    m.payload = MessagePayload::of_kind(text ? PayloadKind::text : PayloadKind::binary, payload);
  }
  const std::string encoded = codec::encode(m);
  FUZZ_CHECK(encoded.size() == codec::encoded_size(m));
  const auto d = codec::decode_from_process(fuzz::bytes_of(encoded));
  if (text && !fuzz::reference_utf8(payload)) {
    FUZZ_CHECK(d.error == DecodeError::invalid_utf8);
    return;
  }
  FUZZ_CHECK(d.ok());
  FUZZ_CHECK(d.value == m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  decode_any({data, size});
  encode_built(data, size);
  return 0;
}
