#include "ws_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/http.hpp>
#include <stdexcept>

namespace stateroom::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::ip::tcp;

std::unique_ptr<WsClient> WsClient::connect(std::uint16_t port, const std::string& target,
                                            std::chrono::milliseconds timeout, int receive_buffer,
                                            const std::string& host, std::string* error) {
  return open(port, target, timeout, receive_buffer, host, error, nullptr);
}

std::unique_ptr<WsClient> WsClient::connect_compressed(std::uint16_t port, const std::string& target,
                                                       const websocket::permessage_deflate& deflate,
                                                       std::string* error) {
  return open(port, target, 5s, 0, "127.0.0.1", error, &deflate);
}

std::unique_ptr<WsClient> WsClient::open(std::uint16_t port, const std::string& target,
                                         std::chrono::milliseconds timeout, int receive_buffer,
                                         const std::string& host, std::string* error,
                                         const websocket::permessage_deflate* deflate) {
  std::unique_ptr<WsClient> c(new WsClient);
  if (deflate) c->ws_.set_option(*deflate);
  auto& socket = beast::get_lowest_layer(c->ws_).socket();
  const tcp::endpoint endpoint(asio::ip::make_address(host), port);
  beast::error_code ec;
  socket.open(endpoint.protocol(), ec);
  if (receive_buffer > 0) socket.set_option(asio::socket_base::receive_buffer_size(receive_buffer), ec);
  bool done = false;
  beast::get_lowest_layer(c->ws_).expires_after(timeout);
  socket.async_connect(endpoint, [&](beast::error_code e) {
    ec = e;
    done = true;
  });
  if (!c->run_until(done, timeout) || ec) {
    if (error) *error = ec ? ec.message() : "connect timed out";
    return nullptr;
  }
  done = false;
  beast::get_lowest_layer(c->ws_).expires_never();
  websocket::stream_base::timeout t{};
  t.handshake_timeout = timeout;
  t.idle_timeout = websocket::stream_base::none();
  c->ws_.set_option(t);
  websocket::response_type response;
  c->ws_.async_handshake(response, host + ":" + std::to_string(port), target, [&](beast::error_code e) {
    ec = e;
    done = true;
  });
  if (!c->run_until(done, timeout) || ec) {
    if (error)
      *error = (ec ? ec.message() : "handshake timed out") + " (HTTP " +
               std::to_string(response.result_int()) + ")";
    return nullptr;
  }
  const auto extensions = response[http::field::sec_websocket_extensions];
  c->extensions_.assign(extensions.data(), extensions.size());
  return c;
}

bool WsClient::run_until(bool& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done) {
    ioc_.restart();
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    ioc_.run_one_for(deadline - now);
  }
  return true;
}

void WsClient::write(const std::string& data, bool binary, std::chrono::milliseconds timeout) {
  ws_.binary(binary);
  bool done = false;
  beast::error_code ec;
  ws_.async_write(asio::buffer(data), [&](beast::error_code e, std::size_t) {
    ec = e;
    done = true;
  });
  if (!run_until(done, timeout)) throw std::runtime_error("write timed out");
  if (ec) throw std::runtime_error("write failed: " + ec.message());
}

void WsClient::send_text(const std::string& text, std::chrono::milliseconds timeout) {
  write(text, false, timeout);
}
void WsClient::send_binary(const std::string& bytes, std::chrono::milliseconds timeout) {
  write(bytes, true, timeout);
}

std::optional<Received> WsClient::read(std::chrono::milliseconds timeout) {
  if (!reading_) {
    reading_ = true;
    read_done_ = false;
    ws_.async_read(buffer_, [this](beast::error_code ec, std::size_t) {
      read_error_ = ec;
      read_done_ = true;
    });
  }
  if (!run_until(read_done_, timeout)) return std::nullopt;
  reading_ = false;
  Received r;
  if (read_error_ == websocket::error::closed) {
    r.kind = Received::Kind::closed;
    r.close_code = ws_.reason().code;
    r.data = std::string(ws_.reason().reason.data(), ws_.reason().reason.size());
  } else if (read_error_) {
    r.kind = Received::Kind::error;
    r.data = read_error_.message();
  } else {
    r.kind = ws_.got_text() ? Received::Kind::text : Received::Kind::binary;
    r.data = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
  }
  return r;
}

bool WsClient::read_until(const std::string& text, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = read(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
    if (!r) return false;
    if (r->is_text(text)) return true;
    if (r->kind == Received::Kind::closed || r->kind == Received::Kind::error) return false;
  }
  return false;
}

std::optional<std::uint16_t> WsClient::read_until_closed(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = read(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
    if (!r) return std::nullopt;
    if (r->kind == Received::Kind::closed) return r->close_code;
    if (r->kind == Received::Kind::error) return std::nullopt;
  }
  return std::nullopt;
}

void WsClient::close(std::uint16_t code, std::chrono::milliseconds timeout) {
  bool done = false;
  ws_.async_close(websocket::close_reason(code), [&](beast::error_code) { done = true; });
  run_until(done, timeout);
}

void WsClient::drop() {
  beast::error_code ec;
  beast::get_lowest_layer(ws_).socket().close(ec);
}

namespace {

HttpResponse exchange(std::uint16_t port, const std::string& method, const std::string& target, const Headers& headers) {
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(5s);
  stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  http::request<http::empty_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "127.0.0.1");
  for (const auto& [name, value] : headers) req.insert(name, value);
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.skip(method == "HEAD");
  http::read(stream, buffer, parser);
  const auto& res = parser.get();
  HttpResponse out;
  out.status = res.result_int();
  out.content_type = std::string(res[http::field::content_type]);
  out.location = std::string(res[http::field::location]);
  out.www_authenticate = std::string(res[http::field::www_authenticate]);
  out.body = res.body();
  if (res.has_content_length())
    out.content_length = std::stoul(std::string(res[http::field::content_length]));
  return out;
}

}  // namespace

HttpResponse http_request(std::uint16_t port, const std::string& target, const std::string& method,
                          const std::string& upgrade_header) {
  Headers headers;
  if (!upgrade_header.empty()) headers.emplace_back("Upgrade", upgrade_header);
  return exchange(port, method, target, headers);
}

HttpResponse upgrade_request(std::uint16_t port, const std::string& target, const Headers& headers) {
  Headers all = {{"Upgrade", "websocket"},
                 {"Connection", "Upgrade"},
                 {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                 {"Sec-WebSocket-Version", "13"}};
  all.insert(all.end(), headers.begin(), headers.end());
  return exchange(port, "GET", target, all);
}

}  // namespace stateroom::test
