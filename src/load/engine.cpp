#include "engine.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <random>

#include "protocol/handshake.hpp"

namespace stateroom::load::detail {

namespace {

using protocol::Opcode;

constexpr std::int64_t ms = 1'000'000;
constexpr std::int64_t connect_timeout = 5000 * ms;  // TCP connect and upgrade together
constexpr std::int64_t reply_timeout = 5000 * ms;    // connect-churn: the echo of the cycle's message
constexpr std::int64_t close_timeout = 2000 * ms;    // the server's close frame, then its end of the stream
constexpr std::int64_t retry_delay = 100 * ms;       // connect-churn: the next cycle after a failed one
constexpr std::int64_t opening_limit = 60000 * ms;   // every connection open (or failed) by then
constexpr std::int64_t scan_interval = 100 * ms;     // deadlines are checked this often
constexpr std::size_t max_pending_opens = 128;       // connects and upgrades under way at once
constexpr std::size_t read_buffer_size = 256 * 1024;
constexpr std::size_t max_response_size = 16 * 1024;

constexpr std::uint8_t mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};

std::string errno_text(std::string_view call, int error = errno) {
  return std::string(call) + ": " + std::strerror(error);
}

std::uint64_t next_random(std::uint64_t& state) noexcept {  // splitmix64
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The value of header `name` in an HTTP response head (status line first), or empty.
std::string_view header_value(std::string_view head, std::string_view name) noexcept {
  std::size_t at = head.find("\r\n");
  while (at != std::string_view::npos) {
    const std::size_t begin = at + 2;
    at = head.find("\r\n", begin);
    const std::string_view line = head.substr(begin, at == std::string_view::npos ? head.npos : at - begin);
    const std::size_t colon = line.find(':');
    if (colon != std::string_view::npos && iequals(trim(line.substr(0, colon)), name))
      return trim(line.substr(colon + 1));
  }
  return {};
}

bool is_101(std::string_view status) noexcept {
  constexpr std::string_view expected = "HTTP/1.1 101";
  return status.starts_with(expected) && (status.size() == expected.size() || status[expected.size()] == ' ');
}

}  // namespace

std::int64_t now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string masked_frame(Opcode opcode, std::span<const std::uint8_t> payload) {
  std::string frame(protocol::header_size(payload.size(), true) + payload.size(), '\0');
  auto* out = reinterpret_cast<std::uint8_t*>(frame.data());
  const std::size_t header =
      protocol::write_header(out, {.opcode = opcode, .payload_size = payload.size(), .mask = mask_key});
  if (!payload.empty()) std::memcpy(out + header, payload.data(), payload.size());
  protocol::apply_mask({out + header, payload.size()}, mask_key);
  return frame;
}

Worker::Worker(const Plan& plan, const std::atomic<std::int64_t>& start, std::span<const std::size_t> indexes)
    : plan_(plan),
      start_(start),
      connections_(indexes.size()),
      buffer_(read_buffer_size),
      parser_options_{.max_message_size = plan.max_message_size, .expect_masked = false},
      key_state_((std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}()) {
  epoll_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_ < 0) throw LoadError(errno_text("epoll_create1"));
  for (std::size_t i = 0; i < indexes.size(); ++i) {
    Connection& c = connections_[i];
    c.index = indexes[i];
    c.room = c.index % plan.rooms;
    std::size_t unanswered = 0;  // messages it may have in flight
    switch (plan.workload) {
      case Workload::echo:
      case Workload::counter:
        unanswered = plan.in_flight;
        break;
      case Workload::broadcast:
        unanswered = c.index < plan.rooms ? plan.in_flight : 0;  // connection r is room r's first
        break;
      case Workload::connect_churn:
        unanswered = 1;
        break;
      case Workload::idle:
        break;
    }
    c.sender = unanswered > 0;
    c.sent.resize(unanswered);
    c.parser = protocol::Parser(parser_options_);
  }
}

Worker::~Worker() {
  for (Connection& c : connections_) close_socket(c);
  ::close(epoll_);
}

// --- the run ------------------------------------------------------------------------------------

void Worker::run() {
  std::array<epoll_event, 256> events{};
  std::int64_t now = now_ns();
  opening_deadline_ = now + opening_limit;
  next_scan_ = now + scan_interval;
  if (plan_.workload == Workload::connect_churn)
    next_open_ = connections_.size();  // its loops start with the run
  for (;;) {
    if (!started_) {
      open_more(now);
      if (next_open_ == connections_.size() && pending_ == 0)
        live_.opened.store(true, std::memory_order_release);
      if (const std::int64_t start = start_.load(std::memory_order_acquire); start != 0) begin(start, now);
    }
    if (started_ && !stopping_ && now >= end_) stop(now);
    if (stopping_ && (active_ == 0 || now >= stop_deadline_)) break;
    if (now >= next_scan_) {
      check_deadlines(now);
      next_scan_ = now + scan_interval;
    }
    publish();

    const std::int64_t wait = wait_timeout_ns(now);
    const timespec timeout{static_cast<time_t>(wait / 1'000'000'000), static_cast<long>(wait % 1'000'000'000)};
    const int ready = epoll_pwait2(epoll_, events.data(), static_cast<int>(events.size()), &timeout, nullptr);
    now = now_ns();
    for (int i = 0; i < ready; ++i) {
      Connection& c = *static_cast<Connection*>(events[static_cast<std::size_t>(i)].data.ptr);
      const std::uint32_t flags = events[static_cast<std::size_t>(i)].events;
      if (c.stage == Stage::connecting) {
        on_connected(c, now);
        continue;
      }
      const std::uint32_t generation = c.generation;
      if (flags & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c, now);
      if ((flags & EPOLLOUT) && c.generation == generation) flush(c);
    }
    if (started_ && !stopping_ && paced()) pace(now);
  }
  for (Connection& c : connections_) close_socket(c);
  result_.latency = latency_;
  result_.messages = measured_;
  publish();
}

std::int64_t Worker::wait_timeout_ns(std::int64_t now) const noexcept {
  std::int64_t until = next_scan_;
  if (!started_) {
    until = std::min(until, now + ms);  // watching for the start
  } else if (!stopping_) {
    until = std::min(until, now < warmup_end_ ? warmup_end_ : end_);
    if (paced()) {
      // The next message due, but no sooner than 100 us: what falls due meanwhile goes out in one
      // pass, a write per connection, as a busy client would send it.
      const auto next = pace_start_ + static_cast<std::int64_t>(static_cast<double>(paced_ + 1) * 1e9 / plan_.rate);
      until = std::min(until, std::max(next, now + 100'000));
    }
  } else {
    until = std::min(until, stop_deadline_);
  }
  return std::clamp<std::int64_t>(until - now, 0, 100 * ms);
}

void Worker::pace(std::int64_t now) {
  const auto due = static_cast<std::uint64_t>(static_cast<double>(now - pace_start_) * plan_.rate / 1e9);
  // Deal the due messages out one at a time, then give each connection its share in one write.
  pace_batch_.assign(connections_.size(), 0);
  for (std::size_t tried = 0; paced_ < due && tried < connections_.size();) {
    const std::size_t i = pace_next_;
    if (++pace_next_ == connections_.size()) pace_next_ = 0;
    const Connection& c = connections_[i];
    if (c.stage == Stage::open && c.sender && c.sent_count + pace_batch_[i] < c.sent.size()) {
      ++pace_batch_[i];
      ++paced_;
      tried = 0;
    } else {
      ++tried;
    }
  }
  for (std::size_t i = 0; i < connections_.size(); ++i)
    if (pace_batch_[i] > 0) send_messages(connections_[i], pace_batch_[i], now);
}

void Worker::publish() noexcept {
  live_.completed.store(completed_, std::memory_order_relaxed);
  live_.errors.store(error_total_, std::memory_order_relaxed);
  live_.open.store(open_, std::memory_order_relaxed);
}

void Worker::open_more(std::int64_t now) {
  while (next_open_ < connections_.size() && pending_ < max_pending_opens)
    start_connect(connections_[next_open_++], now);
}

void Worker::begin(std::int64_t start, std::int64_t now) {
  started_ = true;
  pace_start_ = start;
  warmup_end_ = start + plan_.warmup_ns;
  end_ = warmup_end_ + plan_.duration_ns;
  for (Connection& c : connections_) {
    if (plan_.workload == Workload::connect_churn)
      start_connect(c, now);
    else if (c.stage == Stage::open && c.sender && !paced())
      send_messages(c, plan_.in_flight, now);
  }
}

void Worker::stop(std::int64_t now) {
  stopping_ = true;  // from here on nothing counts: no errors, no messages
  result_.open_at_end = open_;
  stop_deadline_ = now + close_timeout + 500 * ms;
  for (Connection& c : connections_) {
    switch (c.stage) {
      case Stage::open:
        queue_close(c);
        c.deadline = now + close_timeout;
        flush(c);
        break;
      case Stage::connecting:
      case Stage::handshaking:
        close_socket(c);
        set_stage(c, Stage::done);
        break;
      case Stage::unused:
        set_stage(c, Stage::done);
        break;
      case Stage::closing:
      case Stage::draining:
        c.deadline = c.deadline == 0 ? now + close_timeout : std::min(c.deadline, now + close_timeout);
        break;
      case Stage::done:
        break;
    }
  }
}

void Worker::check_deadlines(std::int64_t now) {
  if (!started_ && (next_open_ < connections_.size() || pending_ > 0) && now >= opening_deadline_) {
    for (Connection& c : connections_) {
      if (c.stage == Stage::unused || c.stage == Stage::connecting || c.stage == Stage::handshaking)
        fail(c, ErrorKind::timeout, "not open 60 s after the first connect", now);
    }
    next_open_ = connections_.size();
  }
  for (Connection& c : connections_) {
    if (c.deadline == 0 || now < c.deadline) continue;
    c.deadline = 0;
    switch (c.stage) {
      case Stage::unused:  // connect-churn: the retry is due
        start_connect(c, now);
        break;
      case Stage::connecting:
        fail(c, ErrorKind::timeout, "no TCP connection within 5 s", now);
        break;
      case Stage::handshaking:
        fail(c, ErrorKind::timeout, "no upgrade response within 5 s", now);
        break;
      case Stage::open:  // connect-churn: the echo is late
        fail(c, ErrorKind::timeout, "no echo within 5 s", now);
        break;
      case Stage::closing:
        error(ErrorKind::timeout, "no close frame from the server within 2 s");
        close_socket(c);
        after_close(c, now);
        break;
      case Stage::draining:  // the close handshake is complete; the server just kept the socket
        close_socket(c);
        after_close(c, now);
        break;
      case Stage::done:
        break;
    }
  }
}

void Worker::error(ErrorKind kind, std::string_view what) {
  if (stopping_) return;
  ++error_total_;
  ErrorCounts& e = result_.errors;
  switch (kind) {
    case ErrorKind::connect:
      ++e.connect;
      break;
    case ErrorKind::handshake:
      ++e.handshake;
      break;
    case ErrorKind::closed:
      ++e.closed;
      break;
    case ErrorKind::protocol:
      ++e.protocol;
      break;
    case ErrorKind::mismatch:
      ++e.mismatch;
      break;
    case ErrorKind::timeout:
      ++e.timeout;
      break;
  }
  if (result_.first_error.empty()) result_.first_error = what;
}

void Worker::count_message(std::int64_t now) {
  ++completed_;
  if (measuring(now)) ++measured_;
}

void Worker::answer(Connection& c, std::int64_t now) {
  const std::int64_t sent = c.sent[c.sent_head];
  if (++c.sent_head == c.sent.size()) c.sent_head = 0;
  --c.sent_count;
  if (plan_.workload != Workload::connect_churn && measuring(now))
    latency_.record(static_cast<std::uint64_t>(now - sent));
}

// --- a connection's life ------------------------------------------------------------------------

void Worker::set_stage(Connection& c, Stage stage) {
  const auto pending = [](Stage s) { return s == Stage::connecting || s == Stage::handshaking; };
  const auto has_socket = [](Stage s) { return s != Stage::unused && s != Stage::done; };
  pending_ = pending_ - pending(c.stage) + pending(stage);
  open_ = open_ - (c.stage == Stage::open) + (stage == Stage::open);
  active_ = active_ - has_socket(c.stage) + has_socket(stage);
  c.stage = stage;
}

void Worker::start_connect(Connection& c, std::int64_t now) {
  const int fd = ::socket(plan_.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fail(c, ErrorKind::connect, errno_text("socket"), now);
    return;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c.fd = fd;
  c.cycle_start = now;
  c.deadline = now + connect_timeout;
  c.parser = protocol::Parser(parser_options_);
  set_stage(c, Stage::connecting);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&plan_.address), plan_.address_size) < 0 &&
      errno != EINPROGRESS) {
    fail(c, ErrorKind::connect, errno_text("connect"), now);
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.ptr = &c;
  if (epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) < 0) {
    fail(c, ErrorKind::connect, errno_text("epoll_ctl"), now);
    return;
  }
  c.write_armed = true;
}

void Worker::on_connected(Connection& c, std::int64_t now) {
  int problem = 0;
  socklen_t size = sizeof problem;
  if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &problem, &size) < 0) problem = errno;
  if (problem != 0) {
    fail(c, ErrorKind::connect, errno_text("connect", problem), now);
    return;
  }
  std::array<std::uint8_t, 16> random{};
  for (std::size_t i = 0; i < random.size(); i += 8) {
    const std::uint64_t bits = next_random(key_state_);
    std::memcpy(random.data() + i, &bits, 8);
  }
  const std::string key = protocol::make_client_key(random);
  c.accept = protocol::accept_key(key);
  c.control = "GET " + plan_.room_path + std::to_string(c.room) + " HTTP/1.1\r\nHost: " + plan_.host +
              "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
              "\r\nSec-WebSocket-Version: 13\r\n\r\n";
  c.control_sent = 0;
  set_stage(c, Stage::handshaking);
  flush(c);
}

void Worker::on_readable(Connection& c, std::int64_t now) {
  const ssize_t n = ::recv(c.fd, buffer_.data(), buffer_.size(), 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    if (c.stage == Stage::draining)
      on_eof(c, now);  // a reset after the close handshake
    else
      fail(c, c.stage == Stage::handshaking ? ErrorKind::handshake : ErrorKind::closed, errno_text("recv"),
           now);
    return;
  }
  if (n == 0) {
    on_eof(c, now);
    return;
  }
  const std::span<std::uint8_t> bytes(buffer_.data(), static_cast<std::size_t>(n));
  if (c.stage == Stage::handshaking)
    on_upgrade_response(c, bytes, now);
  else
    feed(c, bytes, now);
}

void Worker::on_upgrade_response(Connection& c, std::span<const std::uint8_t> bytes, std::int64_t now) {
  c.response.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const std::size_t head_end = c.response.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    if (c.response.size() > max_response_size)
      fail(c, ErrorKind::handshake, "the upgrade response never ends", now);
    return;
  }
  const std::string_view head(c.response.data(), head_end);
  const std::string_view status = head.substr(0, head.find("\r\n"));
  if (!is_101(status)) {
    fail(c, ErrorKind::handshake, "the upgrade was answered " + std::string(status), now);
    return;
  }
  if (header_value(head, "sec-websocket-accept") != c.accept) {
    fail(c, ErrorKind::handshake, "the upgrade response has a wrong Sec-WebSocket-Accept", now);
    return;
  }
  std::string early = c.response.substr(head_end + 4);  // frames that came with the response
  std::string().swap(c.response);
  std::string().swap(c.accept);
  c.deadline = 0;
  set_stage(c, Stage::open);
  on_open(c, now);
  if (!early.empty() && c.stage == Stage::open)
    feed(c, {reinterpret_cast<std::uint8_t*>(early.data()), early.size()}, now);
}

void Worker::on_open(Connection& c, std::int64_t now) {
  if (plan_.workload == Workload::connect_churn) {
    c.deadline = now + reply_timeout;
    send_messages(c, 1, now);
  } else if (started_ && !stopping_ && c.sender && !paced()) {
    send_messages(c, plan_.in_flight, now);
  }
}

void Worker::feed(Connection& c, std::span<std::uint8_t> bytes, std::int64_t now) {
  if (c.stage == Stage::draining) return;  // nothing after the server's close frame counts
  std::size_t answered = 0;
  for (bool more = true; more;) {
    const protocol::Event event = c.parser.next(bytes);
    switch (event.kind) {
      case protocol::Event::Kind::need_more:
        more = false;
        break;
      case protocol::Event::Kind::message:
        on_message(c, event, now, answered);
        break;
      case protocol::Event::Kind::ping:
        queue_control(c, Opcode::pong, event.payload);
        break;
      case protocol::Event::Kind::pong:
        break;
      case protocol::Event::Kind::close:
        on_server_close(c, event, now);
        more = false;
        break;
      case protocol::Event::Kind::error:
        fail(c, ErrorKind::protocol, "the server broke the protocol: " + std::string(event.reason), now);
        return;
    }
  }
  if (answered > 0 && c.stage == Stage::open && !stopping_ && plan_.workload != Workload::connect_churn && !paced())
    send_messages(c, answered, now);  // as many as were answered, in one write
  else
    flush(c);
}

void Worker::on_message(Connection& c, const protocol::Event& event, std::int64_t now,
                        std::size_t& answered) {
  if (c.stage != Stage::open) return;  // after our close frame: nothing is counted
  const bool binary = event.opcode == Opcode::binary;
  switch (plan_.workload) {
    case Workload::echo:
    case Workload::connect_churn:
      if (!binary)
        error(ErrorKind::mismatch, "a text reply to a binary message");
      else if (event.payload.size() != plan_.expected.size() ||
               (!event.payload.empty() &&
                std::memcmp(event.payload.data(), plan_.expected.data(), event.payload.size()) != 0))
        error(ErrorKind::mismatch, "an echo that differs from the message sent");
      break;
    case Workload::counter:
    case Workload::broadcast:
      if (binary) error(ErrorKind::mismatch, "a binary reply to `increment`");
      break;
    case Workload::idle:
      break;
  }
  if (plan_.workload != Workload::connect_churn) count_message(now);
  if (!c.sender) return;  // a broadcast member, or idle
  if (c.sent_count == 0) {
    error(ErrorKind::mismatch, "a reply with no message unanswered");
    return;
  }
  answer(c, now);
  ++answered;
  if (plan_.workload == Workload::connect_churn) {
    queue_close(c);
    c.deadline = now + close_timeout;
  }
}

void Worker::on_server_close(Connection& c, const protocol::Event& event, std::int64_t now) {
  if (c.stage == Stage::closing) {  // the answer to ours
    if (plan_.workload == Workload::connect_churn && !stopping_) {
      count_message(now);
      if (measuring(now)) latency_.record(static_cast<std::uint64_t>(now - c.cycle_start));
    }
  } else {
    std::string what = "the server closed the connection with " + std::to_string(event.close_code);
    if (!event.reason.empty()) what += " (" + std::string(event.reason) + ")";
    error(ErrorKind::closed, what);
    queue_close(c);  // the answer
  }
  set_stage(c, Stage::draining);
  c.deadline = now + close_timeout;
}

void Worker::on_eof(Connection& c, std::int64_t now) {
  switch (c.stage) {
    case Stage::draining:
      close_socket(c);
      after_close(c, now);
      break;
    case Stage::closing:
      error(ErrorKind::closed, "the server ended the connection without a close frame");
      close_socket(c);
      after_close(c, now);
      break;
    case Stage::handshaking:
      fail(c, ErrorKind::handshake, "the server ended the connection before answering the upgrade", now);
      break;
    default:
      fail(c, ErrorKind::closed, "the server ended the connection without a close frame", now);
      break;
  }
}

void Worker::after_close(Connection& c, std::int64_t now) {
  if (plan_.workload == Workload::connect_churn && !stopping_) {
    start_connect(c, now);  // the next cycle
  } else {
    set_stage(c, Stage::done);
    c.deadline = 0;
  }
}

void Worker::fail(Connection& c, ErrorKind kind, std::string_view what, std::int64_t now) {
  error(kind, what);
  close_socket(c);
  if (plan_.workload == Workload::connect_churn && !stopping_) {
    set_stage(c, Stage::unused);
    c.deadline = now + retry_delay;
  } else {
    set_stage(c, Stage::done);
    c.deadline = 0;
  }
}

void Worker::close_socket(Connection& c) {
  if (c.fd < 0) return;
  ::close(c.fd);  // also leaves the epoll set
  c.fd = -1;
  ++c.generation;
  c.write_armed = false;
  c.control.clear();
  c.control_sent = 0;
  c.data_offset = 0;
  c.data_pending = 0;
  c.sent_head = 0;
  c.sent_count = 0;
  c.response.clear();
  c.accept.clear();
}

// --- output -------------------------------------------------------------------------------------

void Worker::send_messages(Connection& c, std::size_t count, std::int64_t now) {
  for (std::size_t i = 0; i < count && c.sent_count < c.sent.size(); ++i) {
    std::size_t slot = c.sent_head + c.sent_count;
    if (slot >= c.sent.size()) slot -= c.sent.size();
    c.sent[slot] = now;
    ++c.sent_count;
    c.data_pending += plan_.frame_size;  // at most in_flight frames, so Plan::frames holds them
  }
  flush(c);
}

void Worker::queue_control(Connection& c, Opcode opcode, std::span<const std::uint8_t> payload) {
  c.control += masked_frame(opcode, payload);
}

void Worker::queue_close(Connection& c) {
  // Nothing may follow the close frame: only a frame already begun is finished.
  c.data_pending = c.data_offset == 0 ? 0 : plan_.frame_size - c.data_offset;
  c.control += plan_.close_frame;
  set_stage(c, Stage::closing);
}

void Worker::flush(Connection& c) {
  if (c.fd < 0) return;
  for (;;) {
    // Control bytes go out between data frames, never inside one.
    const bool control = c.control_sent < c.control.size() && c.data_offset == 0;
    const char* data = nullptr;
    std::size_t size = 0;
    if (control) {
      data = c.control.data() + c.control_sent;
      size = c.control.size() - c.control_sent;
    } else if (c.data_pending > 0) {
      data = plan_.frames.data() + c.data_offset;
      size = c.data_pending;
    } else {
      set_write_interest(c, false);
      return;
    }
    const ssize_t n = ::send(c.fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        set_write_interest(c, true);
      else
        fail(c, ErrorKind::closed, errno_text("send"), now_ns());
      return;
    }
    const auto written = static_cast<std::size_t>(n);
    if (control) {
      c.control_sent += written;
      if (c.control_sent == c.control.size()) {
        c.control.clear();
        c.control_sent = 0;
      }
    } else {
      c.data_pending -= written;
      c.data_offset = (c.data_offset + written) % plan_.frame_size;
    }
    if (written < size) {
      set_write_interest(c, true);
      return;
    }
  }
}

void Worker::set_write_interest(Connection& c, bool on) {
  if (c.write_armed == on || c.fd < 0) return;
  epoll_event ev{};
  ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
  ev.data.ptr = &c;
  epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
  c.write_armed = on;
}

}  // namespace stateroom::load::detail
