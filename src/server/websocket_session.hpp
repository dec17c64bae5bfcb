// WebSocketSession: one client's WebSocket connection after the upgrade, on its room's worker.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "client.hpp"
#include "output_queue.hpp"
#include "worker.hpp"
#include "protocol/deflate.hpp"
#include "protocol/parser.hpp"
#include "stateroom/client_id.hpp"

namespace stateroom::server {

class Room;

/// What the opening handshake settled: the 101 response's headers and how the session speaks.
struct Handshake {
  std::string accept_key;  ///< the Sec-WebSocket-Accept answering the client's key
  /// permessage-deflate, when the server has it on and the client offered what it can accept.
  std::optional<protocol::DeflateAgreement> deflate{};
};

/// One client: frames come in through the I/O-free parser and go to the room; the room's sends are
/// corked in the output queue and leave once per pass of the event loop, in one gathered write
/// however many messages there are. Reads go through the worker's one read buffer (an idle
/// connection holds none); a message that arrives whole is handed to the room in place. Pings a
/// silent client and closes one that stays silent; stops reading while its room's inbound queue
/// is over its bound; closes a client whose writes make no progress. All on the room's worker.
///
/// `Socket` is a TCP socket in the server. It is a parameter so that tests can drive a session
/// over a socket of their own that fails at any step (tests/support/fault_socket.hpp); it needs
/// what a non-blocking reactor-style stream socket has: non_blocking, read_some and write_some
/// with an error_code, async_wait, shutdown, close and remote_endpoint.
template <class Socket>
class BasicWebSocketSession final : public Client,
                                    public Corked,
                                    public std::enable_shared_from_this<BasicWebSocketSession<Socket>> {
 public:
  /// `handshake` answers the client's upgrade request, already validated. `ticket` is the
  /// connection's place in the budgets (none in tests).
  BasicWebSocketSession(Worker& worker, Socket socket, Handshake handshake, std::string room_id,
                        ConnectionTicket ticket = {});
  ~BasicWebSocketSession();
  BasicWebSocketSession(const BasicWebSocketSession&) = delete;
  BasicWebSocketSession& operator=(const BasicWebSocketSession&) = delete;

  /// Answers the handshake (the 101 leaves with the first messages) and joins the room once it
  /// is there (Worker::with_room: a waking room's saved state is read off this thread first).
  void start();

  // Client
  SendResult send(const OutgoingMessage& message) override;
  void close(protocol::CloseCode code, std::string_view reason) override;
  void resume_reading() override;

  /// Writes what is queued, as far as the socket takes it now. Called by the worker once per pass
  /// for every session that queued something (Worker::cork).
  void flush() override;

 private:
  using Clock = std::chrono::steady_clock;
  enum class Drop : bool { none, unstarted };

  /// The room is there (or refused): joins it and starts reading, or closes.
  void enter(std::shared_ptr<Room> room, std::optional<Refusal> refused);
  void wait_readable();
  /// Waits for the socket to be readable or writable, then reads (on_readable) or writes (flush).
  void wait(boost::asio::socket_base::wait_type type);
  void on_readable();
  /// Parses one read's bytes and acts on every event in them.
  void on_bytes(std::span<std::uint8_t> data);
  /// Decompresses a compressed message into the worker's buffer; false when it failed the
  /// connection (corrupt, too big once inflated, text that is not UTF-8).
  bool inflate(const protocol::Event& e, std::span<const std::uint8_t>& payload);
  /// Whether this client's compressed messages are within ServerOptions::max_inflate_rate now.
  bool inflate_allowed();
  void on_peer_close(std::uint16_t code, std::string_view reason);
  void on_peer_gone(std::string_view how);
  /// Fails the connection (a protocol error, a message too big): close frame, then a lingering
  /// close that reads and discards for a bounded time so the close frame is not lost to a reset.
  void fail_connection(protocol::CloseCode code, std::string_view reason);
  void wait_writable();
  void queue_control(protocol::Opcode opcode, std::span<const std::uint8_t> payload);
  /// Appends a control frame to the output queue (queue_control, without the cork).
  void append_control(protocol::Opcode opcode, std::span<const std::uint8_t> payload);
  /// Starts the close handshake once: queues the close frame and a deadline.
  void begin_close(protocol::CloseCode code, std::string_view reason, Drop drop);
  /// Closes the socket (the session ends once its pending waits have returned).
  void finish();
  void leave_room();
  void cork();
  void arm_timer();
  void on_timer();
  std::size_t queued_charge() const noexcept;

  Worker& worker_;
  Socket socket_;
  boost::asio::steady_timer timer_;  ///< keep-alive, the close deadline and the write timeout
  protocol::Parser parser_;
  OutputQueue out_;
  std::uint64_t response_end_ = 0;  ///< where the 101 ends in out_'s stream: it is never dropped
  const std::string room_id_;
  Handshake handshake_;  ///< the 101's contents until it is queued; then the agreed compression
  /// The client's decompressor when it keeps its context between messages (made on its first
  /// compressed message); otherwise the worker's serves every message.
  std::unique_ptr<protocol::Inflater> inflater_;
  std::string remote_;
  ConnectionTicket ticket_;

  std::shared_ptr<Room> room_;  ///< while a member
  ClientId id_{};

  Clock::time_point last_heard_{};
  Clock::time_point stalled_since_{};   ///< when the socket last refused to take more
  Clock::time_point close_deadline_{};
  Clock::time_point timer_expiry_{};
  std::uint16_t close_code_ = 0;        ///< the code of our close frame, once queued
  TokenBucket inflate_;  ///< bytes its compressed messages may still inflate to (a loopback client's)
  /// A ping is answered at once, in order with the room's messages, while the client takes what it
  /// is sent; else the pong owed for the latest ping waits here for the socket to take writes
  /// again, and the pings after it replace it (RFC 6455 5.5.3): a ping flood from a client that
  /// does not read grows nothing.
  std::array<std::uint8_t, protocol::max_control_payload> pong_{};
  std::uint8_t pong_size_ = 0;
  bool pong_due_ = false;

  bool corked_ = false;         ///< on the worker's list to flush
  bool read_waiting_ = false;   ///< an async_wait for readability is pending
  bool write_waiting_ = false;  ///< an async_wait for writability is pending
  bool reading_paused_ = false; ///< the room's inbound queue is over its bound
  bool timer_armed_ = false;
  bool pinged_ = false;         ///< a ping went out since the client was last heard
  bool closing_ = false;        ///< our close frame is queued
  bool peer_closed_ = false;    ///< the client's close frame arrived
  bool lingering_ = false;      ///< failed: after the close frame, read and discard until EOF
  bool shut_down_send_ = false;
  bool done_ = false;           ///< the socket is closed
};

/// The server's session: over a TCP socket.
using WebSocketSession = BasicWebSocketSession<boost::asio::ip::tcp::socket>;
extern template class BasicWebSocketSession<boost::asio::ip::tcp::socket>;

}  // namespace stateroom::server
