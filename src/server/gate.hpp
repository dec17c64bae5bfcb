// Gate: what a WebSocket upgrade must show before it is let in, checked in this order: an allowed
// Origin (ServerOptions::allowed_origins), a valid room token (auth_token_secret), and the service
// factory's own verdict (ServiceFactory::admit). Works on the public ConnectionRequest, so it
// serves native and WebAssembly rooms alike and is tested without sockets.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stateroom/server.hpp"

namespace stateroom::server {

class RefusalLog;

/// `origin` as the gate compares it: in lower case, without the default port of http (80) or
/// https (443). Nothing when it is not `scheme://host[:port]`.
std::optional<std::string> normalize_origin(std::string_view origin);

/// The token an upgrade carries: an `Authorization: Bearer` header's, else the query's
/// `token=` (percent-decoded); empty when there is neither.
std::string token_of(const ConnectionRequest& request);

/// Seconds since the epoch, now.
std::int64_t unix_time() noexcept;

class Gate {
 public:
  /// Takes the checks from `options`, reporting refusals to `log` (if any); one line saying what
  /// is wrong when they cannot be used.
  std::optional<std::string> configure(const ServerOptions& options, RefusalLog* log);

  /// The verdict on `request` at `now` (unix seconds): the first check that refuses it, else
  /// `factory.admit`'s. Thread-safe.
  Verdict check(const ConnectionRequest& request, ServiceFactory& factory,
                std::int64_t now = unix_time()) const;

 private:
  bool origin_allowed(std::string_view origin) const;

  bool check_origin_ = false;
  bool any_origin_ = false;
  std::vector<std::string> origins_;  ///< normalized
  std::string secret_;                ///< empty: no token needed
  RefusalLog* log_ = nullptr;
};

}  // namespace stateroom::server
