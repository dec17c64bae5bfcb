#include "load.hpp"

#include <netdb.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "engine.hpp"
#include "proc_stats.hpp"
#include "protocol/frame.hpp"

namespace stateroom::load {

namespace {

constexpr std::array<std::pair<Workload, std::string_view>, 5> workload_names{{
    {Workload::echo, "echo"},
    {Workload::broadcast, "broadcast"},
    {Workload::counter, "counter"},
    {Workload::connect_churn, "connect-churn"},
    {Workload::idle, "idle"},
}};

constexpr std::size_t max_connections = 1'000'000;
constexpr std::size_t max_in_flight = 65536;
constexpr unsigned max_threads = 256;
constexpr std::uint64_t max_frames_bytes = std::uint64_t{1} << 30;  // in_flight copies of the message
constexpr std::int64_t second = 1'000'000'000;

struct HostPort {
  std::string host;
  std::string port;
};

std::optional<HostPort> split_target(std::string_view target) {
  const std::size_t colon = target.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  std::string_view host = target.substr(0, colon);
  const std::string_view port = target.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return std::nullopt;  // an IPv6 address goes in brackets
  }
  unsigned number = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
  if (ec != std::errc{} || end != port.data() + port.size() || number == 0 || number > 65535)
    return std::nullopt;
  return HostPort{std::string(host), std::string(port)};
}

bool is_path_text(std::string_view s) noexcept {
  return std::none_of(s.begin(), s.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte <= ' ' || byte == 0x7f;
  });
}

// The size of the message each sender repeats.
std::size_t message_size(const LoadOptions& o) noexcept {
  switch (o.workload) {
    case Workload::echo:
    case Workload::connect_churn:
      return o.payload_bytes;
    case Workload::counter:
    case Workload::broadcast:
      return std::string_view("increment").size();
    case Workload::idle:
      break;
  }
  return 0;
}

void resolve(const HostPort& target, detail::Plan& plan) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int problem = getaddrinfo(target.host.c_str(), target.port.c_str(), &hints, &found); problem != 0)
    throw LoadError("cannot resolve " + target.host + ": " + gai_strerror(problem));
  const addrinfo* chosen = found;  // an IPv4 address first, when the name has both
  for (const addrinfo* a = found; a; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      chosen = a;
      break;
    }
  }
  std::memcpy(&plan.address, chosen->ai_addr, chosen->ai_addrlen);
  plan.address_size = chosen->ai_addrlen;
  freeaddrinfo(found);
}

detail::Plan make_plan(const LoadOptions& o) {
  detail::Plan plan;
  plan.workload = o.workload;
  resolve(*split_target(o.target), plan);
  plan.host = o.target;
  plan.room_path = o.path_prefix + o.room_prefix;
  plan.rooms = effective_rooms(o);
  plan.in_flight = o.in_flight;
  std::string frame;
  switch (o.workload) {
    case Workload::echo:
    case Workload::connect_churn: {
      plan.expected.resize(o.payload_bytes);
      for (std::size_t i = 0; i < plan.expected.size(); ++i)
        plan.expected[i] = static_cast<char>('a' + i % 26);
      frame = detail::masked_frame(
          protocol::Opcode::binary,
          {reinterpret_cast<const std::uint8_t*>(plan.expected.data()), plan.expected.size()});
      break;
    }
    case Workload::counter:
    case Workload::broadcast: {
      constexpr std::string_view increment = "increment";
      frame =
          detail::masked_frame(protocol::Opcode::text,
                               {reinterpret_cast<const std::uint8_t*>(increment.data()), increment.size()});
      break;
    }
    case Workload::idle:
      break;
  }
  plan.frame_size = frame.size();
  plan.frames.reserve(frame.size() * o.in_flight);
  for (std::size_t i = 0; i < o.in_flight && !frame.empty(); ++i) plan.frames += frame;
  std::array<std::uint8_t, protocol::max_control_payload> close{};
  const std::size_t close_size = protocol::write_close_payload(close.data(), 1000, "");
  plan.close_frame = detail::masked_frame(protocol::Opcode::close, {close.data(), close_size});
  plan.max_message_size = std::max<std::uint64_t>(std::uint64_t{1} << 20, o.payload_bytes);
  plan.warmup_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(o.warmup).count();
  plan.duration_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(o.duration).count();
  plan.rate = o.rate / static_cast<double>(std::min<std::size_t>(o.threads, o.connections));
  return plan;
}

// Every connection is a file descriptor: raise the soft limit as far as needed and allowed.
void ensure_descriptors(std::size_t connections) {
  const rlim_t needed = static_cast<rlim_t>(connections) + 64;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= needed) return;
  limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? needed : std::min(needed, limit.rlim_max);
  setrlimit(RLIMIT_NOFILE, &limit);
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < needed)
    throw LoadError(std::to_string(connections) + " connections need " + std::to_string(needed) +
                    " file descriptors; the limit is " + std::to_string(limit.rlim_cur) + " (ulimit -n)");
}

void sleep_until(std::int64_t when) {
  const std::int64_t left = when - detail::now_ns();
  if (left > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(left));
}

std::string fixed(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

// The coordinator's readings at one end of the measured window.
struct Mark {
  std::int64_t wall = 0;
  std::uint64_t own_cpu_us = 0;
  std::optional<ProcessSample> server;
};

Mark mark(const std::optional<int>& pid) {
  Mark m;
  if (pid) m.server = sample_process(*pid);
  m.own_cpu_us = own_cpu_us();
  m.wall = detail::now_ns();
  return m;
}

// Runs the workers: the opening, then the timeline (progress lines and the window's marks), then
// the sums.
class Coordinator {
 public:
  /// `rss_before_open`: the server's RSS before the first connection (with a server pid).
  Coordinator(const LoadOptions& options, const detail::Plan& plan, std::ostream& progress,
              std::optional<std::uint64_t> rss_before_open)
      : options_(options), plan_(plan), progress_(progress), rss_before_open_(rss_before_open) {
    const std::size_t count = std::min<std::size_t>(options.threads, options.connections);
    std::vector<std::vector<std::size_t>> shares(count);
    for (std::size_t i = 0; i < options.connections; ++i) shares[i % count].push_back(i);
    for (const auto& share : shares)
      workers_.push_back(std::make_unique<detail::Worker>(plan_, start_, share));
  }

  /// Runs everything and fills in `result`'s measurements.
  void run(LoadResult& result) {
    std::vector<std::thread> threads;
    for (auto& worker : workers_) threads.emplace_back([w = worker.get()] { w->run(); });
    open_all();
    const std::int64_t start = detail::now_ns();
    start_.store(start, std::memory_order_release);
    follow(start);
    for (auto& thread : threads) thread.join();
    sum_up(result);
  }

 private:
  std::uint64_t completed() const {
    std::uint64_t n = 0;
    for (const auto& w : workers_) n += w->completed();
    return n;
  }
  std::uint64_t errors() const {
    std::uint64_t n = 0;
    for (const auto& w : workers_) n += w->errors();
    return n;
  }
  std::size_t open() const {
    std::size_t n = 0;
    for (const auto& w : workers_) n += w->open();
    return n;
  }

  void open_all() {
    if (options_.workload == Workload::connect_churn) {  // its connections come and go
      progress_ << "starting " << options_.connections << " connect-churn loops against " << options_.target
                << "\n"
                << std::flush;
      return;
    }
    const std::int64_t began = detail::now_ns();
    progress_ << "opening " << options_.connections << " connections to " << options_.target << "\n"
              << std::flush;
    std::int64_t next_line = began + second;
    while (!std::all_of(workers_.begin(), workers_.end(), [](const auto& w) { return w->opened(); })) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      if (detail::now_ns() >= next_line) {
        progress_ << "  " << open() << " of " << options_.connections << " open, " << errors() << " errors\n"
                  << std::flush;
        next_line += second;
      }
    }
    progress_ << open() << " of " << options_.connections << " open in "
              << fixed(static_cast<double>(detail::now_ns() - began) / 1e6, 0) << " ms, " << errors()
              << " errors\n"
              << std::flush;
  }

  // The warmup and the measured window: a progress line each second, marks at both ends.
  void follow(std::int64_t start) {
    const std::int64_t warmup_end = start + plan_.warmup_ns;
    const std::int64_t end = warmup_end + plan_.duration_ns;
    const char* unit = options_.workload == Workload::connect_churn ? "cycles/s" : "msgs/s";
    std::int64_t tick = start + second;
    std::int64_t last_time = start;
    std::uint64_t last_count = 0;
    for (;;) {
      sleep_until(std::min(tick, first_ ? end : warmup_end));
      const std::int64_t now = detail::now_ns();
      if (!first_ && now >= warmup_end) {
        first_ = mark(options_.server_pid);
        note_rss(first_->server);
      }
      if (now >= end) {
        last_ = mark(options_.server_pid);
        note_rss(last_->server);
        return;
      }
      if (now >= tick) {
        const std::uint64_t count = completed();
        const double rate =
            static_cast<double>(count - last_count) * 1e9 / static_cast<double>(now - last_time);
        progress_ << "[" << (now - start + second / 2) / second << "s] "
                  << (tick <= warmup_end ? "warmup" : "measuring") << ": " << fixed(rate, 0) << " " << unit
                  << ", " << open() << " open, " << errors() << " errors\n"
                  << std::flush;
        if (first_ && options_.server_pid) note_rss(sample_process(*options_.server_pid));
        last_count = count;
        last_time = now;
        tick += second;
      }
    }
  }

  // The server's RSS with every connection open: the most seen in the window.
  void note_rss(const std::optional<ProcessSample>& sample) {
    if (sample) peak_rss_ = std::max(peak_rss_, sample->rss_bytes);
  }

  void sum_up(LoadResult& result) const {
    Histogram latency;
    for (const auto& w : workers_) {
      const detail::WorkerResult& r = w->result();
      latency.merge(r.latency);
      result.messages += r.messages;
      result.open_connections += r.open_at_end;
      ErrorCounts& e = result.errors;
      e.connect += r.errors.connect;
      e.handshake += r.errors.handshake;
      e.closed += r.errors.closed;
      e.protocol += r.errors.protocol;
      e.mismatch += r.errors.mismatch;
      e.timeout += r.errors.timeout;
      if (result.first_error.empty()) result.first_error = r.first_error;
    }
    result.seconds = static_cast<double>(plan_.duration_ns) / 1e9;
    result.messages_per_second = static_cast<double>(result.messages) / result.seconds;
    const auto us = [&](double q) { return static_cast<double>(latency.quantile(q)) / 1e3; };
    result.latency_us = {.p50 = us(0.5),
                         .p90 = us(0.9),
                         .p99 = us(0.99),
                         .p999 = us(0.999),
                         .max = static_cast<double>(latency.max()) / 1e3,
                         .mean = latency.mean() / 1e3};

    const double wall = static_cast<double>(last_->wall - first_->wall) / 1e9;
    result.load_cpu_share = static_cast<double>(last_->own_cpu_us - first_->own_cpu_us) / 1e6 / wall;
    if (!options_.server_pid) return;
    if (!first_->server || !last_->server) {
      progress_ << "warning: /proc/" << *options_.server_pid << " was unreadable: no server figures\n";
      return;
    }
    const auto cpu_us = static_cast<double>(last_->server->cpu_us - first_->server->cpu_us);
    ServerUsage usage;
    usage.cpu_us_per_message = result.messages > 0 ? cpu_us / static_cast<double>(result.messages) : 0;
    usage.cpu_share = cpu_us / 1e6 / wall;
    usage.rss_bytes = last_->server->rss_bytes;
    if (options_.workload == Workload::idle && rss_before_open_) {
      usage.rss_bytes_per_connection =
          (static_cast<double>(peak_rss_) - static_cast<double>(*rss_before_open_)) /
          static_cast<double>(options_.connections);
    }
    result.server = usage;
  }

  const LoadOptions& options_;
  const detail::Plan& plan_;
  std::ostream& progress_;
  const std::optional<std::uint64_t> rss_before_open_;
  std::atomic<std::int64_t> start_{0};
  std::vector<std::unique_ptr<detail::Worker>> workers_;
  std::optional<Mark> first_;  // the measured window's start
  std::optional<Mark> last_;   // and its end
  std::uint64_t peak_rss_ = 0;
};

}  // namespace

std::string_view workload_name(Workload workload) noexcept {
  for (const auto& [w, name] : workload_names)
    if (w == workload) return name;
  return {};
}

std::optional<Workload> parse_workload(std::string_view name) noexcept {
  for (const auto& [w, n] : workload_names)
    if (n == name) return w;
  return std::nullopt;
}

std::size_t effective_rooms(const LoadOptions& o) noexcept {
  if (o.rooms) return *o.rooms;
  return o.workload == Workload::broadcast || o.workload == Workload::idle ? 1 : o.connections;
}

std::optional<std::string> check_options(const LoadOptions& o) {
  if (!split_target(o.target))
    return "the target '" + o.target + "' is not HOST:PORT (an IPv6 address in brackets)";
  if (o.connections < 1 || o.connections > max_connections)
    return "--connections must be between 1 and " + std::to_string(max_connections);
  const std::size_t rooms = effective_rooms(o);
  if (rooms < 1 || rooms > o.connections) return "--rooms must be between 1 and --connections";
  if (o.workload == Workload::counter && rooms != o.connections)
    return "the counter workload needs a room of its own for every connection (--rooms equal to "
           "--connections)";
  if (o.in_flight < 1 || o.in_flight > max_in_flight)
    return "--in-flight must be between 1 and " + std::to_string(max_in_flight);
  if (o.duration.count() <= 0) return "--seconds must be more than 0";
  if (o.warmup.count() < 0) return "--warmup must not be negative";
  const std::uint64_t frame = protocol::header_size(message_size(o), true) + message_size(o);
  if (frame * o.in_flight > max_frames_bytes) return "--payload times --in-flight must stay within 1 GiB";
  if (!(o.rate >= 0) || o.rate > 1e9) return "--rate must be a number of messages per second from 0 to 1e9";
  if (o.rate > 0 && (o.workload == Workload::connect_churn || o.workload == Workload::idle))
    return "--rate paces echo, counter and broadcast only";
  if (o.threads < 1 || o.threads > max_threads)
    return "--threads must be between 1 and " + std::to_string(max_threads);
  if (!o.path_prefix.starts_with('/') || !is_path_text(o.path_prefix))
    return "--path-prefix must start with / and hold no spaces or control characters";
  if (!is_path_text(o.room_prefix)) return "--room-prefix must hold no spaces or control characters";
  if (o.server_pid && *o.server_pid <= 0) return "--server-pid must be a process id";
  return std::nullopt;
}

LoadResult run_load(const LoadOptions& options, std::ostream& progress) {
  if (auto problem = check_options(options)) throw LoadError(*problem);
  LoadResult result;
  result.options = options;
  result.options.rooms = effective_rooms(options);
  const detail::Plan plan = make_plan(result.options);
  ensure_descriptors(options.connections);
  std::optional<std::uint64_t> rss_before_open;
  if (options.server_pid) {
    const auto before = sample_process(*options.server_pid);
    if (!before)
      throw LoadError("cannot read /proc/" + std::to_string(*options.server_pid) + " (no such process?)");
    rss_before_open = before->rss_bytes;
  }
  Coordinator coordinator(result.options, plan, progress, rss_before_open);
  coordinator.run(result);
  return result;
}

}  // namespace stateroom::load
