// UpgradeRequest: a WebSocket upgrade request as Beast read it, seen through the public
// ConnectionRequest (what ServiceFactory::admit and the Gate look at). Builds nothing up front:
// the address is formatted only when asked for.
#pragma once

#include <array>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <string_view>

#include "admission.hpp"
#include "stateroom/service.hpp"

namespace stateroom::server {

class UpgradeRequest final : public ConnectionRequest {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;

  /// Views of its arguments, which must outlive it.
  UpgradeRequest(const Request& request, std::string_view room_id, const PeerAddress& peer) noexcept
      : request_(request),
        target_(request.target().data(), request.target().size()),
        room_id_(room_id),
        peer_(peer) {}

  std::string_view room_id() const noexcept override { return room_id_; }
  std::string_view path() const noexcept override { return target_.substr(0, target_.find('?')); }
  std::string_view query() const noexcept override {
    const std::size_t mark = target_.find('?');
    return mark == std::string_view::npos ? std::string_view() : target_.substr(mark + 1);
  }
  std::string_view header(std::string_view name) const noexcept override {
    const auto value = request_[boost::beast::string_view(name.data(), name.size())];
    return {value.data(), value.size()};
  }
  std::string_view remote_address() const noexcept override {
    if (address_.empty()) address_ = format_peer_address(peer_, address_buffer_);
    return address_;
  }

 private:
  const Request& request_;
  std::string_view target_;
  std::string_view room_id_;
  const PeerAddress& peer_;
  mutable std::array<char, 46> address_buffer_{};
  mutable std::string_view address_;
};

}  // namespace stateroom::server
