// GuestMemory: a guest's linear memory, as the host reads and writes it between and during calls.
#pragma once

#include <cstdint>

#include "wasmtime_util.hpp"

namespace stateroom::wasm::detail {

/// Where a guest's memory lies and how far it reaches. The memory never moves (the engine forbids
/// it) and only grows: the size last read is a lower bound, read again only when a range reaches
/// past it.
class GuestMemory {
 public:
  /// Once the instance exists: its exported memory.
  void bind(wasmtime_context_t* context, const wasmtime_memory_t& memory) noexcept {
    memory_ = memory;
    base_ = wasmtime_memory_data(context, &memory_);
    size_ = wasmtime_memory_data_size(context, &memory_);
  }

  /// `len` bytes of guest memory at `ptr`, or null when they are not all inside it.
  std::uint8_t* at(wasmtime_context_t* context, std::uint32_t ptr, std::uint32_t len) noexcept {
    const std::uint64_t end = static_cast<std::uint64_t>(ptr) + len;
    if (end > size_) {
      size_ = wasmtime_memory_data_size(context, &memory_);
      if (end > size_) return nullptr;
    }
    return base_ + ptr;
  }

  /// Its size now, in bytes (for messages).
  std::uint64_t size(wasmtime_context_t* context) const noexcept {
    return wasmtime_memory_data_size(context, &memory_);
  }

  const wasmtime_memory_t& handle() const noexcept { return memory_; }

 private:
  wasmtime_memory_t memory_{};
  std::uint8_t* base_ = nullptr;  ///< where the memory lies: it never moves
  std::uint64_t size_ = 0;        ///< its size when last read (it only grows)
};

}  // namespace stateroom::wasm::detail
