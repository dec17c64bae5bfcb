#include "websocket_session_impl.hpp"

namespace stateroom::server {

void Worker::cork(std::shared_ptr<Corked> session) {
  if (corked.empty()) {
    boost::asio::post(ioc, [this] {
      flushing.swap(corked);
      for (auto& s : flushing) s->flush();
      flushing.clear();
    });
  }
  corked.push_back(std::move(session));
}

template class BasicWebSocketSession<boost::asio::ip::tcp::socket>;

}  // namespace stateroom::server
