#include "frame.hpp"

#include <cstring>

namespace stateroom::protocol {

std::size_t write_header(std::uint8_t* out, const FrameHeader& h) noexcept {
  std::size_t n = 0;
  out[n++] = static_cast<std::uint8_t>((h.fin ? 0x80 : 0) | (h.rsv1 ? 0x40 : 0) | static_cast<std::uint8_t>(h.opcode));
  const std::uint8_t mask_bit = h.mask ? 0x80 : 0;
  if (h.payload_size < 126) {
    out[n++] = static_cast<std::uint8_t>(mask_bit | h.payload_size);
  } else if (h.payload_size <= 0xFFFF) {
    out[n++] = mask_bit | 126;
    out[n++] = static_cast<std::uint8_t>(h.payload_size >> 8);
    out[n++] = static_cast<std::uint8_t>(h.payload_size);
  } else {
    out[n++] = mask_bit | 127;
    for (int shift = 56; shift >= 0; shift -= 8) out[n++] = static_cast<std::uint8_t>(h.payload_size >> shift);
  }
  if (h.mask) {
    std::memcpy(out + n, h.mask, 4);
    n += 4;
  }
  return n;
}

std::size_t apply_mask(std::span<std::uint8_t> data, const std::uint8_t mask[4], std::size_t offset) noexcept {
  offset &= 3;
  // The mask turned to start at `offset`, as 4 and 8 bytes: whole words are XORed at once (the
  // byte order does not matter, since data and mask are loaded the same way).
  const std::uint8_t turned[4] = {mask[offset], mask[(offset + 1) & 3], mask[(offset + 2) & 3], mask[(offset + 3) & 3]};
  std::uint32_t mask32;
  std::memcpy(&mask32, turned, 4);
  const std::uint64_t mask64 = (std::uint64_t{mask32} << 32) | mask32;
  std::uint8_t* p = data.data();
  std::size_t size = data.size();
  for (; size >= 8; p += 8, size -= 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    word ^= mask64;
    std::memcpy(p, &word, 8);
  }
  if (size >= 4) {
    std::uint32_t word;
    std::memcpy(&word, p, 4);
    word ^= mask32;
    std::memcpy(p, &word, 4);
    p += 4;
    size -= 4;
  }
  for (std::size_t i = 0; i < size; ++i) p[i] ^= turned[i];
  return (offset + data.size()) & 3;
}

std::size_t write_close_payload(std::uint8_t* out, std::uint16_t code, std::string_view reason) noexcept {
  if (code == 0) return 0;
  out[0] = static_cast<std::uint8_t>(code >> 8);
  out[1] = static_cast<std::uint8_t>(code);
  std::size_t size = reason.size() < max_control_payload - 2 ? reason.size() : max_control_payload - 2;
  // Cut at a character boundary: never before a continuation byte.
  if (size < reason.size())
    while (size > 0 && (static_cast<std::uint8_t>(reason[size]) & 0xC0) == 0x80) --size;
  if (size) std::memcpy(out + 2, reason.data(), size);
  return 2 + size;
}

}  // namespace stateroom::protocol
