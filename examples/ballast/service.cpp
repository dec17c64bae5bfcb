// ballast: a room that holds as much state as it is asked to, for measuring and testing persistence
// with big rooms (bench/state-stall). Every command is answered to its sender only:
//
//   grow N     the ballast becomes N MiB (0 to 1024) of pseudo-random, incompressible bytes from a
//              xorshift generator seeded by a counter kept in the state, so it is deterministic;
//              replies `size N`
//   increment  ++count; replies `count: X`
//   touch K    changes one byte in each of K pages (4 KiB apart, round-robin through the ballast, the
//              position kept in the state), ++count; replies `count: X`
//   check      `ok SIZE COUNT` (SIZE in MiB) when the bytes still add up to the checksum kept with
//              them (set by `grow`, updated by every `touch`), else `bad`
//
// Anything else is ignored. With a state directory (--state-dir) all of it survives hibernation and
// restarts: natively through snapshot() and restore(), as WebAssembly without them (the host keeps
// the module's memory), so a room that comes back wrong answers `check` with `bad` (or a count that
// went back).
#include <stateroom/service.hpp>

#include <charconv>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

using namespace stateroom;

struct Ballast : Service {
  static constexpr std::size_t mib = std::size_t{1} << 20;
  static constexpr std::size_t page = 4096;

  struct Header {
    std::uint64_t count = 0;       ///< `increment`s and `touch`es
    std::uint64_t generation = 0;  ///< `grow`s: seeds the generator
    std::uint64_t cursor = 0;      ///< touches made since the last `grow`: where the next one goes
    std::uint64_t checksum = 0;    ///< of the ballast's bytes, kept up to date with every change
  } h;
  std::vector<std::uint8_t> ballast;  // a multiple of 1 MiB, so of 8 bytes

  // Each 8-byte word times an odd weight (2w + 1), summed: a change to any one word changes the sum.
  std::uint64_t word(std::size_t w) const {
    std::uint64_t v;
    std::memcpy(&v, ballast.data() + 8 * w, 8);
    return v;
  }
  std::uint64_t checksum() const {
    std::uint64_t sum = 0;
    for (std::size_t w = 0; w < ballast.size() / 8; ++w) sum += word(w) * (2 * w + 1);
    return sum;
  }

  void grow(std::size_t n) {
    ballast.clear();
    ballast.shrink_to_fit();  // not two ballasts at once
    ballast.resize(n * mib);
    std::uint64_t x = ++h.generation * 0x9E3779B97F4A7C15ull;  // xorshift64: never 0
    for (std::size_t i = 0; i < ballast.size(); i += 8) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      std::memcpy(ballast.data() + i, &x, 8);
    }
    h.cursor = 0;
    h.checksum = checksum();
  }

  void touch(std::uint64_t k) {
    const std::size_t pages = ballast.size() / page;
    for (; pages && k; --k, ++h.cursor) {
      // Page cursor % pages, at an offset in it that moves on with each round through the ballast.
      const std::size_t at = h.cursor % pages * page + h.cursor / pages % page;
      const std::uint64_t before = word(at / 8);
      ++ballast[at];
      h.checksum += (word(at / 8) - before) * (2 * (at / 8) + 1);
    }
    ++h.count;
  }

  static bool number(std::string_view s, std::uint64_t& n) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    return ec == std::errc{} && end == s.data() + s.size();
  }

  void message(ClientId client, const MessagePayload& msg, Context& ctx) override {
    const auto text = msg.text();
    if (!text) return;
    std::uint64_t n = 0;
    if (text->starts_with("grow ") && number(text->substr(5), n) && n <= 1024) {
      grow(n);
      ctx.send(client, "size " + std::to_string(n));
    } else if (*text == "increment") {
      ++h.count;
      ctx.send(client, "count: " + std::to_string(h.count));
    } else if (text->starts_with("touch ") && number(text->substr(6), n)) {
      touch(n);
      ctx.send(client, "count: " + std::to_string(h.count));
    } else if (*text == "check") {
      ctx.send(client, checksum() != h.checksum ? std::string("bad")
                                                : "ok " + std::to_string(ballast.size() / mib) + " " +
                                                      std::to_string(h.count));
    }  // anything else is ignored
  }

  // The header, then the ballast's bytes.
  std::vector<std::byte> snapshot() override {
    std::vector<std::byte> state(sizeof h + ballast.size());
    std::memcpy(state.data(), &h, sizeof h);
    if (!ballast.empty()) std::memcpy(state.data() + sizeof h, ballast.data(), ballast.size());
    return state;
  }
  bool restore(std::span<const std::byte> state, Context&) override {
    if (state.size() < sizeof h || (state.size() - sizeof h) % mib != 0) return false;
    std::memcpy(&h, state.data(), sizeof h);
    ballast.resize(state.size() - sizeof h);
    if (!ballast.empty()) std::memcpy(ballast.data(), state.data() + sizeof h, ballast.size());
    return true;
  }
};

STATEROOM_SERVICE(Ballast)
