// stateroom-load: a WebSocket load generator for Stateroom servers (and any server that speaks the
// same workloads), built on the project's own frame layer (src/protocol).
//
// run_load() opens the connections, waits until every one is open (or failed), then drives the
// workload for `warmup` and measures for `duration`; then it closes every connection with a close
// handshake. Latencies, message counts and CPU figures cover the measured window only; errors cover
// the whole run.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace stateroom::load {

/// What the connections do.
enum class Workload {
  echo,           ///< W binary messages in flight per connection, each echoed to its sender
  broadcast,      ///< one publisher per room keeps W `increment`s in flight; every member hears each reply
  counter,        ///< W `increment`s in flight per connection, each alone in its room
  connect_churn,  ///< loops of connect, upgrade, one echoed message, close handshake
  idle,           ///< connections held open, silent (pings answered)
};

/// The workload's command-line name (`connect-churn` ...).
std::string_view workload_name(Workload workload) noexcept;
/// The workload named `name`, if any.
std::optional<Workload> parse_workload(std::string_view name) noexcept;

/// What to run.
struct LoadOptions {
  std::string target;  ///< HOST:PORT ([::1]:PORT for an IPv6 address)
  Workload workload = Workload::echo;
  std::size_t connections = 100;
  /// Rooms the connections are spread over (connection i joins room i % rooms). Unset: one per
  /// connection for echo, counter and connect-churn, one room for broadcast and idle.
  std::optional<std::size_t> rooms;
  std::size_t in_flight = 1;                  ///< W: messages each sender keeps unanswered
  std::size_t payload_bytes = 32;             ///< echo and connect-churn: the size of each binary message
  std::chrono::milliseconds warmup{1000};     ///< driven but not measured, after every connection is open
  std::chrono::milliseconds duration{10000};  ///< measured
  std::string path_prefix = "/ws/";           ///< room i is at path_prefix + room_prefix + i
  std::string room_prefix = "bench-";
  std::optional<int> server_pid;  ///< a local server whose CPU time and memory to report
  unsigned threads = 1;           ///< event loops, each with its share of the connections
  /// Messages per second to send, paced evenly over the senders (each still keeps at most
  /// in_flight unanswered); 0 sends the next message as soon as one is answered (closed loop).
  double rate = 0;
  bool json = false;              ///< the report as one JSON object instead of a summary
};

/// The rooms a run uses: `options.rooms`, or the workload's default.
std::size_t effective_rooms(const LoadOptions& options) noexcept;

/// Why the options cannot run (one sentence), or nothing when they can.
std::optional<std::string> check_options(const LoadOptions& options);

/// A run that could not start: unusable options, a target that does not resolve, a server pid
/// that cannot be read. The message is one sentence.
class LoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Errors by kind; each counted once per event.
struct ErrorCounts {
  std::uint64_t connect = 0;    ///< TCP connect failed
  std::uint64_t handshake = 0;  ///< the upgrade was refused or answered wrongly
  std::uint64_t closed = 0;     ///< the server closed or reset a connection the run still used
  std::uint64_t protocol = 0;   ///< the server broke RFC 6455
  std::uint64_t mismatch = 0;   ///< a reply of the wrong kind, size or content, or to nothing sent
  std::uint64_t timeout = 0;    ///< a connect, upgrade, reply or close that took too long

  std::uint64_t total() const noexcept {
    return connect + handshake + closed + protocol + mismatch + timeout;
  }
};

/// Latency percentiles of the measured window, in microseconds.
struct LatencySummary {
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;
};

/// The server's side of the measured window (with `server_pid`).
struct ServerUsage {
  double cpu_us_per_message = 0;  ///< its CPU time over the window, per message measured
  double cpu_share = 0;           ///< its CPU seconds per wall second (1 = one core busy)
  std::uint64_t rss_bytes = 0;    ///< its resident memory at the end of the window
  /// idle: (RSS with every connection open - RSS before the first) / connections.
  std::optional<double> rss_bytes_per_connection;
};

/// What a run measured.
struct LoadResult {
  LoadOptions options;  ///< as run, with `rooms` filled in
  double seconds = 0;   ///< the measured window
  /// Messages received in the window: replies (echo, counter), deliveries to every member
  /// (broadcast), completed cycles (connect-churn), anything the server sent (idle).
  std::uint64_t messages = 0;
  double messages_per_second = 0;
  /// From send to reply (echo, counter; broadcast: the publisher's), or the whole cycle
  /// (connect-churn).
  LatencySummary latency_us;
  ErrorCounts errors;
  std::string first_error;           ///< what the first error was, when there was one
  std::size_t open_connections = 0;  ///< open at the end of the window
  double load_cpu_share = 0;         ///< this process's CPU seconds per wall second over the window
  std::optional<ServerUsage> server;
};

/// Runs the load; writes a progress line about once a second to `progress`. Throws LoadError when
/// the run cannot start.
LoadResult run_load(const LoadOptions& options, std::ostream& progress);

/// Writes the report: a summary for people, or (options.json) one JSON object and a newline.
void print_report(const LoadResult& result, std::ostream& out);

}  // namespace stateroom::load
