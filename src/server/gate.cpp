#include "gate.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstddef>
#include <utility>

#include "admission.hpp"
#include "routes.hpp"
#include "token.hpp"

namespace stateroom {

bool is_origin_entry(std::string_view entry) noexcept {
  try {
    return entry == "*" || server::normalize_origin(entry).has_value();
  } catch (...) {  // out of memory
    return false;
  }
}

namespace server {

namespace {

/// Shorter secrets can be found from one token by trying them all.
constexpr std::size_t min_secret_size = 16;

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool all_of(std::string_view s, bool (*pred)(char)) {
  for (const char c : s)
    if (!pred(c)) return false;
  return true;
}

Verdict token_verdict(TokenCheck check) {
  switch (check) {
    case TokenCheck::valid:
      break;
    case TokenCheck::missing:
      return Verdict::unauthorized("a token is required: connect with ?token=<token>");
    case TokenCheck::malformed:
      return Verdict::unauthorized("malformed token");
    case TokenCheck::bad_signature:
      return Verdict::forbidden("the token's signature does not match");
    case TokenCheck::expired:
      return Verdict::forbidden("the token has expired");
    case TokenCheck::wrong_room:
      return Verdict::forbidden("the token is for another room");
  }
  return Verdict::accept();
}

}  // namespace

std::optional<std::string> normalize_origin(std::string_view origin) {
  const std::size_t separator = origin.find("://");
  if (separator == std::string_view::npos || separator == 0) return std::nullopt;
  std::string out;
  out.reserve(origin.size());
  for (const char c : origin) out.push_back(lower(c));
  const std::string_view scheme = std::string_view(out).substr(0, separator);
  if (!is_alpha(scheme[0]) ||
      !all_of(scheme, [](char c) { return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.'; }))
    return std::nullopt;
  const std::string_view rest = std::string_view(out).substr(separator + 3);
  std::string_view host;
  std::string_view port;
  if (rest.starts_with('[')) {  // an IPv6 address
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos || close == 1) return std::nullopt;
    host = rest.substr(0, close + 1);
    port = rest.substr(close + 1);
    if (!all_of(host.substr(1, close - 1),
                [](char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || c == ':' || c == '.'; }))
      return std::nullopt;
  } else {
    const std::size_t colon = rest.find(':');
    host = rest.substr(0, colon);
    port = colon == std::string_view::npos ? std::string_view() : rest.substr(colon);
    if (host.empty() || !all_of(host, [](char c) {
          return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
        }))
      return std::nullopt;
  }
  if (!port.empty() &&
      (port.size() < 2 || port.size() > 6 || port[0] != ':' || !all_of(port.substr(1), is_digit)))
    return std::nullopt;
  if ((scheme == "http" && port == ":80") || (scheme == "https" && port == ":443"))
    out.resize(out.size() - port.size());
  return out;
}

std::string token_of(const ConnectionRequest& request) {
  const std::string_view authorization = request.header("Authorization");
  constexpr std::string_view bearer = "bearer ";
  if (authorization.size() > bearer.size()) {
    bool is_bearer = true;
    for (std::size_t i = 0; i < bearer.size(); ++i)
      is_bearer = is_bearer && lower(authorization[i]) == bearer[i];
    if (is_bearer) {
      std::string_view token = authorization.substr(bearer.size());
      while (token.starts_with(' ')) token.remove_prefix(1);
      return std::string(token);
    }
  }
  for (std::string_view query = request.query(); !query.empty();) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    constexpr std::string_view key = "token=";
    if (pair.starts_with(key)) {
      const std::string_view raw = pair.substr(key.size());
      return percent_decode(raw).value_or(std::string(raw));  // a bad escape is then a malformed token
    }
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
  }
  return {};
}

std::int64_t unix_time() noexcept {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::optional<std::string> Gate::configure(const ServerOptions& options, RefusalLog* log) {
  log_ = log;
  any_origin_ = false;
  origins_.clear();
  for (const std::string& entry : options.allowed_origins) {
    if (entry == "*") {
      any_origin_ = true;
      continue;
    }
    auto normal = normalize_origin(entry);
    if (!normal) return fmt::format("'{}' is not an origin (scheme://host[:port], or * for any)", entry);
    origins_.push_back(std::move(*normal));
  }
  check_origin_ = !options.allowed_origins.empty() && !any_origin_;
  if (!options.auth_token_secret.empty() && options.auth_token_secret.size() < min_secret_size)
    return fmt::format("the auth token secret must be at least {} bytes (32 random bytes are best)",
                       min_secret_size);
  secret_ = options.auth_token_secret;
  return std::nullopt;
}

bool Gate::origin_allowed(std::string_view origin) const {
  const auto normal = normalize_origin(origin);
  if (!normal) return false;
  for (const std::string& allowed : origins_)
    if (*normal == allowed) return true;
  return false;
}

Verdict Gate::check(const ConnectionRequest& request, ServiceFactory& factory, std::int64_t now) const {
  auto refuse = [&](Refusal cause, Verdict verdict) {
    if (log_) {
      log_->report(cause, fmt::format("refused a connection from {} to room '{}': {}",
                                      request.remote_address(), request.room_id(), verdict.reason));
    }
    return verdict;
  };
  if (check_origin_) {
    // No Origin: not a browser, which could have sent any; the token (if any) still applies.
    const std::string_view origin = request.header("Origin");
    if (!origin.empty() && !origin_allowed(origin))
      return refuse(Refusal::origin, Verdict::forbidden(fmt::format("origin {} is not allowed", origin)));
  }
  if (!secret_.empty()) {
    const TokenCheck token = check_token(secret_, token_of(request), request.room_id(), now);
    if (token != TokenCheck::valid) return refuse(Refusal::token, token_verdict(token));
  }
  Verdict verdict = factory.admit(request);
  if (verdict.accepted()) return verdict;
  if (verdict.reason.empty())
    verdict.reason = verdict.kind == Verdict::Kind::unauthorized ? "unauthorized" : "forbidden";
  return refuse(Refusal::refused_by_service, std::move(verdict));
}

}  // namespace server
}  // namespace stateroom
