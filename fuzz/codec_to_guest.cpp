// codec_to_guest: the events the host hands a guest (codec::MessageToProcess, docs/wasm-abi.md), both
// ways, with the one codec the host and the guest SDK share.
//   1. The input decoded as an event (as a guest's SDK decodes it): a success re-encodes to exactly
//      the input (one encoding per value), its payload is a view into the input and, as text, valid
//      UTF-8; every shorter prefix is truncated and one byte more is trailing.
//   2. An event built from the input and encoded as the host does (encode_to, and encode_message_to
//      for messages): encoded_size bytes, decoding back to the same event; text that is not UTF-8 is
//      refused as invalid_utf8 and as nothing else.
#include <fuzzer/FuzzedDataProvider.h>

#include <string>
#include <vector>

#include "common.hpp"
#include "stateroom/codec.hpp"

using namespace stateroom;
using codec::DecodeError;
using codec::MessageToProcess;

namespace {

void decode_any(std::span<const std::uint8_t> input) {
  const auto d = codec::decode_to_process(input);
  if (!d.ok()) {
    FUZZ_CHECK(fuzz::is_decode_error(d.error));
    return;
  }
  const MessageToProcess& m = d.value;
  FUZZ_CHECK(static_cast<std::uint32_t>(m.kind) <= 4);
  FUZZ_CHECK(codec::encoded_size(m) == input.size());
  const std::string again = codec::encode(m);
  FUZZ_CHECK(again.size() == input.size());
  FUZZ_CHECK(std::equal(again.begin(), again.end(), reinterpret_cast<const char*>(input.data())));
  if (m.kind == MessageToProcess::Kind::message) {
    FUZZ_CHECK(m.payload.is_view());
    FUZZ_CHECK(fuzz::within(m.payload.bytes(), input));
    if (m.payload.is_text()) FUZZ_CHECK(fuzz::reference_utf8(m.payload.view()));
  }
  // Every prefix ends inside a field; the whole input and one more byte leaves a byte over.
  const std::size_t step = input.size() <= 64 ? 1 : input.size() / 32;
  for (std::size_t n = 0; n < input.size(); n += step)
    FUZZ_CHECK(codec::decode_to_process(input.first(n)).error == DecodeError::truncated);
  std::vector<std::uint8_t> longer(input.begin(), input.end());
  longer.push_back(0);
  FUZZ_CHECK(codec::decode_to_process(longer).error == DecodeError::trailing_bytes);
}

void encode_built(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  MessageToProcess m;
  m.kind = static_cast<MessageToProcess::Kind>(in.ConsumeIntegralInRange<std::uint32_t>(0, 4));
  const bool has_client = m.kind == MessageToProcess::Kind::connect || m.kind == MessageToProcess::Kind::disconnect ||
                          m.kind == MessageToProcess::Kind::message;
  if (has_client) m.client = ClientId{in.ConsumeIntegral<std::uint32_t>()};
  std::string payload;
  const bool text = in.ConsumeBool();
  if (m.kind == MessageToProcess::Kind::message) {
    payload = in.ConsumeRemainingBytesAsString();
    m.payload = MessagePayload::of_kind(text ? PayloadKind::text : PayloadKind::binary, payload);
  }

  const std::string encoded = codec::encode(m);
  FUZZ_CHECK(encoded.size() == codec::encoded_size(m));
  if (m.kind == MessageToProcess::Kind::message) {
    // The host's direct writer gives the same bytes.
    FUZZ_CHECK(codec::encoded_message_size(m.payload) == encoded.size());
    std::string direct(codec::encoded_message_size(m.payload), '\0');
    codec::encode_message_to(m.client, m.payload, reinterpret_cast<std::uint8_t*>(direct.data()));
    FUZZ_CHECK(direct == encoded);
  }
  const auto d = codec::decode_to_process(fuzz::bytes_of(encoded));
  if (m.kind == MessageToProcess::Kind::message && text && !fuzz::reference_utf8(payload)) {
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
