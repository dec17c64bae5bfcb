#include "stateroom/server.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <sys/resource.h>

#include <condition_variable>
#include <algorithm>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <stop_token>
#include <thread>

#include "../common/machine_memory.hpp"
#include "../common/thread_latency.hpp"
#include "../common/text.hpp"
#include "http_session.hpp"
#include "log_format.hpp"
#include "room.hpp"
#include "routes.hpp"
#include "stop_signals.hpp"
#include "worker.hpp"

namespace stateroom {

namespace asio = boost::asio;
using asio::ip::tcp;
using server::Worker;

namespace server {

Worker& Shared::worker_for_room(std::string_view room_id) const {
  return *workers[std::hash<std::string_view>{}(room_id) % workers.size()];
}

LoadedState load_state(StateStore& store, std::string_view room_id) {
  try {
    return store.load(room_id);
  } catch (const std::exception& e) {
    return LoadedState::unavailable(std::string("its snapshot cannot be read now: ") + e.what());
  }
}

std::optional<Refusal> Worker::admit_room(const std::string& room_id, const PeerAddress* creator, bool quiet_if_full) {
  auto why = shared.admission.admit_room(creator);
  if (!why) return std::nullopt;
  if (*why == Refusal::rooms) {
    if (!quiet_if_full) report_rooms_full(room_id);
    return why;
  }
  const auto& limits = shared.admission.limits();
  shared.admission.log.report(
      *why, *why == Refusal::rooms_per_ip
                ? fmt::format("refused to create room '{}': its client's address has created {} rooms that are "
                              "alive (--max-rooms-per-ip)",
                              room_id, limits.rooms_per_ip)
                : fmt::format("refused to create room '{}': its client's address creates rooms faster than "
                              "--max-new-rooms-per-ip {} a second",
                              room_id, limits.new_rooms_per_ip_per_second));
  return why;
}

void Worker::report_rooms_full(const std::string& room_id) {
  shared.admission.log.report(Refusal::rooms,
                              fmt::format("refused to create room '{}': {} rooms are alive (--max-rooms {}), every "
                                          "one with a client",
                                          room_id, shared.admission.rooms(), shared.admission.limits().rooms));
}

namespace {
/// A room empty for a moment is worth less than one somebody is in: the one empty for longest
/// makes way first.
std::shared_ptr<Room> oldest_empty_room(const Worker& w) {
  std::shared_ptr<Room> oldest;
  for (const auto& [id, room] : w.rooms)
    if (room->empty() && !room->making_way_now() && (!oldest || room->empty_since() < oldest->empty_since()))
      oldest = room;
  return oldest;
}
}  // namespace

bool Worker::make_way_for(const std::string& room_id, const PeerAddress* creator, RoomReady& ready) {
  auto victim = oldest_empty_room(*this);
  if (!victim && shared.workers.size() == 1) return false;
  // Without an empty room here, the other workers are asked in turn; the connect is refused when
  // none has one (no_way).
  const std::uint64_t ask = victim ? 0 : ++asks_;
  awaiting_place.push_back({room_id, creator ? std::optional<PeerAddress>(*creator) : std::nullopt, std::move(ready),
                            std::chrono::steady_clock::now() + make_way_timeout, ask});
  if (!place_timer) place_timer.emplace(ioc);
  if (awaiting_place.size() == 1) {
    place_timer->expires_after(make_way_timeout);
    place_timer->async_wait([this](boost::system::error_code ec) {
      if (!ec && !shutting_down) retry_awaiting_place();
    });
  }
  if (victim) {
    victim->make_way(*this);  // may end it now, and post the retry
  } else {
    Worker& next = *shared.workers[(index + 1) % shared.workers.size()];
    boost::asio::post(next.ioc, [&next, &requester = *this, ask] { next.give_way(requester, ask, 1); });
  }
  return true;
}

void Worker::give_way(Worker& requester, std::uint64_t ask, std::size_t asked) {
  if (shutting_down) return;
  if (auto room = oldest_empty_room(*this)) {
    room->make_way(requester);  // its end tells the requester (place_freed)
    return;
  }
  if (asked + 1 < shared.workers.size()) {
    Worker& next = *shared.workers[(index + 1) % shared.workers.size()];
    boost::asio::post(next.ioc, [&next, &requester, ask, asked] { next.give_way(requester, ask, asked + 1); });
    return;
  }
  boost::asio::post(requester.ioc, [&requester, ask] { requester.no_way(ask); });
}

void Worker::no_way(std::uint64_t ask) {
  const auto it = std::find_if(awaiting_place.begin(), awaiting_place.end(), [&](auto& w) { return w.ask == ask; });
  if (it == awaiting_place.end()) return;  // tried again meanwhile: a later ask answers
  AwaitingPlace refused = std::move(*it);
  awaiting_place.erase(it);
  report_rooms_full(refused.room_id);
  refused.ready(nullptr, Refusal::rooms);
}

void Worker::place_freed() {
  if (awaiting_place.empty() || place_retry_posted_ || shutting_down) return;
  place_retry_posted_ = true;
  boost::asio::post(ioc, [this] {
    place_retry_posted_ = false;
    if (!shutting_down) retry_awaiting_place();
  });
}

void Worker::retry_awaiting_place() {
  auto waiting = std::move(awaiting_place);
  awaiting_place.clear();
  const auto now = std::chrono::steady_clock::now();
  for (auto& w : waiting) {
    if (now >= w.deadline) {
      report_rooms_full(w.room_id);
      w.ready(nullptr, Refusal::rooms);
      continue;
    }
    with_room(w.room_id, w.creator ? &*w.creator : nullptr, std::move(w.ready));
  }
  if (!awaiting_place.empty() && place_timer) {
    place_timer->expires_at(awaiting_place.front().deadline);
    place_timer->async_wait([this](boost::system::error_code ec) {
      if (!ec && !shutting_down) retry_awaiting_place();
    });
  }
}

std::shared_ptr<Room> Worker::create_room(const std::string& room_id, LoadedState saved, const PeerAddress* creator,
                                          std::optional<Refusal>* refused, MemoryCharge charge) {
  std::string unavailable;
  auto room = Room::create(*this, room_id, std::move(saved), &unavailable, std::move(charge));
  if (!room) {
    shared.admission.room_ended(creator);
    if (!unavailable.empty()) {
      if (refused) *refused = Refusal::room_unavailable;
      shared.admission.log.report(Refusal::room_unavailable,
                                  fmt::format("refused to create room '{}': {}", room_id, unavailable));
    }
    return nullptr;
  }
  room->count_in_budget(creator);
  rooms[room_id] = room;
  return room;
}

std::shared_ptr<Room> Worker::find_or_create_room(const std::string& room_id, const PeerAddress* creator,
                                                  std::optional<Refusal>* refused) {
  if (auto it = rooms.find(room_id); it != rooms.end() && it->second->alive()) return it->second;
  if (auto why = admit_room(room_id, creator)) {
    if (refused) *refused = why;
    return nullptr;
  }
  return create_room(room_id, shared.store ? load_state(*shared.store, room_id) : LoadedState::none(), creator,
                     refused);
}

void Worker::with_room(const std::string& room_id, const PeerAddress* creator, RoomReady ready) {
  if (auto it = rooms.find(room_id); it != rooms.end() && it->second->alive()) return ready(it->second, {});
  if (auto it = waking.find(room_id); it != waking.end()) {
    it->second.push_back(std::move(ready));
    return;
  }
  if (auto why = admit_room(room_id, creator, true)) {
    if (*why == Refusal::rooms) {
      if (make_way_for(room_id, creator, ready)) return;
      report_rooms_full(room_id);
    }
    return ready(nullptr, why);
  }
  if (!shared.store) {
    std::optional<Refusal> refused;
    auto room = create_room(room_id, LoadedState::none(), creator, &refused);
    return ready(std::move(room), refused);
  }
  waking[room_id].push_back(std::move(ready));
  const std::optional<PeerAddress> by = creator ? std::optional<PeerAddress>(*creator) : std::nullopt;
  shared.state_loader->post([this, room_id, by, store = shared.store, memory = shared.memory] {
    auto saved = load_state(*store, room_id);
    // Counted from here until the room is restored (a room may always take its own snapshot in:
    // its instance must fit the budget too, and that is what refuses it).
    memory->take_anyway(saved.snapshot.size());
    MemoryCharge charge(memory.get(), saved.snapshot.size());
    boost::asio::post(ioc, [this, room_id, by, saved = std::move(saved), charge = std::move(charge)]() mutable {
      woke(room_id, by ? &*by : nullptr, std::move(saved), std::move(charge));
    });
  });
}

void Worker::woke(const std::string& room_id, const PeerAddress* creator, LoadedState saved, MemoryCharge charge) {
  auto it = waking.find(room_id);
  if (it == waking.end()) return;
  auto waiting = std::move(it->second);
  waking.erase(it);
  std::optional<Refusal> refused;
  std::shared_ptr<Room> room;
  if (shutting_down) {
    shared.admission.room_ended(creator);
  } else {
    room = create_room(room_id, std::move(saved), creator, &refused, std::move(charge));
  }
  for (auto& ready : waiting) ready(room, refused);
}

void Worker::tick_snapshots(std::chrono::milliseconds interval, std::chrono::milliseconds first) {
  if (!snapshot_timer) snapshot_timer.emplace(ioc);
  snapshot_timer->expires_after(first);
  snapshot_timer->async_wait([this, interval](boost::system::error_code ec) {
    if (ec || shutting_down) return;
    ++snapshot_tick;
    constexpr std::uint64_t due = 2, behind = snapshot_late_ticks;  // in ticks, four to an interval
    std::vector<std::shared_ptr<Room>> unsaved;
    std::size_t late = 0;
    const Room* oldest = nullptr;
    for (auto& [id, room] : rooms) {
      if (!room->unsaved()) continue;
      const std::uint64_t age = snapshot_tick - room->unsaved_since();
      if (age >= due) unsaved.push_back(room);
      if (age >= behind) ++late;
      if (!oldest || room->unsaved_since() < oldest->unsaved_since()) oldest = room.get();
    }
    std::sort(unsaved.begin(), unsaved.end(),
              [](const auto& a, const auto& b) { return a->unsaved_since() < b->unsaved_since(); });
    for (auto& room : unsaved) queue_step(room, SnapshotStep::save);
    const auto now = std::chrono::steady_clock::now();
    if (late > 0 && now - behind_reported_ >= std::chrono::seconds(10)) {
      behind_reported_ = now;
      spdlog::warn("snapshots fall behind: {} room(s) have events not saved for more than two --snapshot-interval "
                   "({} ms) (the oldest, '{}', for {} ms); a crash now would lose them",
                   late, 2 * interval.count(), oldest->id(),
                   (snapshot_tick - oldest->unsaved_since()) * static_cast<std::uint64_t>(interval.count()) / 4);
    }
    const auto tick = std::max(interval / 4, std::chrono::milliseconds(1));
    tick_snapshots(interval, tick);
  });
}

void Worker::report_memory_wait(const std::string& room_id, std::size_t bytes, bool hibernating) {
  const auto now = std::chrono::steady_clock::now();
  if (now - memory_reported_ < std::chrono::seconds(10)) {
    ++memory_unreported_;
    return;
  }
  spdlog::warn("room '{}': its snapshot ({} so far) does not fit the memory of all rooms ({} of {} in use); {}{}",
               room_id, detail::format_bytes(bytes), detail::format_bytes(shared.memory->used()),
               detail::format_bytes(shared.memory->limit()),
               hibernating ? "it stays alive and hibernates later" : "it is taken at a later interval",
               memory_unreported_ ? fmt::format(" ({} more snapshots waited)", memory_unreported_) : "");
  memory_reported_ = now;
  memory_unreported_ = 0;
}

void Worker::queue_step(const std::shared_ptr<Room>& room, SnapshotStep why) {
  if (room.get() == stepping_) {  // asked for by the room's own step: it keeps its place
    asked_ = asked_ ? std::min(*asked_, why) : why;
    return;
  }
  if (room->queued_step) {
    if (why < *room->queued_step && why != SnapshotStep::save) {
      // Now more urgent (a room queued for a periodic snapshot hibernates): it goes ahead of the
      // periodic snapshots, which may be waiting for the store.
      auto it = std::find_if(steps_.begin(), steps_.end(), [&](const auto& w) { return w.lock() == room; });
      if (it != steps_.end()) steps_.erase(it);
      steps_.push_front(room);
    }
    room->queued_step = std::min(*room->queued_step, why);
    return;
  }
  room->queued_step = why;
  if (why == SnapshotStep::save) {
    steps_.push_back(room);
  } else {
    steps_.push_front(room);
  }
  if (!steps_posted_) {
    steps_posted_ = true;
    boost::asio::post(ioc, [this] { take_steps(); });
  }
}

void Worker::take_steps() {
  steps_posted_ = false;
  // Pieces of snapshot_piece_bytes until snapshot_pass_time has gone or snapshot_step_bytes are
  // copied: on a busy machine (page faults charged to a cgroup, a CPU shared with the writer) 2 MiB
  // can take 10 ms, while a neighbour's message waits behind the pass.
  const auto pass_ends = std::chrono::steady_clock::now() + snapshot_pass_time;
  std::size_t budget = snapshot_step_bytes;
  bool store_behind = false;
  while (!steps_.empty() && budget > 0 && !shutting_down) {
    auto room = steps_.front().lock();
    if (!room || !room->queued_step) {
      steps_.pop_front();
      continue;
    }
    bool done = false;
    const SnapshotStep why = *room->queued_step;
    // A periodic snapshot begins only when the store is ready to write it soon (those behind it
    // in the queue are periodic too: hibernations and restores go first).
    // A room unsaved for two intervals goes all the same: hibernations keep the store busy too,
    // and must not starve it.
    if (why == SnapshotStep::save && room->state() != Room::State::saving && shared.store &&
        snapshot_tick - room->unsaved_since() < snapshot_late_ticks &&
        shared.store->writes_in_flight() >= StateStore::max_writes_in_flight) {
      store_behind = true;
      break;
    }
    stepping_ = room.get();
    asked_.reset();
    // Even a small room's step costs something: a pass takes a few hundred of them at most.
    const std::size_t took =
        std::max<std::size_t>(room->take_step(why, std::min(budget, snapshot_piece_bytes), done), 4096);
    stepping_ = nullptr;
    // A step asked for meanwhile (the room hibernates once saved) keeps the room's place; else a
    // room done leaves the queue.
    if (asked_) {
      room->queued_step = done ? *asked_ : std::min(why, *asked_);
    } else if (done) {
      room->queued_step.reset();
      auto it = std::find_if(steps_.begin(), steps_.end(), [&](const auto& w) { return w.lock() == room; });
      if (it != steps_.end()) steps_.erase(it);
    }
    budget -= std::min(budget, took);
    if (std::chrono::steady_clock::now() >= pass_ends) break;
  }
  if (store_behind) {
    wait_for_store();
  } else if (!steps_.empty() && !shutting_down) {
    steps_posted_ = true;
    boost::asio::post(ioc, [this] { take_steps(); });
  }
}

void Worker::wait_for_store() {
  if (store_wait_armed_) return;
  if (!store_wait) store_wait.emplace(ioc);
  store_wait_armed_ = true;
  store_wait->expires_after(store_wait_period);
  store_wait->async_wait([this](boost::system::error_code ec) {
    store_wait_armed_ = false;
    if (!ec && !shutting_down) take_steps();
  });
}

}  // namespace server

namespace {

std::once_flag log_env_once;

// STATEROOM_LOG sets the initial level; an explicit set_log_level call overrides it. Logged
// messages are escaped from here on (server::escape_logged_messages).
void apply_log_env() {
  std::call_once(log_env_once, [] {
    server::escape_logged_messages();
    if (const char* env = std::getenv("STATEROOM_LOG"); env && *env) {
      if (is_log_level(env)) {
        spdlog::set_level(spdlog::level::from_str(env));
      } else {
        spdlog::warn("STATEROOM_LOG='{}' is not a log level ({})", env, log_level_names());
      }
    }
  });
}

/// Raises the soft descriptor limit to the hard one and returns the connections that fit in it:
/// 90 % of it, keeping at least 32 descriptors for everything else (the listening socket, the
/// event loops, files, modules, logs).
std::size_t connections_that_fit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1000;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 10'000'000) return 9'000'000;
  const auto fds = static_cast<std::size_t>(rl.rlim_cur);
  const std::size_t reserve = std::max<std::size_t>(32, fds / 10);
  return fds > reserve + 8 ? fds - reserve : 8;
}

/// Errors of accept that mean the process (or the system) is out of descriptors or memory: retrying
/// at once would spin.
bool is_resource_exhaustion(const boost::system::error_code& ec) {
  return ec == asio::error::no_descriptors || ec == boost::system::errc::too_many_files_open_in_system ||
         ec == asio::error::no_buffer_space || ec == asio::error::no_memory;
}

constexpr auto accept_pause = std::chrono::milliseconds(100);

/// Answers a connection over a budget with 503 (best effort: whatever the socket takes now) and closes it.
void refuse_connection(tcp::socket& socket) {
  static constexpr std::string_view response =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\n"
      "Connection: close\r\nContent-Length: 49\r\nServer: stateroom\r\n\r\n"
      "the server is at its connection limit; try again\n";
  static_assert(response.size() - response.find("\r\n\r\n") - 4 == 49);
  boost::system::error_code ec;
  socket.non_blocking(true, ec);
  socket.write_some(asio::buffer(response.data(), response.size()), ec);
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
}

/// Names, in one warning, the rooms kept in `store` that this run's limits leave out: those whose
/// snapshot `factory` would restore but says cannot fit (ServiceFactory::snapshot_misfit), after
/// a restart with a lower --memory-limit, say. Their files stay; each room is refused with 1013
/// when asked for, until the limits take it. Runs at start on a thread of its own.
void report_misfits(StateStore& store, const ServiceFactory& factory, ServerOptions::OnModuleChange mode,
                    const std::string& where, std::stop_token stop) {
  // The room's own part (its members included) and the service's first bytes.
  constexpr std::size_t head_bytes = 64 * 1024;
  std::size_t surveyed = 0, misfits = 0;
  std::string named;
  store.survey(head_bytes, [&](std::string_view room_id, std::span<const std::byte> head) {
    if (stop.stop_requested()) return false;
    ++surveyed;
    std::string why;
    const auto room = server::Room::read_room_snapshot_head(head, why);
    if (!room || !server::Room::restores_snapshot_of(room->identity, room->layout, factory, mode)) return true;
    const auto misfit =
        factory.snapshot_misfit(room->service.first(std::min(room->service.size(), ServiceFactory::snapshot_head_bytes)));
    if (!misfit) return true;
    if (++misfits <= 10) named += fmt::format("{}'{}' ({})", named.empty() ? "" : ", ", room_id, *misfit);
    return true;
  });
  if (misfits == 0) {
    spdlog::debug("state directory: the {} room(s) asleep in {} fit this run's limits", surveyed, where);
    return;
  }
  spdlog::warn("state directory: {} of the {} room(s) asleep in {} no longer fit this run's limits; their snapshots "
               "are kept, and each is refused with 1013 until the limits take it: {}{}",
               misfits, surveyed, where, named, misfits > 10 ? fmt::format(", and {} more", misfits - 10) : "");
}

}  // namespace

bool is_log_level(std::string_view name) noexcept {
  return std::find(log_levels.begin(), log_levels.end(), name) != log_levels.end();
}

std::string log_level_names() {
  std::string out;
  for (std::size_t i = 0; i < log_levels.size(); ++i) {
    if (i > 0) out += i + 1 == log_levels.size() ? " or " : ", ";
    out += log_levels[i];
  }
  return out;
}

bool set_log_level(std::string_view name) {
  apply_log_env();
  if (!is_log_level(name)) return false;
  spdlog::set_level(spdlog::level::from_str(std::string(name)));
  return true;
}

struct Server::Impl {
  server::Shared shared;
  std::optional<tcp::acceptor> acceptor;
  std::optional<asio::steady_timer> accept_timer;  ///< accepting paused while out of descriptors
  std::size_t next_worker = 0;
  std::uint16_t port = 0;

  std::mutex mutex;
  std::condition_variable stopped_cv;  ///< signalled when stopping begins and when it is done
  bool started = false;
  bool stopping = false;
  bool joining = false;  ///< a thread is joining the workers
  bool stopped = false;

  /// Whether the calling thread is one of the workers (a service's handler, say).
  bool on_worker_thread() const noexcept {
    for (const auto& worker : shared.workers)
      if (worker->thread.get_id() == std::this_thread::get_id()) return true;
    return false;
  }
  /// Starts the graceful shutdown (once); the workers finish it on their own.
  void begin_stop();
  /// Joins the workers once they are done (from a thread that is not one of them), or waits for
  /// the thread that does.
  void finish_stop();

  void accept_next();
  void drain(Worker& worker, std::chrono::steady_clock::time_point deadline,
             std::shared_ptr<asio::steady_timer> timer);

  /// The look at start over the rooms kept in the store (report_misfits); last, so that it is
  /// stopped and joined before anything it uses goes.
  std::jthread survey;
};

Server::Server(std::shared_ptr<ServiceFactory> factory, ServerOptions options)
    : impl_(std::make_unique<Impl>()) {
  apply_log_env();
  impl_->shared.factory.store(std::make_shared<const server::FactoryVersion>(server::FactoryVersion{std::move(factory), 0}));
  impl_->shared.options = std::move(options);
}

Server::~Server() {
  stop();
}

std::uint16_t Server::port() const noexcept {
  return impl_->port;
}

Status Server::start() {
  auto& impl = *impl_;
  auto& options = impl.shared.options;
  if (!impl.shared.factory.load()->factory) return Status::error("no service factory");
  if (options.default_room.empty() || options.default_room.size() > server::max_room_id_bytes) {
    return Status::error("the default room id must be 1 to 256 bytes");
  }
  if (options.idle_timeout <= options.ping_interval) {
    return Status::error("the idle timeout must be longer than the ping interval");
  }
  if (options.max_send_bytes > server::largest_queueable(options.max_queued_bytes) ||
      server::largest_queueable(options.max_queued_bytes) == 0) {
    return Status::error("the send queue (--max-queued) must hold the largest message a room may send (--max-send-size)");
  }
  if (options.compression_window_bits < protocol::min_server_window_bits ||
      options.compression_window_bits > protocol::max_window_bits) {
    return Status::error("the compression window must be 9 to 15 bits");
  }
  if (auto error = impl.shared.gate.configure(options, &impl.shared.admission.log)) return Status::error(*error);
  impl.shared.memory = options.memory_budget ? options.memory_budget
                                             : std::make_shared<MemoryBudget>(detail::half_the_memory());
  if (options.state_store) {
    impl.shared.store = options.state_store;
  } else if (!options.state_dir.empty()) {
    try {
      impl.shared.store = make_directory_store(options.state_dir, {.max_bytes = options.state_max_bytes,
                                                                   .max_rooms = options.state_max_rooms,
                                                                   .ttl = options.state_ttl,
                                                                   .memory = impl.shared.memory});
    } catch (const std::exception& e) {
      return Status::error(e.what());
    }
  }
  if (impl.shared.store) impl.shared.state_loader = std::make_unique<server::IoThread>();
  impl.shared.admission.configure({
      .connections = options.max_connections ? options.max_connections : connections_that_fit(),
      .connections_per_ip = options.max_connections_per_ip,
      .rooms = options.max_rooms,
      .new_rooms_per_ip_per_second = options.max_new_rooms_per_ip,
      .rooms_per_ip = options.max_rooms_per_ip,
      .inflate_per_ip_per_second = options.max_inflate_rate,
      .inflate_burst = std::max<std::uint64_t>(options.max_inflate_rate, options.max_message_bytes),
  });
  unsigned threads = options.threads ? options.threads : std::thread::hardware_concurrency();
  if (threads == 0) threads = 1;
  for (unsigned i = 0; i < threads; ++i)
    impl.shared.workers.push_back(std::make_unique<Worker>(impl.shared, i));

  boost::system::error_code ec;
  auto address = asio::ip::make_address(options.host, ec);
  tcp::endpoint endpoint;
  if (ec) {
    tcp::resolver resolver(impl.shared.workers[0]->ioc);
    auto results = resolver.resolve(options.host, std::to_string(options.port), ec);
    if (ec || results.empty()) {
      impl.shared.workers.clear();
      return Status::error("cannot resolve host '" + options.host + "': " + ec.message());
    }
    endpoint = results.begin()->endpoint();
  } else {
    endpoint = tcp::endpoint(address, options.port);
  }
  const std::string where = options.host + ":" + std::to_string(options.port);
  auto& acceptor = impl.acceptor.emplace(impl.shared.workers[0]->ioc);
  impl.accept_timer.emplace(impl.shared.workers[0]->ioc);
  if (acceptor.open(endpoint.protocol(), ec); ec) {
    impl.accept_timer.reset();
    impl.acceptor.reset();
    impl.shared.workers.clear();
    return Status::error("cannot listen on " + where + ": " + ec.message());
  }
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (acceptor.bind(endpoint, ec); !ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    impl.accept_timer.reset();
    impl.acceptor.reset();
    impl.shared.workers.clear();
    return Status::error("cannot listen on " + where + ": " + ec.message());
  }
  impl.port = acceptor.local_endpoint().port();
  if (!options.client_dir.empty() || !options.static_dir.empty()) impl.shared.files = std::make_unique<server::FileReader>();
  impl.accept_next();
  for (auto& worker : impl.shared.workers) {
    // Staggered: the workers' ticks spread over the first quarter interval.
    if (impl.shared.store && options.snapshot_interval.count() > 0)
      worker->tick_snapshots(options.snapshot_interval,
                             options.snapshot_interval / 4 * (worker->index + 1) / impl.shared.workers.size());
    worker->thread = std::thread([&w = *worker] {
      // A worker wakes for a message and answers in microseconds: it should not wait for a busy
      // thread's slice (the state writer compressing, another process) to end first.
      detail::request_short_slice(server::Worker::scheduler_slice);
      w.ioc.run();
    });
  }
  {
    std::lock_guard lock(impl.mutex);
    impl.started = true;
  }
  spdlog::info("listening on {}:{} with {} worker thread(s)", options.host, impl.port, threads);
  if (impl.shared.store) {
    impl.survey = std::jthread([store = impl.shared.store, factory = impl.shared.factory.load()->factory,
                                mode = options.on_module_change,
                                where = options.state_dir.empty() ? std::string("the store") : options.state_dir](
                                   std::stop_token stop) { report_misfits(*store, *factory, mode, where, stop); });
  }
  return {};
}

void Server::Impl::accept_next() {
  Worker& worker = *shared.workers[next_worker++ % shared.workers.size()];
  acceptor->async_accept(worker.ioc, [this, &worker](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor->is_open()) return;
    if (is_resource_exhaustion(ec)) {
      // Out of descriptors: the pending connection stays in the backlog. Retrying now would spin
      // (and log) at full speed; wait until connections have had a chance to close.
      shared.admission.log.report(
          server::Refusal::accept_failed,
          fmt::format("cannot accept connections: {} ({} open); accepting again in {} ms", ec.message(),
                      shared.admission.connections(), accept_pause.count()));
      accept_timer->expires_after(accept_pause);
      accept_timer->async_wait([this](boost::system::error_code wait_ec) {
        if (!wait_ec && acceptor->is_open()) accept_next();
      });
      return;
    }
    if (ec) {
      spdlog::debug("accept failed: {}", ec.message());  // the peer gave up first: nothing to do
      accept_next();
      return;
    }
    boost::system::error_code remote_ec;
    const auto remote = socket.remote_endpoint(remote_ec);
    if (remote_ec) {  // already gone
      accept_next();
      return;
    }
    server::Refusal why{};
    auto ticket = shared.admission.admit(server::peer_address(remote.address()), &why);
    if (!ticket) {
      const auto& limits = shared.admission.limits();
      shared.admission.log.report(
          why, why == server::Refusal::connections
                   ? fmt::format("refused a connection from {}: {} connections are open (--max-connections {})",
                                 remote.address().to_string(), shared.admission.connections(), limits.connections)
                   : fmt::format("refused a connection from {}: that address has {} open (--max-connections-per-ip)",
                                 remote.address().to_string(), limits.connections_per_ip));
      refuse_connection(socket);
      accept_next();
      return;
    }
    socket.set_option(tcp::no_delay(true), ec);
    // The socket already lives on `worker`'s io_context; run its session there.
    asio::post(worker.ioc, [&worker, socket = std::move(socket), ticket = std::move(*ticket)]() mutable {
      std::make_shared<server::HttpSession>(worker, std::move(socket), std::move(ticket))->start();
    });
    accept_next();
  });
}

void Server::Impl::drain(Worker& worker, std::chrono::steady_clock::time_point deadline,
                         std::shared_ptr<asio::steady_timer> timer) {
  if (worker.websocket_sessions == 0 || std::chrono::steady_clock::now() >= deadline) {
    worker.rooms.clear();
    // Connects still waiting for a room's state go with the loop, before the reactor they live on.
    auto waking = std::move(worker.waking);
    worker.waking.clear();
    waking.clear();
    auto awaiting = std::move(worker.awaiting_place);
    worker.awaiting_place.clear();
    awaiting.clear();
    worker.work.reset();
    worker.ioc.stop();
    return;
  }
  timer->expires_after(std::chrono::milliseconds(10));
  timer->async_wait(
      [this, &worker, deadline, timer](boost::system::error_code) { drain(worker, deadline, timer); });
}

namespace {

/// Moves the outdated rooms of `worker` named in `ids` to the current factory, and tries the busy
/// ones again shortly until each has moved or ended.
void carry_rooms_over(server::Worker& worker, std::vector<std::string> ids) {
  std::vector<std::string> busy;
  for (auto& id : ids) {
    auto it = worker.rooms.find(id);
    if (it == worker.rooms.end()) continue;
    auto room = it->second;  // carrying over may end it, which removes it from the registry
    if (!room->carry_over()) busy.push_back(std::move(id));
  }
  if (busy.empty() || worker.shutting_down) return;
  auto timer = std::make_shared<asio::steady_timer>(worker.ioc, std::chrono::milliseconds(10));
  timer->async_wait([&worker, timer, busy = std::move(busy)](boost::system::error_code ec) mutable {
    if (!ec) carry_rooms_over(worker, std::move(busy));
  });
}

}  // namespace

void Server::replace_factory(std::shared_ptr<ServiceFactory> factory, RunningRooms running) {
  auto& impl = *impl_;
  auto& current = impl.shared.factory;
  const std::uint64_t generation = current.load()->generation + 1;
  current.store(std::make_shared<const server::FactoryVersion>(server::FactoryVersion{std::move(factory), generation}));
  std::lock_guard lock(impl.mutex);
  if (!impl.started || impl.stopping) return;  // the workers are not running (or going away)
  // Every worker deals with its rooms built by an older factory and reports what it did; the last
  // one to report logs it.
  struct Report {
    std::mutex mutex;
    std::vector<std::string> rooms;  ///< kept on the old service, or moving over once not busy
    std::size_t pending;
  };
  auto report = std::make_shared<Report>();
  report->pending = impl.shared.workers.size();
  for (auto& worker : impl.shared.workers) {
    asio::post(worker->ioc, [&w = *worker, report, running] {
      std::vector<std::string> outdated, later;
      for (const auto& [id, room] : w.rooms)
        if (room->outdated()) outdated.push_back(id);
      for (const auto& id : outdated) {
        auto it = w.rooms.find(id);
        if (it == w.rooms.end()) continue;
        auto room = it->second;  // ending a room removes it from the registry
        const bool done = running == RunningRooms::carry_over ? room->carry_over() : room->end_if_replaced();
        if (!done) later.push_back(id);
      }
      if (running == RunningRooms::carry_over && !later.empty()) carry_rooms_over(w, later);
      std::lock_guard lock(report->mutex);
      report->rooms.insert(report->rooms.end(), later.begin(), later.end());
      if (--report->pending > 0) return;
      if (report->rooms.empty()) {
        spdlog::info("service replaced: every room runs the new one");
        return;
      }
      std::sort(report->rooms.begin(), report->rooms.end());
      std::string list;
      for (const auto& id : report->rooms) list += (list.empty() ? "'" : ", '") + id + "'";
      if (running == RunningRooms::carry_over) {
        spdlog::info("service replaced; {} room(s) busy in a handler move to it once the handler returns: {}",
                     report->rooms.size(), list);
      } else {
        spdlog::info("service replaced for new rooms; {} room(s) keep the previous one until they empty: {}",
                     report->rooms.size(), list);
      }
    });
  }
}

void Server::Impl::begin_stop() {
  {
    std::lock_guard lock(mutex);
    if (!started || stopping) return;
    stopping = true;
  }
  stopped_cv.notify_all();
  spdlog::info("shutting down");
  asio::post(shared.workers[0]->ioc, [this] {
    boost::system::error_code ignored;
    acceptor->close(ignored);
    accept_timer->cancel();
  });
  // A close handshake gets close_timeout; the socket deadline in each session enforces it, and the
  // drain gives up shortly after.
  const auto deadline = std::chrono::steady_clock::now() + shared.options.close_timeout + std::chrono::milliseconds(500);
  for (auto& worker : shared.workers) {
    asio::post(worker->ioc, [this, &w = *worker, deadline] {
      w.shutting_down = true;
      if (w.snapshot_timer) w.snapshot_timer->cancel();
      if (w.store_wait) w.store_wait->cancel();
      if (w.place_timer) w.place_timer->cancel();
      auto rooms = w.rooms;  // rooms leave the registry as they shut down
      for (auto& [id, room] : rooms) room->shut_down();
      drain(w, deadline, std::make_shared<asio::steady_timer>(w.ioc));
    });
  }
}

void Server::Impl::finish_stop() {
  {
    std::unique_lock lock(mutex);
    if (!started || stopped) return;
    if (joining) {
      stopped_cv.wait(lock, [&] { return stopped; });
      return;
    }
    joining = true;
  }
  for (auto& worker : shared.workers) {
    if (worker->thread.joinable()) worker->thread.join();
  }
  accept_timer.reset();
  acceptor.reset();
  shared.files.reset();  // joined before the workers go: it posts to them
  shared.state_loader.reset();
  shared.workers.clear();
  if (shared.store) shared.store->flush();  // the rooms' last snapshots, on disk before "stopped"
  {
    std::lock_guard lock(mutex);
    stopped = true;
  }
  stopped_cv.notify_all();
  spdlog::info("stopped");
}

void Server::stop() {
  auto& impl = *impl_;
  impl.begin_stop();
  // A worker cannot wait for itself: from a handler, the shutdown goes on without it, and wait()
  // or the destructor (on another thread) joins the workers.
  if (impl.on_worker_thread()) return;
  impl.finish_stop();
}

void Server::wait() {
  auto& impl = *impl_;
  if (impl.on_worker_thread()) return;
  {
    std::unique_lock lock(impl.mutex);
    impl.stopped_cv.wait(lock, [&] { return !impl.started || impl.stopping; });
  }
  impl.finish_stop();
}

int serve(std::shared_ptr<ServiceFactory> factory, ServerOptions options,
          const std::function<void(Server&)>& listening) {
  server::StopSignals signals;  // before the workers start: they inherit the blocked signals
  // (call serve from main before starting threads of your own, or block SIGINT and SIGTERM in them)
  Server server(std::move(factory), std::move(options));
  if (auto status = server.start(); !status) {
    spdlog::error("{}", status.message());
    return 1;
  }
  if (listening) listening(server);
  signals.wait();
  server.stop();
  return 0;
}

}  // namespace stateroom
