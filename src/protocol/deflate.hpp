// permessage-deflate (RFC 7692), I/O-free: the negotiation of one connection's parameters, and the
// zlib streams that compress and decompress its messages.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace stateroom::protocol {

/// Smallest and largest LZ77 window the server uses for its own messages. RFC 7692 allows 8, but
/// zlib's raw deflate cannot keep to a 256-byte window, so an offer that asks for it is declined.
inline constexpr int min_server_window_bits = 9;
inline constexpr int max_window_bits = 15;

/// What one connection agreed on. The server always compresses each of its messages on its own
/// (server_no_context_takeover): a broadcast is then compressed once for all its recipients, and a
/// connection holds no compressor of its own.
struct DeflateParams {
  /// The LZ77 window of the server's messages (9-15 bits).
  int server_window_bits = max_window_bits;
  /// The window the client may use (8-15 bits): what the decompressor must keep per connection.
  int client_window_bits = max_window_bits;
  /// Each client message is compressed on its own: decompressing it needs no state between
  /// messages, so the connection keeps none.
  bool client_no_context_takeover = false;

  friend bool operator==(const DeflateParams&, const DeflateParams&) = default;
};

/// The outcome of a negotiation: the parameters and the extension for the response's
/// Sec-WebSocket-Extensions.
struct DeflateAgreement {
  DeflateParams params;
  std::string response;
};

/// Reads the client's Sec-WebSocket-Extensions (every value of the header, joined by commas) and
/// accepts the first permessage-deflate offer the server can honour with windows of at most
/// `window_bits` (9-15). An offer with an unknown parameter, a repeated one or a value out of
/// range is declined (§7.1), as is one asking for a server window of 8 bits. When the client may
/// not be told a smaller window (its offer has no client_max_window_bits) and `window_bits` is
/// below 15, the response asks it to compress every message on its own instead, so that the
/// connection's memory stays bounded either way. Nothing when no offer is acceptable.
std::optional<DeflateAgreement> negotiate_deflate(std::string_view extensions, int window_bits);

/// The client's side: the offer it sends, and the parameters it reads from the server's response
/// (for clients such as the tests' and the load generator's). The offer lets the server choose
/// both windows and both context-takeover modes.
std::string deflate_offer();
/// The parameters of a server's response; nothing when it is not a valid answer to deflate_offer().
std::optional<DeflateParams> read_deflate_response(std::string_view extensions);

/// A raw-deflate compressor with a `window_bits` window at zlib level `level`.
class Deflater {
 public:
  /// `context_takeover`: each message may refer to those before it (a client that agreed to it);
  /// otherwise every message is compressed on its own.
  Deflater(int window_bits, bool context_takeover, int level = default_level);
  ~Deflater();
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;

  /// zlib's fastest level (Z_BEST_SPEED): a server's CPU is what it serves its rooms with. On
  /// JSON it compresses about as well as the default level 6 (5.1 % of the size against 4.4 % on
  /// Autobahn's JSON test data) in a third of the time.
  static constexpr int default_level = 1;

  /// Compresses `message` and appends it to `out` as a permessage-deflate payload (the final
  /// empty stored block's 00 00 FF FF removed, §7.2.1). False only when zlib fails (out of memory).
  bool compress(std::span<const std::uint8_t> message, std::string& out);

 private:
  struct Stream;
  std::unique_ptr<Stream> stream_;
  bool context_takeover_;
};

/// A raw-deflate decompressor for one sender's messages.
class Inflater {
 public:
  /// `window_bits` is the largest window the sender may use (8-15); `context_takeover` says
  /// whether a message may refer to those before it.
  Inflater(int window_bits, bool context_takeover);
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  enum class Result : std::uint8_t {
    ok,
    too_big,  ///< it inflates past the limit: stopped there, however small it was compressed
    corrupt,  ///< not a valid deflate stream
  };
  /// Decompresses one message's payload into `out` (replacing its contents), stopping as soon as
  /// it would exceed `limit` bytes. After too_big or corrupt the stream's state is lost: the
  /// connection must end.
  Result inflate(std::span<const std::uint8_t> payload, std::size_t limit, std::string& out);

  /// Bytes of memory zlib holds for this stream (its state and window), once it has been used.
  std::size_t memory() const noexcept;

 private:
  struct Stream;
  std::unique_ptr<Stream> stream_;
  bool context_takeover_;
};

/// The compressors a thread needs for messages of every connection it serves: one per window size
/// in use (made on first need), each resetting between messages.
class MessageDeflaters {
 public:
  MessageDeflaters();
  ~MessageDeflaters();
  /// Compresses `message` for a `window_bits` window (9-15) into `out` (replacing its contents).
  bool compress(int window_bits, std::span<const std::uint8_t> message, std::string& out);

 private:
  std::array<std::unique_ptr<Deflater>, max_window_bits - min_server_window_bits + 1> deflaters_;
};

}  // namespace stateroom::protocol
