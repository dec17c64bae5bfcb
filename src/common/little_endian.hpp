// Little-endian fields of the snapshot formats (a room's, a WebAssembly guest's, a state file's).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace stateroom::detail {

/// Appends the low `bytes` bytes of `value` to `out` (a vector of std::byte or a std::string).
template <class Bytes>
void put_le(Bytes& out, std::uint64_t value, int bytes) {
  using Byte = typename Bytes::value_type;
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<Byte>(value >> (8 * i)));
}

/// Reads fields from the front of `in`; past its end a read gives 0 and `ok` turns false.
template <class Byte>
struct LittleEndianReader {
  std::span<const Byte> in;
  bool ok = true;

  std::uint64_t get(int bytes) {
    if (in.size() < static_cast<std::size_t>(bytes)) {
      ok = false;
      in = {};
      return 0;
    }
    std::uint64_t value = 0;
    for (int i = 0; i < bytes; ++i) value |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
    in = in.subspan(static_cast<std::size_t>(bytes));
    return value;
  }
};

}  // namespace stateroom::detail
