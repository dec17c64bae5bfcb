// The load generator's engine: an epoll loop driving one share of the connections.
#pragma once

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "histogram.hpp"
#include "load.hpp"
#include "protocol/parser.hpp"

namespace stateroom::load::detail {

/// Which of ErrorCounts an error counts in.
enum class ErrorKind : std::uint8_t { connect, handshake, closed, protocol, mismatch, timeout };

/// Everything the workers share, fixed before they start.
struct Plan {
  Workload workload = Workload::echo;
  sockaddr_storage address{};  ///< the target, resolved
  socklen_t address_size = 0;
  std::string host;                    ///< the Host header
  std::string room_path;               ///< room i is at room_path + i
  std::size_t rooms = 1;               ///< connection i joins room i % rooms
  std::size_t in_flight = 1;           ///< messages a sender keeps unanswered
  std::string frames;                  ///< in_flight copies of the masked request frame (none for idle)
  std::size_t frame_size = 0;          ///< the bytes of one of them
  std::string close_frame;             ///< a masked close frame, code 1000
  std::string expected;                ///< echo, connect-churn: the bytes a reply must carry
  std::uint64_t max_message_size = 0;  ///< the largest message accepted from the server
  std::int64_t warmup_ns = 0;
  std::int64_t duration_ns = 0;  ///< the measured window
  /// Messages per second this worker sends, paced (0: each answer lets the next message go).
  double rate = 0;
};

/// Nanoseconds on the monotonic clock.
std::int64_t now_ns() noexcept;

/// A client frame (fin set): `payload` masked with the generator's fixed masking key. A fixed key
/// lets every message be encoded once; the key only guards proxies, not a benchmark.
std::string masked_frame(protocol::Opcode opcode, std::span<const std::uint8_t> payload);

/// What a worker measured, complete once run() has returned.
struct WorkerResult {
  Histogram latency;
  std::uint64_t messages = 0;  ///< in the measured window
  ErrorCounts errors;
  std::string first_error;
  std::size_t open_at_end = 0;
};

/// One event loop and its connections. run() goes through: opening its connections (all but
/// connect-churn), waiting for the shared start time, the workload until start + warmup +
/// duration, and the close handshakes (bounded).
class Worker {
 public:
  /// `start` is 0 until the run starts, then its time on now_ns()'s clock. `indexes` are the
  /// connections (by number) this worker drives. Throws LoadError when epoll is unavailable.
  Worker(const Plan& plan, const std::atomic<std::int64_t>& start, std::span<const std::size_t> indexes);
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker();

  /// Runs to the end (on the worker's own thread).
  void run();

  // Read from other threads while it runs.
  /// Whether the opening is over: every connection is open or has failed.
  bool opened() const noexcept { return live_.opened.load(std::memory_order_acquire); }
  /// Messages (connect-churn: cycles) so far, measured or not.
  std::uint64_t completed() const noexcept { return live_.completed.load(std::memory_order_relaxed); }
  std::uint64_t errors() const noexcept { return live_.errors.load(std::memory_order_relaxed); }
  std::size_t open() const noexcept { return live_.open.load(std::memory_order_relaxed); }

  /// The measurements, once run() has returned.
  const WorkerResult& result() const noexcept { return result_; }

 private:
  enum class Stage : std::uint8_t {
    unused,       ///< no socket (connect-churn: waiting to retry at `deadline`)
    connecting,   ///< TCP connect under way
    handshaking,  ///< upgrade request sent, response awaited
    open,
    closing,   ///< our close frame is queued or sent; the server's is awaited
    draining,  ///< the server's close frame came; its end of the TCP connection is awaited
    done,      ///< finished for good
  };

  struct Connection {
    std::size_t index = 0;
    std::size_t room = 0;
    bool sender = false;  ///< sends messages (broadcast: the room's publisher)
    Stage stage = Stage::unused;
    bool write_armed = false;  ///< EPOLLOUT is registered
    int fd = -1;
    std::uint32_t generation = 0;  ///< counts sockets, to tell a new one from the last
    std::int64_t deadline = 0;     ///< 0: none
    std::int64_t cycle_start = 0;  ///< connect-churn: when this cycle's connect began
    // Output: the control bytes (upgrade request, pongs, close) go out between frames; the
    // data is `data_pending` bytes of Plan::frames from `data_offset`.
    std::string control;
    std::size_t control_sent = 0;
    std::size_t data_offset = 0;
    std::size_t data_pending = 0;
    std::string response;  ///< the upgrade response while it arrives
    std::string accept;    ///< the Sec-WebSocket-Accept the server must answer
    // Send times of the unanswered messages, oldest first (a ring).
    std::vector<std::int64_t> sent;
    std::size_t sent_head = 0;
    std::size_t sent_count = 0;
    protocol::Parser parser;
  };

  // Connection lifecycle.
  void start_connect(Connection& c, std::int64_t now);
  void on_connected(Connection& c, std::int64_t now);
  void on_readable(Connection& c, std::int64_t now);
  void on_upgrade_response(Connection& c, std::span<const std::uint8_t> bytes, std::int64_t now);
  void on_open(Connection& c, std::int64_t now);
  void feed(Connection& c, std::span<std::uint8_t> bytes, std::int64_t now);
  void on_message(Connection& c, const protocol::Event& event, std::int64_t now, std::size_t& answered);
  void on_server_close(Connection& c, const protocol::Event& event, std::int64_t now);
  void on_eof(Connection& c, std::int64_t now);
  /// The socket is gone for good or, in connect-churn, until the next cycle.
  void after_close(Connection& c, std::int64_t now);
  void fail(Connection& c, ErrorKind kind, std::string_view what, std::int64_t now);
  void close_socket(Connection& c);
  void set_stage(Connection& c, Stage stage);

  // Output.
  void send_messages(Connection& c, std::size_t count, std::int64_t now);
  void queue_control(Connection& c, protocol::Opcode opcode, std::span<const std::uint8_t> payload);
  void queue_close(Connection& c);
  void flush(Connection& c);
  void set_write_interest(Connection& c, bool on);

  // The run.
  void open_more(std::int64_t now);
  void begin(std::int64_t start, std::int64_t now);
  void stop(std::int64_t now);
  void check_deadlines(std::int64_t now);
  void answer(Connection& c, std::int64_t now);
  void count_message(std::int64_t now);
  void error(ErrorKind kind, std::string_view what);
  bool measuring(std::int64_t t) const noexcept { return started_ && t >= warmup_end_ && t < end_; }
  /// How long epoll may wait, in nanoseconds.
  std::int64_t wait_timeout_ns(std::int64_t now) const noexcept;
  /// Whether sends follow Plan::rate instead of the answers.
  bool paced() const noexcept {
    return plan_.rate > 0 && plan_.workload != Workload::connect_churn && plan_.workload != Workload::idle;
  }
  /// Sends what the rate has made due since the start, round-robin over the senders that have
  /// room under --in-flight; what none has room for waits for the next answer.
  void pace(std::int64_t now);
  void publish() noexcept;

  const Plan& plan_;
  const std::atomic<std::int64_t>& start_;
  int epoll_ = -1;
  std::vector<Connection> connections_;  // never resized: epoll holds pointers to them
  std::vector<std::uint8_t> buffer_;     // every read lands here
  protocol::ParserOptions parser_options_;
  std::uint64_t key_state_;  // for the Sec-WebSocket-Key bytes

  std::size_t next_open_ = 0;  // opening: the next connection to start
  std::size_t pending_ = 0;    // connecting or handshaking
  std::size_t open_ = 0;       // open
  std::size_t active_ = 0;     // with a socket
  std::int64_t opening_deadline_ = 0;
  bool started_ = false;
  bool stopping_ = false;
  std::int64_t warmup_end_ = 0;
  std::int64_t end_ = 0;
  std::int64_t stop_deadline_ = 0;
  std::int64_t next_scan_ = 0;
  std::int64_t pace_start_ = 0;  // paced: when the schedule began
  std::uint64_t paced_ = 0;      // paced: messages sent on the schedule
  std::size_t pace_next_ = 0;    // paced: the next connection to try
  std::vector<std::size_t> pace_batch_;  // paced: messages per connection in this pass

  Histogram latency_;
  std::uint64_t completed_ = 0;
  std::uint64_t measured_ = 0;
  std::uint64_t error_total_ = 0;
  WorkerResult result_;

  struct alignas(64) Live {
    std::atomic<bool> opened{false};
    std::atomic<std::uint64_t> completed{0};
    std::atomic<std::uint64_t> errors{0};
    std::atomic<std::size_t> open{0};
  } live_;
};

}  // namespace stateroom::load::detail
