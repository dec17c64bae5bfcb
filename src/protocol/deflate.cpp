#include "deflate.hpp"

#include <zlib.h>

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

namespace stateroom::protocol {

namespace {

/// The empty stored block a sync flush ends with; the sender removes it and the receiver puts it
/// back (RFC 7692 §7.2.1, §7.2.2).
constexpr std::array<std::uint8_t, 4> flush_tail{0x00, 0x00, 0xFF, 0xFF};

/// zlib's memLevel: its default, 128 KiB of hash and match state per compressor.
constexpr int mem_level = 8;

/// How much a decompressed message grows at a time.
constexpr std::size_t inflate_step = 16 * 1024;

// --- the Sec-WebSocket-Extensions grammar (RFC 6455 §9.1, RFC 9110 §5.6) ---------------------------
// extension-list = 1#( token *( ";" param ) ); param = token [ "=" ( token / quoted-string ) ].
// (Beast's http::ext_list drops the parameters of the offers after a parameter without a value,
// so the few lines are written here.)

bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

/// `s` cut at every `separator` outside a quoted string.
std::vector<std::string_view> split(std::string_view s, char separator) {
  std::vector<std::string_view> parts;
  bool quoted = false;
  std::size_t begin = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (quoted && s[i] == '\\') {
      ++i;  // an escaped character, whatever it is
    } else if (s[i] == '"') {
      quoted = !quoted;
    } else if (!quoted && s[i] == separator) {
      parts.push_back(s.substr(begin, i - begin));
      begin = i + 1;
    }
  }
  parts.push_back(s.substr(begin));
  return parts;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

/// One extension of the list: its name and its parameters (a quoted value without its quotes).
struct Extension {
  std::string_view name;
  std::vector<std::pair<std::string_view, std::string_view>> params;
};

/// The extensions of a header value; an element that breaks the grammar is left out (it cannot
/// be an offer the server accepts), empty elements are skipped (§5.6.1).
std::vector<Extension> parse_extensions(std::string_view header) {
  std::vector<Extension> out;
  for (const std::string_view element : split(header, ',')) {
    if (trim(element).empty()) continue;
    const auto pieces = split(element, ';');
    Extension ext{trim(pieces[0]), {}};
    bool valid = is_token(ext.name);
    for (std::size_t i = 1; i < pieces.size() && valid; ++i) {
      const std::string_view piece = trim(pieces[i]);
      const std::size_t eq = piece.find('=');
      const std::string_view name = trim(piece.substr(0, eq));
      std::string_view value;
      if (eq != std::string_view::npos) {
        value = trim(piece.substr(eq + 1));
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
          value = value.substr(1, value.size() - 2);
          valid = value.find_first_of("\\\"") == std::string_view::npos;  // no escapes in a number
        } else {
          valid = is_token(value);
        }
      }
      valid = valid && is_token(name);
      ext.params.emplace_back(name, value);
    }
    if (valid) out.push_back(std::move(ext));
  }
  return out;
}

/// A window size parameter's value: 8-15; -1 otherwise.
int window_bits_value(std::string_view value) {
  if (value.empty() || value.size() > 2) return -1;
  int bits = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return -1;
    bits = bits * 10 + (c - '0');
  }
  if (value.size() == 2 && value[0] == '0') return -1;  // no leading zeros
  return bits >= 8 && bits <= max_window_bits ? bits : -1;
}

/// One permessage-deflate offer's parameters (RFC 7692 §7.1); nothing when the offer must be
/// declined.
struct Offer {
  bool server_no_context_takeover = false;
  bool client_no_context_takeover = false;
  int server_max_window_bits = 0;  ///< 0: not given
  int client_max_window_bits = 0;  ///< 0: not given; -1: given without a value
};

std::optional<Offer> read_offer(const Extension& ext) {
  Offer offer;
  bool seen_server_nct = false, seen_client_nct = false;
  for (const auto& [name, value] : ext.params) {
    if (iequals(name, "server_no_context_takeover")) {
      if (seen_server_nct || !value.empty()) return std::nullopt;
      seen_server_nct = offer.server_no_context_takeover = true;
    } else if (iequals(name, "client_no_context_takeover")) {
      if (seen_client_nct || !value.empty()) return std::nullopt;
      seen_client_nct = offer.client_no_context_takeover = true;
    } else if (iequals(name, "server_max_window_bits")) {
      if (offer.server_max_window_bits != 0) return std::nullopt;
      offer.server_max_window_bits = window_bits_value(value);  // a value is required
      if (offer.server_max_window_bits < 0) return std::nullopt;
    } else if (iequals(name, "client_max_window_bits")) {
      if (offer.client_max_window_bits != 0) return std::nullopt;
      if (value.empty()) {
        offer.client_max_window_bits = -1;
      } else {
        offer.client_max_window_bits = window_bits_value(value);
        if (offer.client_max_window_bits < 0) return std::nullopt;
      }
    } else {
      return std::nullopt;  // a parameter this server does not know
    }
  }
  return offer;
}

}  // namespace

std::optional<DeflateAgreement> negotiate_deflate(std::string_view extensions, int window_bits) {
  window_bits = std::clamp(window_bits, min_server_window_bits, max_window_bits);
  for (const Extension& ext : parse_extensions(extensions)) {
    if (!iequals(ext.name, "permessage-deflate")) continue;
    const auto offer = read_offer(ext);
    if (!offer) continue;
    if (offer->server_max_window_bits == 8) continue;  // zlib cannot keep to it
    DeflateAgreement agreed;
    DeflateParams& p = agreed.params;
    std::string& r = agreed.response;
    r = "permessage-deflate; server_no_context_takeover";
    p.server_window_bits =
        offer->server_max_window_bits ? std::min(window_bits, offer->server_max_window_bits) : window_bits;
    if (offer->server_max_window_bits || p.server_window_bits < max_window_bits)
      r += "; server_max_window_bits=" + std::to_string(p.server_window_bits);
    if (offer->client_max_window_bits != 0) {
      const int offered = offer->client_max_window_bits > 0 ? offer->client_max_window_bits : max_window_bits;
      p.client_window_bits = std::min(window_bits, offered);
      r += "; client_max_window_bits=" + std::to_string(p.client_window_bits);
    } else {
      // The client will use up to 15 bits and may not be told otherwise: if that is more than
      // the server keeps per connection, it compresses each message on its own instead.
      p.client_window_bits = max_window_bits;
      if (window_bits < max_window_bits) p.client_no_context_takeover = true;
    }
    if (offer->client_no_context_takeover) p.client_no_context_takeover = true;
    if (p.client_no_context_takeover) r += "; client_no_context_takeover";
    return agreed;
  }
  return std::nullopt;
}

std::string deflate_offer() {
  return "permessage-deflate; client_max_window_bits";
}

std::optional<DeflateParams> read_deflate_response(std::string_view extensions) {
  std::optional<DeflateParams> agreed;
  for (const Extension& ext : parse_extensions(extensions)) {
    if (!iequals(ext.name, "permessage-deflate") || agreed) return std::nullopt;  // one, and only it
    const auto offer = read_offer(ext);
    if (!offer || offer->client_max_window_bits == -1) return std::nullopt;  // a response gives values
    DeflateParams p;
    p.server_window_bits = offer->server_max_window_bits ? offer->server_max_window_bits : max_window_bits;
    p.client_window_bits = offer->client_max_window_bits ? offer->client_max_window_bits : max_window_bits;
    p.client_no_context_takeover = offer->client_no_context_takeover;
    agreed = p;
  }
  return agreed;
}

// --- compressing ----------------------------------------------------------------------------------

struct Deflater::Stream {
  z_stream z{};
  bool ready = false;
};

Deflater::Deflater(int window_bits, bool context_takeover, int level)
    : stream_(std::make_unique<Stream>()), context_takeover_(context_takeover) {
  window_bits = std::clamp(window_bits, min_server_window_bits, max_window_bits);
  stream_->ready =
      deflateInit2(&stream_->z, level, Z_DEFLATED, -window_bits, mem_level, Z_DEFAULT_STRATEGY) == Z_OK;
}

Deflater::~Deflater() {
  if (stream_->ready) deflateEnd(&stream_->z);
}

bool Deflater::compress(std::span<const std::uint8_t> message, std::string& out) {
  if (!stream_->ready) return false;
  z_stream& z = stream_->z;
  const std::size_t start = out.size();
  z.next_in = const_cast<Bytef*>(message.data());
  z.avail_in = static_cast<uInt>(message.size());
  // A sync flush of n bytes fits in deflateBound(n) and the flush's few bytes; should zlib still
  // fill the buffer, it grows and zlib goes on.
  std::size_t room = deflateBound(&z, static_cast<uLong>(message.size())) + 16;
  int rc = Z_OK;
  do {
    const std::size_t have = out.size();
    out.resize(have + room);
    z.next_out = reinterpret_cast<Bytef*>(out.data() + have);
    z.avail_out = static_cast<uInt>(room);
    rc = deflate(&z, Z_SYNC_FLUSH);
    out.resize(have + (room - z.avail_out));
    room = 4096;
  } while (rc == Z_OK && z.avail_out == 0);
  const bool ok = (rc == Z_OK || rc == Z_BUF_ERROR) && z.avail_in == 0 && out.size() - start >= flush_tail.size() &&
                  std::equal(flush_tail.begin(), flush_tail.end(), out.end() - flush_tail.size(),
                             [](std::uint8_t a, char b) { return a == static_cast<std::uint8_t>(b); });
  if (!ok) {
    deflateReset(&z);
    out.resize(start);
    return false;
  }
  out.resize(out.size() - flush_tail.size());  // the flush ends with 00 00 FF FF: not sent
  if (!context_takeover_) deflateReset(&z);
  return true;
}

MessageDeflaters::MessageDeflaters() = default;
MessageDeflaters::~MessageDeflaters() = default;

bool MessageDeflaters::compress(int window_bits, std::span<const std::uint8_t> message, std::string& out) {
  window_bits = std::clamp(window_bits, min_server_window_bits, max_window_bits);
  auto& deflater = deflaters_[static_cast<std::size_t>(window_bits - min_server_window_bits)];
  if (!deflater) deflater = std::make_unique<Deflater>(window_bits, false);
  out.clear();
  return deflater->compress(message, out);
}

// --- decompressing --------------------------------------------------------------------------------

struct Inflater::Stream {
  z_stream z{};
  bool ready = false;
  int window_bits = max_window_bits;
};

Inflater::Inflater(int window_bits, bool context_takeover)
    : stream_(std::make_unique<Stream>()), context_takeover_(context_takeover) {
  stream_->window_bits = std::clamp(window_bits, 8, max_window_bits);
  stream_->ready = inflateInit2(&stream_->z, -stream_->window_bits) == Z_OK;
}

Inflater::~Inflater() {
  if (stream_->ready) inflateEnd(&stream_->z);
}

std::size_t Inflater::memory() const noexcept {
  // zlib's inflate state (about 7 KiB) and, once it has inflated anything, its window.
  return stream_->ready ? sizeof(z_stream) + 7 * 1024 + (std::size_t{1} << stream_->window_bits) : 0;
}

Inflater::Result Inflater::inflate(std::span<const std::uint8_t> payload, std::size_t limit, std::string& out) {
  out.clear();
  if (!stream_->ready) return Result::corrupt;
  limit = std::min(limit, std::numeric_limits<std::size_t>::max() - 1);
  z_stream& z = stream_->z;
  auto fail = [&](Result r) {
    inflateReset(&z);
    return r;
  };
  // The payload, then the tail the sender removed: two inputs, one stream.
  bool ended = false;  // a block with BFINAL set ended the stream
  for (const auto input : {payload, std::span<const std::uint8_t>(flush_tail)}) {
    z.next_in = const_cast<Bytef*>(input.data());
    z.avail_in = static_cast<uInt>(input.size());
    do {
      if (out.size() > limit) return fail(Result::too_big);
      // Room for at most one byte past the limit: enough to know it was exceeded, however well
      // the message was compressed.
      const std::size_t have = out.size();
      const std::size_t grow = std::min(inflate_step, limit + 1 - have);
      out.resize(have + grow);
      z.next_out = reinterpret_cast<Bytef*>(out.data() + have);
      z.avail_out = static_cast<uInt>(grow);
      const int rc = ::inflate(&z, Z_SYNC_FLUSH);
      out.resize(have + (grow - z.avail_out));
      if (rc == Z_STREAM_END) {
        ended = true;
        break;
      }
      if (rc == Z_BUF_ERROR) break;  // all of this input is in and nothing more is pending
      if (rc != Z_OK) return fail(Result::corrupt);
    } while (z.avail_in > 0 || z.avail_out == 0);
    if (out.size() > limit) return fail(Result::too_big);
    if (ended) {
      // Nothing may follow the final block but the tail.
      if (z.avail_in > 0 && input.data() == payload.data()) return fail(Result::corrupt);
      break;
    }
  }
  // Without context takeover, or after a final block, the next message starts a new stream.
  if (!context_takeover_ || ended) inflateReset(&z);
  return Result::ok;
}

}  // namespace stateroom::protocol
