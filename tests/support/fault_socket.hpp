// FaultSocket: a stream socket with the test at its far end, whose connection breaks at a chosen
// I/O step. For driving a WebSocket session through every error path without a network or sleeps.
#pragma once

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/beast/_experimental/test/fail_count.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <utility>

namespace stateroom::test {

/// The far end of a FaultSocket, kept by the test after the socket has gone. Every call a real
/// socket could fail — non_blocking, read_some, write_some, each wait's completion, shutdown — is
/// one step; step `fail_at` (counted from 1) fails with `failure`, and so does every step after it:
/// from there the connection is broken, as a reset one is. Beast's test::fail_count does the
/// counting, as it does for Beast's own test::stream.
struct FaultPeer {
  using error_code = boost::system::error_code;

  FaultPeer(boost::asio::io_context& ioc, std::size_t fail_at,
            error_code failure = boost::asio::error::connection_reset)
      : ioc(ioc), fail(fail_at, failure) {}

  boost::asio::io_context& ioc;
  boost::beast::test::fail_count fail;
  bool failed = false;           ///< a step failed
  const char* failed_step = "";  ///< the call that failed first
  std::size_t steps = 0;         ///< steps taken

  // How the connection behaves.
  std::size_t max_read = std::numeric_limits<std::size_t>::max();   ///< bytes one read returns at most
  std::size_t max_write = std::numeric_limits<std::size_t>::max();  ///< bytes one write takes at most
  std::size_t block_every = 0;                                      ///< every Nth write would block (0: none)

  // What the peer sends: read in order; then, once `eof`, reads see the end of the stream.
  std::deque<std::string> inbound;
  bool eof = false;

  // What the session did.
  std::string received;         ///< every byte written
  bool send_shut_down = false;  ///< the session shut down its sending side
  bool closed = false;          ///< the session closed the socket

  /// Called after each write that took bytes, and after the session shut down its sending side:
  /// the test's client reads what arrived and may answer (send, finish).
  std::function<void(FaultPeer&)> on_output;

  /// The peer sends `bytes` (one read's worth at most; larger sends are read in pieces).
  void send(std::string bytes) {
    inbound.push_back(std::move(bytes));
    wake_reader({});
  }
  /// The peer closes its side: after what it sent, reads see the end of the stream.
  void finish() {
    eof = true;
    wake_reader({});
  }

  /// One I/O step: false, or true with `ec` set if it fails. A broken connection is readable (as
  /// a reset socket is to epoll): a wait for it completes, and the read then fails.
  bool step(error_code& ec, const char* what) {
    ++steps;
    if (fail.fail(ec)) {
      if (!failed) failed_step = what;
      failed = true;
      wake_reader({});
      return true;
    }
    return false;
  }
  bool readable() const { return !inbound.empty() || eof || closed || failed; }
  void wake_reader(error_code ec) {
    if (!read_waiter) return;
    auto handler = std::exchange(read_waiter, nullptr);
    boost::asio::post(ioc, [handler = std::move(handler), ec] { handler(ec); });
  }
  std::function<void(error_code)> read_waiter;  ///< a wait for readability the peer has not answered
  std::size_t writes = 0;
};

/// The socket the session holds. Waits complete through the io_context, as a real socket's do.
class FaultSocket {
 public:
  using error_code = boost::system::error_code;

  explicit FaultSocket(std::shared_ptr<FaultPeer> peer) : peer_(std::move(peer)) {}

  void non_blocking(bool, error_code& ec) { peer_->step(ec, "non_blocking"); }

  boost::asio::ip::tcp::endpoint remote_endpoint(error_code& ec) const {
    ec = {};
    return {boost::asio::ip::make_address_v4("127.0.0.1"), 40000};
  }

  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers, error_code& ec) {
    FaultPeer& p = *peer_;
    if (p.step(ec, "read_some")) return 0;
    if (p.closed) {
      ec = boost::asio::error::bad_descriptor;
      return 0;
    }
    if (p.inbound.empty()) {
      ec = p.eof ? error_code(boost::asio::error::eof) : error_code(boost::asio::error::would_block);
      return 0;
    }
    std::size_t n = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      const boost::asio::mutable_buffer b = *it;
      while (n < p.max_read && !p.inbound.empty() && n < b.size()) {
        std::string& front = p.inbound.front();
        const std::size_t take = std::min({front.size(), b.size() - n, p.max_read - n});
        std::memcpy(static_cast<char*>(b.data()) + n, front.data(), take);
        front.erase(0, take);
        if (front.empty()) p.inbound.pop_front();
        n += take;
      }
      break;  // the session reads into one buffer
    }
    return n;
  }

  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers, error_code& ec) {
    FaultPeer& p = *peer_;
    if (p.step(ec, "write_some")) return 0;
    if (p.closed || p.send_shut_down) {
      ec = boost::asio::error::broken_pipe;
      return 0;
    }
    if (p.block_every != 0 && ++p.writes % p.block_every == 0) {
      ec = boost::asio::error::would_block;
      return 0;
    }
    std::size_t n = 0;
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers) && n < p.max_write; ++it) {
      const boost::asio::const_buffer b = *it;
      const std::size_t take = std::min(b.size(), p.max_write - n);
      p.received.append(static_cast<const char*>(b.data()), take);
      n += take;
    }
    ec = {};
    if (n != 0 && p.on_output) p.on_output(p);
    return n;
  }

  template <class Handler>
  void async_wait(boost::asio::socket_base::wait_type type, Handler&& handler) {
    FaultPeer& p = *peer_;
    error_code ec;
    if (p.closed) {
      ec = boost::asio::error::bad_descriptor;
    } else if (!p.step(ec, type == boost::asio::socket_base::wait_read ? "wait_read" : "wait_write") &&
               type == boost::asio::socket_base::wait_read && !p.readable()) {
      p.read_waiter = std::forward<Handler>(handler);  // answered when the peer sends or the socket closes
      return;
    }
    boost::asio::post(p.ioc, [handler = std::forward<Handler>(handler), ec]() mutable { handler(ec); });
  }

  void shutdown(boost::asio::socket_base::shutdown_type type, error_code& ec) {
    FaultPeer& p = *peer_;
    if (p.step(ec, "shutdown") || p.closed) return;
    if (type != boost::asio::socket_base::shutdown_receive && !p.send_shut_down) {
      p.send_shut_down = true;
      if (p.on_output) p.on_output(p);
    }
  }

  void close(error_code& ec) {
    ec = {};
    FaultPeer& p = *peer_;
    if (p.closed) return;
    p.closed = true;
    p.wake_reader(boost::asio::error::operation_aborted);
  }

 private:
  std::shared_ptr<FaultPeer> peer_;
};

}  // namespace stateroom::test
