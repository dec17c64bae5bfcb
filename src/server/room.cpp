#include "room.hpp"

#include "../common/little_endian.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <exception>
#include <utility>

#include "worker.hpp"

namespace stateroom::server {

using protocol::CloseCode;

namespace {

const char* event_name(int kind) {
  constexpr const char* names[] = {"init", "connect", "disconnect", "message", "timer"};
  return names[kind];
}

/// What a queued event costs the room's inbound bound beyond its payload.
constexpr std::size_t event_overhead = 64;

}  // namespace

std::shared_ptr<Room> Room::create(Worker& worker, std::string id, LoadedState saved, std::string* unavailable,
                                   MemoryCharge charge) {
  auto room = std::make_shared<Room>(worker, std::move(id));
  const auto factory = worker.shared.factory.load();
  room->generation_ = factory->generation;
  room->made_by_ = factory;
  // A room whose snapshot cannot be read now does not start: its first snapshot would replace the
  // one it could not read.
  if (saved.status == LoadedState::Status::unavailable) room->unavailable(saved.error + "; its snapshot is kept");
  if (!room->failure_ && !room->make_service(*factory->factory)) {
    if (room->unavailable_ && unavailable) *unavailable = *room->failure_;
    room->end(room->unavailable_ ? EndReason::unavailable : EndReason::failed, *room->failure_);
    return nullptr;
  }
  if (!room->failure_) spdlog::debug("room '{}' created", room->id_);
  bool restored = false;
  if (!room->failure_ && saved.is_found()) {
    try {
      restored = room->restore(std::move(saved.snapshot), *factory->factory, std::move(charge));
    } catch (const std::bad_alloc&) {
      room->restoring_.reset();
      room->unavailable("out of memory restoring its snapshot; its snapshot is kept");
    }
  }
  if (!room->alive()) return nullptr;
  if (room->failure_) {
    if (room->unavailable_ && unavailable) *unavailable = *room->failure_;
    room->end(room->unavailable_ ? EndReason::unavailable : EndReason::failed, *room->failure_);
    return nullptr;
  }
  // Running from here: one that could not be restored was refused as it was created, no more.
  if (room->state_ == State::created) room->state_ = State::running;
  if (!restored) room->deliver(Event{EventKind::init});
  if (!room->alive()) return nullptr;
  return room;
}

bool Room::make_service(ServiceFactory& factory) {
  running_ = true;
  try {
    service_ = factory.create(id_, *this);
  } catch (const std::exception& e) {
    fail(std::string("creating the service threw: ") + e.what());
  } catch (...) {
    fail("creating the service threw a non-standard exception");
  }
  running_ = false;
  if (!service_ && !failure_) failure_ = "the service factory built nothing";
  hosted_ = dynamic_cast<HostedService*>(service_.get()) != nullptr;
  return !failure_;
}

Room::Room(Worker& worker, std::string id)
    : worker_(worker),
      id_(std::move(id)),
      timer_(worker.ioc),
      grace_timer_(worker.ioc),
      resume_timer_(worker.ioc) {}

Room::~Room() {
  if (counted_) worker_.shared.admission.room_ended(creator_ ? &*creator_ : nullptr);
}

void Room::deliver(Event&& event) {
  if (!alive()) return;
  if (busy()) {
    queued_bytes_ += event.payload.size() + event_overhead;
    queue_.push_back(std::move(event));
    return;
  }
  // No reference is taken here: whoever calls into a room holds one (a member's session, a timer's
  // handler), and the registry's is released only after the current handler (see unregister).
  running_ = true;
  run_queue(invoke(event));
}

void Room::run_queue(bool ready) {
  while (ready && !queue_.empty()) {
    if (grace_over_ && members_.empty() && only_timers_queued()) {
      // Empty past its grace period, and kept busy all along (each handler queued the next): it
      // ends between two handlers, as it would have when idle.
      running_ = false;
      hibernate();
      return;
    }
    const Event event = std::move(queue_.front());
    queue_.pop_front();
    queued_bytes_ -= event.payload.size() + event_overhead;
    release_readers();
    ready = invoke(event);
  }
  running_ = false;
  if (!ready) return;
  if (grace_over_ && members_.empty() && !worker_.shutting_down) {
    // Empty past its grace period, and busy all along: each handler armed the next one's timer
    // (nothing waited in the queue). It ends now, between two handlers.
    hibernate();
    return;
  }
  // Idle: the grace period of a room that became empty starts now.
  if (emptied_ && members_.empty() && !worker_.shutting_down) on_empty();
  emptied_ = false;
}

bool Room::invoke(const Event& event) {
  try {
    switch (event.kind) {
      case EventKind::init:
        service_->init(*this);
        break;
      case EventKind::connect:
        // A client joining a busy room waits for its `connect` behind the events queued before
        // it; what they send is not for it.
        if (Member* m = member(event.client)) m->connected = true;
        service_->connect(event.client, *this);
        break;
      case EventKind::disconnect:
        service_->disconnect(event.client, *this);
        break;
      case EventKind::message:
        used_ = true;
        service_->message(event.client, event.payload, *this);
        break;
      case EventKind::timer:
        // A timer re-armed after this one fired and queued replaces it.
        if (event.timer_generation == timer_generation_) {
          used_ = true;
          timer_due_.reset();
          service_->timer(*this);
        }
        break;
    }
  } catch (const std::exception& e) {
    fail(std::string(event_name(static_cast<int>(event.kind))) + " threw: " + e.what());
  } catch (...) {
    fail(std::string(event_name(static_cast<int>(event.kind))) + " threw a non-standard exception");
  }
  return settle();
}

bool Room::settle() {
  if (!changed_) [[unlikely]] {
    changed_ = true;
    unsaved_since_ = worker_.snapshot_tick;
  }
  if (failure_) {
    end(unavailable_ ? EndReason::unavailable : EndReason::failed, *failure_);
    return false;
  }
  if (!alive()) return false;
  if (hosted_ && hosted().pending()) {
    state_ = State::paused;
    schedule_resume();
    return false;
  }
  return true;
}

void Room::schedule_resume() {
  auto resume = [weak = weak_from_this()](boost::system::error_code ec = {}) {
    auto self = weak.lock();
    if (ec || !self || self->state_ != State::paused) return;
    self->state_ = State::running;
    self->running_ = true;
    try {
      self->hosted().resume(*self);
    } catch (const std::exception& e) {
      self->fail(std::string("resuming the service threw: ") + e.what());
    } catch (...) {
      self->fail("resuming the service threw a non-standard exception");
    }
    self->run_queue(self->settle());
  };
  const auto delay = hosted().resume_delay();
  if (delay > std::chrono::steady_clock::duration::zero()) [[unlikely]] {
    resume_timer_.expires_after(delay);
    resume_timer_.async_wait(std::move(resume));
  } else {
    boost::asio::post(worker_.ioc, std::move(resume));
  }
}

std::optional<ClientId> Room::join(Client& member) {
  if (!alive()) return std::nullopt;
  if (next_client_ == 0 || (hosted_ && next_client_ > hosted().last_client_id())) {
    // Every id the service can be told (32 bits; 31 for a v1 guest) has been handed out: a wrapped
    // one could name a member still here. The room takes no one new; once empty it ends, and the
    // next one starts from 1 again.
    spdlog::warn("room '{}' refused a client: every client id has been used (its next instance starts over)", id_);
    member.close(CloseCode::try_again_later, "the room has no client ids left");
    return std::nullopt;
  }
  grace_timer_.cancel();
  grace_over_ = false;
  const ClientId client{next_client_++};
  members_.push_back({client, &member});
  deliver(Event{EventKind::connect, client});
  if (!alive()) return std::nullopt;
  return client;
}

inline Room::Member* Room::member(ClientId client) {
  auto it = std::lower_bound(members_.begin(), members_.end(), client,
                             [](const Member& m, ClientId c) { return m.id < c; });
  return it != members_.end() && it->id == client ? &*it : nullptr;
}

void Room::remove_member(ClientId client) {
  if (Member* m = member(client)) {
    std::erase(waiting_, m->client);
    members_.erase(members_.begin() + (m - members_.data()));
  }
  emptied_ = members_.empty();
  if (emptied_) empty_since_ = std::chrono::steady_clock::now();
  if (emptied_ && !worker_.shutting_down) start_grace();
}

bool Room::make_way(Worker& for_worker) {
  if (!empty() || making_way_) return false;
  making_way_ = true;
  way_for_ = &for_worker;
  spdlog::info("room '{}' makes way for a new room (--max-rooms {} are alive): empty for {} ms, it {}", id_,
               worker_.shared.admission.limits().rooms,
               std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - empty_since_)
                   .count(),
               worker_.shared.store ? "hibernates" : "ends (its state is not kept without --state-dir)");
  grace_over_ = true;  // a busy one ends after its running handler (run_queue)
  if (!busy()) hibernate();
  return true;
}

void Room::start_grace() {
  // The grace period runs from the moment the last member left, whatever the service is doing;
  // an immediate one ends the room once its `disconnect` has run (on_empty).
  const auto& delay = worker_.shared.options.room_grace.delay;
  if (!delay || delay->count() == 0) return;
  grace_over_ = false;
  arm_grace(*delay);
}

void Room::arm_grace(std::chrono::steady_clock::duration delay) {
  grace_timer_.expires_after(delay);
  grace_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || !self->alive() || !self->members_.empty()) return;
    if (self->busy()) {
      // A service that keeps itself busy (a guest re-arming its timer, paused in a long handler)
      // must not keep an empty room, and its instance, forever: the room ends once the running
      // handler is done (run_queue), before anything else it queued.
      self->grace_over_ = true;
      // One held back at its CPU share would finish that handler only when its share lets it (up
      // to a window later). Without a store there is nothing to keep: it ends now. With one, its
      // state is worth the wait (bounded by the hold) for a snapshot between two events.
      if (self->state_ == State::paused && !self->worker_.shared.store && self->hosted_ &&
          self->hosted().resume_delay() > std::chrono::steady_clock::duration::zero())
        self->end(EndReason::empty);
      return;
    }
    self->hibernate();
  });
}

bool Room::only_timers_queued() const noexcept {
  return std::all_of(queue_.begin(), queue_.end(), [](const Event& e) { return e.kind == EventKind::timer; });
}

void Room::release_readers() {
  if (waiting_.empty() || queued_bytes_ > worker_.shared.options.max_room_queue_bytes / 2) return;
  auto readers = std::move(waiting_);
  waiting_.clear();
  for (Client* c : readers) c->resume_reading();
}

void Room::leave(ClientId client) {
  if (!alive()) return;
  remove_member(client);
  deliver(Event{EventKind::disconnect, client});
}

bool Room::message(ClientId sender, const MessagePayload& payload, Client& from) {
  if (!alive()) return true;
  if (!busy()) {
    deliver(Event{EventKind::message, sender, MessagePayload::view(payload.kind(), payload.view())});
    return true;
  }
  return enqueue_message(sender, payload, from);
}

bool Room::enqueue_message(ClientId sender, const MessagePayload& payload, Client& from) {
  deliver(Event{EventKind::message, sender, payload});  // busy: queued, as an owning copy
  if (queued_bytes_ <= worker_.shared.options.max_room_queue_bytes) return true;
  if (std::find(waiting_.begin(), waiting_.end(), &from) == waiting_.end()) waiting_.push_back(&from);
  return false;
}

bool Room::messages(ClientId sender, std::span<const MessagePayload> payloads, Client& from) {
  if (!hosted_ || payloads.size() == 1) {
    // A plain service takes them as they come, one `message` each.
    bool reading = true;
    for (const MessagePayload& payload : payloads) reading = message(sender, payload, from) && reading;
    return reading;
  }
  if (!alive()) return true;
  std::size_t taken = 0;
  bool ready = false;
  const bool now = !busy();
  if (now) {
    running_ = true;
    used_ = true;
    try {
      taken = std::min(hosted().messages(sender, payloads, *this), payloads.size());
    } catch (const std::exception& e) {
      fail(std::string("message threw: ") + e.what());
    } catch (...) {
      fail("message threw a non-standard exception");
    }
    ready = settle();
    if (!alive()) return true;
  }
  // What the service did not take waits, in order, ahead of anything that comes later.
  bool reading = true;
  for (std::size_t i = taken; i < payloads.size(); ++i) reading = enqueue_message(sender, payloads[i], from) && reading;
  if (now) run_queue(ready);
  return reading;
}

void Room::send(MessageRecipient to, const MessagePayload& payload) {
  const std::size_t max_send = worker_.shared.max_send_bytes();
  if (payload.size() > max_send) [[unlikely]] {
    // No client could take it: fail the room with the reason, instead of closing every recipient
    // as too slow.
    fail("sent a message of " + std::to_string(payload.size()) + " bytes, over the limit of " +
         std::to_string(max_send) + " (--max-send-size)");
    return;
  }
  if (members_.empty()) return;
  // One message for every recipient: its frame header encoded once, its payload copied into each
  // recipient's queue (or, when large, shared by all of them).
  const OutgoingMessage message(payload);
  evicted_.clear();
  auto deliver = [&](Member& m) {
    if (m.client->send(message) == SendResult::dropped) evicted_.push_back(m.id);
  };
  if (to.kind == MessageRecipient::Kind::client) {
    if (Member* m = member(to.id); m && m->connected) {
      deliver(*m);
    } else {
      spdlog::debug("room '{}': message to client {} dropped (not connected)", id_, to.id.value);
    }
  } else {
    for (auto& m : members_) {
      if (m.connected && to.includes(m.id)) deliver(m);
    }
  }
  if (evicted_.empty()) return;
  const auto evicted = std::move(evicted_);  // leave() may send again
  evicted_.clear();
  for (ClientId client : evicted) leave(client);
}

void Room::set_timer(std::uint32_t ms) {
  const std::uint64_t generation = ++timer_generation_;
  timer_.expires_after(std::chrono::milliseconds(ms));
  timer_due_ = timer_.expiry();
  timer_.async_wait([weak = weak_from_this(), generation](boost::system::error_code) {
    auto self = weak.lock();
    if (!self || !self->alive() || generation != self->timer_generation_) return;
    self->deliver(Event{EventKind::timer, {}, {}, generation});
  });
}

void Room::fail(std::string_view reason) {
  if (!failure_) failure_ = std::string(reason);
}

void Room::unavailable(std::string_view reason) {
  if (failure_) return;
  failure_ = std::string(reason);
  unavailable_ = true;
}

bool Room::outdated() const noexcept { return generation_ != worker_.shared.factory.load()->generation; }


std::size_t Room::take_step(Step why, std::size_t budget, bool& done) {
  done = true;
  if (why == Step::restore) {
    if (state_ != State::restoring || !restoring_) return 0;
    const auto state = std::span<const std::byte>(restoring_->saved).subspan(restoring_->service_at);
    auto step = HostedService::Restoring::refused;
    running_ = true;
    try {
      step = hosted().restore_step(state, budget, *this);
    } catch (const std::bad_alloc&) {
      unavailable("out of memory restoring its snapshot");
    } catch (const std::exception& e) {
      fail(std::string("restoring the service threw: ") + e.what());
    }
    running_ = false;
    if (!failure_ && step == HostedService::Restoring::more) {
      done = false;
      return budget;
    }
    state_ = State::running;
    const bool restored = !failure_ && settle_restore(step == HostedService::Restoring::restored, *made_by_->factory);
    if (failure_) {
      restoring_.reset();
      *failure_ += "; its snapshot is kept";
      end(unavailable_ ? EndReason::unavailable : EndReason::failed, *failure_);
      return budget;
    }
    if (!alive()) return budget;
    if (!restored) {
      // Afresh: `init` first, then the connects that waited.
      queue_.push_front(Event{EventKind::init});
      queued_bytes_ += event_overhead;
    }
    if (!busy() && !queue_.empty()) {
      running_ = true;
      run_queue(true);
    }
    return budget;
  }
  if (state_ != State::saving) {
    // Not begun: only an idle room with something to keep (a room busy now waits for the next
    // time; one a client came back to does not hibernate).
    if (why == Step::hibernate && busy() && alive()) grace_over_ = true;  // ends after its handler
    if (!alive() || busy() || !service_ || !worker_.shared.store) return 0;
    if (why == Step::save && !unsaved()) return 0;
    if (why == Step::hibernate && !members_.empty()) return 0;
    state_ = State::saving;
  }
  // The room's part first, as it is when the snapshot begins (events wait until it is done); the
  // service's part is appended in steps, never copied again.
  const bool first = saving_.empty();
  if (first) saving_ = snapshot_header(*made_by_->factory, 0);
  const std::size_t before = saving_.size(), header = first ? before : saving_header_;
  if (first) saving_header_ = header;
  bool complete = false;
  try {
    if (hosted_) {
      complete = hosted().snapshot_step(saving_, budget, first);
    } else {
      const auto state = service_->snapshot();
      saving_.insert(saving_.end(), state.begin(), state.end());
      complete = true;
    }
  } catch (const std::exception& e) {
    spdlog::error("room '{}': its snapshot cannot be taken now ({}); tried again later", id_, e.what());
    saving_ = {};
    saving_charge_.release();
    state_ = State::running;
    if (why == Step::hibernate) arm_grace(std::chrono::seconds(1));  // it stays alive meanwhile
    if (!busy() && !queue_.empty()) {
      running_ = true;
      run_queue(true);
    }
    return budget;
  }
  // What the snapshot holds so far counts against the memory budget. A room that hibernates
  // exchanges its instance for its snapshot and always may (the instance's memory goes back as it
  // ends); a plain service hibernating, or any periodic snapshot, must fit: else it waits (the
  // room stays alive, nothing lost) and the log says so.
  MemoryBudget& memory = *worker_.shared.memory;
  const std::uint64_t more = saving_.size() - std::min<std::uint64_t>(saving_.size(), saving_charge_.bytes());
  if (more > 0) {
    const bool exchange = why == Step::hibernate && hosted_;
    if (exchange) {
      memory.take_anyway(more);
    } else if (!memory.take(more)) {
      worker_.report_memory_wait(id_, saving_.size(), why == Step::hibernate);
      saving_ = {};
      saving_charge_.release();
      state_ = State::running;
      if (why == Step::hibernate) arm_grace(std::chrono::seconds(1));  // tried again in a second
      if (!busy() && !queue_.empty()) {
        running_ = true;
        run_queue(true);
      }
      return budget;
    }
    saving_charge_.add(memory, more);
  }
  if (!complete) {
    done = false;
    return budget;
  }
  state_ = State::running;
  const std::size_t took = saving_.size() - before;
  if (saving_.size() > header) {  // else the service keeps nothing
    // The store counts it from here (StateStore implementations charge what they hold).
    worker_.shared.store->save(id_, std::exchange(saving_, {}));
    stored_ = true;
    changed_ = false;
  }
  saving_ = {};
  saving_charge_.release();
  // Empty past its grace, with nothing but timers waiting (a service that keeps itself busy):
  // it ends now, its state in the store.
  if (members_.empty() && only_timers_queued() && (why == Step::hibernate || grace_over_)) {
    end(EndReason::empty);
    return took;
  }
  if (!busy() && !queue_.empty()) {
    running_ = true;
    run_queue(true);
  }
  return took;
}

bool Room::end_if_replaced() {
  if (!alive() || !outdated() || !members_.empty() || busy()) return false;
  end(EndReason::replaced);
  return true;
}

void Room::on_empty() {
  // Idle after the last member's `disconnect`.
  if (end_if_replaced()) return;
  const auto& delay = worker_.shared.options.room_grace.delay;
  if (grace_over_ || (delay && delay->count() == 0)) hibernate();
}

void Room::hibernate() {
  // Its snapshot is taken by the worker's snapshot work first (a large one in steps between other
  // rooms' events, and only when it fits the memory budget); one the store holds as it is, or
  // nothing worth keeping, ends it at once.
  if (worker_.shared.store && used_ && changed_ && service_ && !worker_.shutting_down) {
    worker_.queue_step(shared_from_this(), Step::hibernate);
    return;
  }
  end(EndReason::empty);
}

void Room::unregister() {
  timer_.cancel();
  grace_timer_.cancel();
  resume_timer_.cancel();
  auto it = worker_.rooms.find(id_);
  if (it == worker_.rooms.end() || it->second.get() != this) return;
  // The registry's reference goes after this pass of the event loop, not now: the room may be deep
  // in its own call chain (a failing handler, the last member leaving).
  boost::asio::post(worker_.ioc, [ended = std::move(it->second)] {});
  worker_.rooms.erase(it);
}

void Room::shut_down() {
  // A handler paused part-way finishes first when a store keeps the room (its CPU allowance per
  // event bounds it), so that the snapshot holds what the room did; one held back at its CPU
  // share cannot, and its last snapshot stands (said in the log). Then every member gets its
  // `disconnect`, while the service still runs.
  if (state_ == State::paused && worker_.shared.store) finish_paused_handler();
  grace_timer_.cancel();
  timer_.cancel();
  resume_timer_.cancel();
  queue_.clear();
  queued_bytes_ = 0;
  waiting_.clear();
  if (state_ == State::saving) {  // an unfinished snapshot in steps: the room's last one is whole
    saving_ = {};
    state_ = State::running;
  }
  while (!members_.empty() && alive()) {
    Member m = members_.front();
    members_.erase(members_.begin());
    m.client->close(CloseCode::going_away, "server shutting down");
    if (!busy()) deliver(Event{EventKind::disconnect, m.id});
  }
  end(EndReason::shutdown);  // a room that failed above has already ended
}

void Room::finish_paused_handler() {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (state_ == State::paused && hosted_ && hosted().resume_delay() == std::chrono::steady_clock::duration::zero() &&
         std::chrono::steady_clock::now() < give_up) {
    state_ = State::running;
    running_ = true;
    try {
      hosted().resume(*this);
    } catch (const std::exception& e) {
      fail(std::string("resuming the service threw: ") + e.what());
    } catch (...) {
      fail("resuming the service threw a non-standard exception");
    }
    running_ = false;
    settle();  // done, paused again, or ended
  }
  if (state_ == State::paused)
    spdlog::warn("room '{}': its handler is paused part-way at shutdown (held back at its CPU share): its last "
                 "snapshot stands, without what it did since",
                 id_);
}

// --- snapshots ------------------------------------------------------------------------------------

namespace {

// A room's snapshot: "SRRM" | u32 version | u32 identity length | the factory's snapshot identity |
// (version 2 on) u32 layout length | the factory's snapshot layout | u32 next client id | i64
// milliseconds until the timer fires (-1: none) | u32 members, each a u32 client id | the
// service's snapshot. Little-endian. Version 1 (no layout) is still read.
constexpr std::uint32_t room_snapshot_magic = 0x4d525253;  // "SRRM"
constexpr std::uint32_t room_snapshot_version = 2;

void put_text(std::vector<std::byte>& out, std::string_view text) {
  ::stateroom::detail::put_le(out, text.size(), 4);
  for (char c : text) out.push_back(static_cast<std::byte>(c));
}

/// A length-prefixed text from the front of `in`; nullopt when it runs past its end.
std::optional<std::string> get_text(::stateroom::detail::LittleEndianReader<std::byte>& in) {
  const auto size = in.get(4);
  if (!in.ok || in.in.size() < size) return std::nullopt;
  std::string text(reinterpret_cast<const char*>(in.in.data()), size);
  in.in = in.in.subspan(size);
  return text;
}

constexpr auto put = ::stateroom::detail::put_le<std::vector<std::byte>>;

}  // namespace

std::optional<Room::SnapshotHead> Room::read_room_snapshot_head(std::span<const std::byte> saved, std::string& why) {
  ::stateroom::detail::LittleEndianReader<std::byte> in{saved};
  const bool magic = in.get(4) == room_snapshot_magic;
  const auto version = in.get(4);
  std::optional<std::string> identity = get_text(in), layout = std::string();
  if (version >= 2) layout = get_text(in);
  if (!magic || version < 1 || version > room_snapshot_version || !identity || !layout) {
    why = "it is not a room snapshot this server reads";
    return std::nullopt;
  }
  SnapshotHead head;
  head.identity = std::move(*identity);
  head.layout = std::move(*layout);
  head.next_client = static_cast<std::uint32_t>(in.get(4));
  head.timer_ms = static_cast<std::int64_t>(in.get(8));
  const auto member_count = in.get(4);
  if (!in.ok || in.in.size() / 4 < member_count) {
    why = "it is truncated";
    return std::nullopt;
  }
  head.members.reserve(static_cast<std::size_t>(member_count));
  for (std::uint64_t i = 0; i < member_count; ++i) head.members.push_back(ClientId{static_cast<std::uint32_t>(in.get(4))});
  head.service = in.in;
  return head;
}

bool Room::restores_snapshot_of(std::string_view identity, std::string_view layout, const ServiceFactory& factory,
                                ServerOptions::OnModuleChange mode) {
  using Mode = ServerOptions::OnModuleChange;
  if (identity == factory.snapshot_identity() || mode == Mode::keep) return true;
  return mode == Mode::layout && !layout.empty() && layout == factory.snapshot_layout();
}

std::vector<std::byte> Room::snapshot() { return wrap_snapshot(service_->snapshot(), *made_by_->factory); }

std::vector<std::byte> Room::wrap_snapshot(std::vector<std::byte> service, const ServiceFactory& by) const {
  if (service.empty()) return service;
  std::vector<std::byte> out = snapshot_header(by, service.size());
  out.insert(out.end(), service.begin(), service.end());
  return out;
}

std::vector<std::byte> Room::snapshot_header(const ServiceFactory& by, std::size_t room_for) const {
  const std::string identity = by.snapshot_identity();
  const std::string layout = by.snapshot_layout();
  std::vector<std::byte> out;
  out.reserve(room_for + identity.size() + layout.size() + 36 + 4 * members_.size());
  put(out, room_snapshot_magic, 4);
  put(out, room_snapshot_version, 4);
  put_text(out, identity);
  put_text(out, layout);
  put(out, next_client_, 4);
  std::int64_t timer_ms = -1;
  if (timer_due_) {
    const auto left = *timer_due_ - std::chrono::steady_clock::now();
    timer_ms = std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(left).count());
  }
  put(out, static_cast<std::uint64_t>(timer_ms), 8);
  put(out, members_.size(), 4);
  for (const Member& m : members_) put(out, m.id.value, 4);
  return out;
}

bool Room::restore(std::vector<std::byte> saved, ServiceFactory& factory, MemoryCharge charge) {
  auto& store = *worker_.shared.store;
  std::string why;
  auto head = read_room_snapshot_head(saved, why);
  if (!head) {
    store.set_aside(id_, why);
    return false;
  }
  if (auto refused = refuses_snapshot_of(head->identity, head->layout, factory)) {
    store.set_aside(id_, *refused);
    return false;
  }
  Restoring r;
  r.next_client = head->next_client;
  r.timer_ms = head->timer_ms;
  r.members = std::move(head->members);
  r.service_at = saved.size() - head->service.size();
  r.saved = std::move(saved);
  // Whoever joins while it is restored gets an id past the snapshot's (ids are never reused).
  if (r.next_client == 0 || r.next_client > next_client_) next_client_ = r.next_client;
  // The snapshot read back is exchanged for the memory it grows into: counting both would refuse
  // every room that holds more than half of what the budget has free.
  charge.release();
  restoring_ = std::move(r);
  const auto state = std::span<const std::byte>(restoring_->saved).subspan(restoring_->service_at);
  // The first step here: a hosted service's memory grows to the snapshot's (or cannot now).
  running_ = true;
  auto step = HostedService::Restoring::refused;
  try {
    if (hosted_) {
      step = hosted().restore_step(state, Worker::snapshot_step_bytes, *this);
    } else if (service_->restore(state, *this)) {
      step = HostedService::Restoring::restored;
    }
  } catch (const std::bad_alloc&) {
    unavailable("out of memory restoring its snapshot");
  } catch (const std::exception& e) {
    fail(std::string("restoring the service threw: ") + e.what());
  } catch (...) {
    fail("restoring the service threw a non-standard exception");
  }
  running_ = false;
  if (failure_) {
    // Settled by the caller's check: the room fails (or is unavailable) and its snapshot stays as
    // it is, for the next try or for a look.
    restoring_.reset();
    *failure_ += "; its snapshot is kept";
    return true;
  }
  if (step == HostedService::Restoring::more) {
    // The rest between other rooms' events; whoever joins meanwhile waits in the queue.
    state_ = State::restoring;
    worker_.queue_step(shared_from_this(), Step::restore);
    return true;
  }
  return settle_restore(step == HostedService::Restoring::restored, factory);
}

bool Room::settle_restore(bool restored, ServiceFactory& factory) {
  Restoring r = std::move(*restoring_);
  restoring_.reset();
  if (!restored) {
    worker_.shared.store->set_aside(id_, "its service did not take it");
    // The old service may hold part of the snapshot: a new one starts with `init`.
    service_.reset();
    if (!make_service(factory)) {
      end(unavailable_ ? EndReason::unavailable : EndReason::failed, *failure_);
      return true;
    }
    return false;
  }
  stored_ = true;
  used_ = true;
  changed_ = false;
  spdlog::info("room '{}' restored from its snapshot ({} bytes)", id_, r.saved.size());
  if (r.timer_ms >= 0) set_timer(static_cast<std::uint32_t>(std::min<std::int64_t>(r.timer_ms, UINT32_MAX)));
  // The clients of the snapshot are gone: the service hears so, as it would have, before anything
  // that waited for the restore (the connects of those who joined meanwhile).
  for (auto it = r.members.rbegin(); it != r.members.rend(); ++it) {
    queue_.push_front(Event{EventKind::disconnect, *it});
    queued_bytes_ += event_overhead;
  }
  if (!busy() && !queue_.empty()) {
    running_ = true;
    run_queue(true);
  }
  return true;
}

std::optional<std::string> Room::refuses_snapshot_of(std::string_view identity, std::string_view layout,
                                                     ServiceFactory& factory) const {
  if (identity == factory.snapshot_identity()) return std::nullopt;
  using Mode = ServerOptions::OnModuleChange;
  const Mode mode = worker_.shared.options.on_module_change;
  const bool same_layout = !layout.empty() && layout == factory.snapshot_layout();
  if (restores_snapshot_of(identity, layout, factory, mode)) {
    spdlog::info("room '{}': its snapshot was made by another build of the service{}; restoring it (--on-module-change "
                 "{})",
                 id_, same_layout ? " with the same data layout" : "", mode == Mode::keep ? "keep" : "layout");
    return std::nullopt;
  }
  return fmt::format("it was made by another build of the service{} ({}){}",
                     layout.empty() || same_layout ? "" : " with another data layout",
                     identity.empty() ? "none named" : identity,
                     mode == Mode::fresh && same_layout ? "; --on-module-change layout would restore it" : "");
}

bool Room::carry_over() {
  if (!alive() || busy() || !outdated()) return !alive() || !outdated();
  const auto factory = worker_.shared.factory.load();
  const auto old = made_by_;
  std::vector<std::byte> state = service_->snapshot();
  const std::string identity = old->factory->snapshot_identity();
  const std::string layout = old->factory->snapshot_layout();
  using Mode = ServerOptions::OnModuleChange;
  const Mode mode = worker_.shared.options.on_module_change;
  const bool same = identity == factory->factory->snapshot_identity();
  const bool same_layout = !layout.empty() && layout == factory->factory->snapshot_layout();
  const char* why_afresh = nullptr;
  if (state.empty()) {
    why_afresh = "its service keeps no state (or cannot be snapshotted: the log said why when it was loaded)";
  } else if (!same && mode == Mode::fresh) {
    why_afresh = "the new build is another module (--on-module-change fresh)";
  } else if (!same && mode == Mode::layout && !same_layout) {
    why_afresh = layout.empty() ? "the new build is another service" : "the new build has another data layout";
  }
  // The old service goes first: its instance and memory are given back before the new one is made.
  service_.reset();
  generation_ = factory->generation;
  made_by_ = factory;
  changed_ = true;
  // A new service that cannot start this room: the room stays on the old build, with its state
  // and its clients; when even that cannot be, the old state is left in the store for the next try.
  auto stay = [&] {
    const std::string why = failure_.value_or("the new service did not start");
    const bool why_unavailable = unavailable_;
    failure_.reset();
    unavailable_ = false;
    service_.reset();
    generation_ = old->generation;
    made_by_ = old;
    if (!state.empty() && make_service(*old->factory)) {
      running_ = true;
      bool back = false;
      try {
        back = service_->restore(state, *this);
      } catch (const std::exception&) {
      }
      running_ = false;
      if (back && !failure_) {
        spdlog::error("room '{}' stays on the previous build, with its state: the new build cannot start it: {}",
                      id_, why);
        if (!queue_.empty()) {
          running_ = true;
          run_queue(true);
        }
        return true;
      }
    }
    failure_ = why;
    unavailable_ = why_unavailable;
    if (worker_.shared.store && !state.empty()) {
      worker_.shared.store->save(id_, wrap_snapshot(std::move(state), *old->factory));
      stored_ = true;
      // Not a failure of the room's state: it stays in the store for the next connect.
      unavailable_ = true;
    }
    end(unavailable_ ? EndReason::unavailable : EndReason::failed, *failure_);
    return true;
  };
  if (!make_service(*factory->factory)) return stay();
  if (!why_afresh) {
    running_ = true;
    bool restored = false;
    try {
      restored = service_->restore(state, *this);
    } catch (const std::exception& e) {
      fail(std::string("restoring the service threw: ") + e.what());
    } catch (...) {
      fail("restoring the service threw a non-standard exception");
    }
    running_ = false;
    if (failure_) return stay();
    if (restored) {
      spdlog::info("room '{}' moved to the new service with its state ({} client(s) stay connected)", id_,
                   members_.size());
      if (!queue_.empty()) {  // what came in meanwhile (a member leaving, say)
        running_ = true;
        run_queue(true);
      }
      return true;
    }
    why_afresh = "its new service did not take the old one's state";
    service_.reset();
    if (!make_service(*factory->factory)) return stay();
  }
  spdlog::info("room '{}' starts afresh on the new service: {} ({} client(s) stay connected and join it anew)", id_,
               why_afresh, members_.size());
  // The old service's timer is not the new one's.
  ++timer_generation_;
  timer_due_.reset();
  timer_.cancel();
  deliver(Event{EventKind::init});
  for (std::size_t i = 0; i < members_.size() && alive(); ++i) deliver(Event{EventKind::connect, members_[i].id});
  return true;
}

void Room::keep_state(EndReason why, bool mid_call) {
  auto& store = worker_.shared.store;
  if (!store) return;
  if (why == EndReason::failed) {
    if (stored_) store->remove(id_);  // a failed room starts afresh
    stored_ = false;
    return;
  }
  // Whatever the room leaves in the store is its to keep or let go from now on.
  struct Asleep {
    StateStore& store;
    const std::string& id;
    ~Asleep() { store.asleep(id); }
  } asleep{*store, id_};
  // A room that cannot run now keeps its last snapshot for when it can.
  if (why == EndReason::unavailable || !service_) return;
  if (mid_call) return;  // a service paused mid-call cannot be snapshotted: its last snapshot stands
  if (!used_) return;  // nothing but clients coming and going: nothing worth a file
  if (stored_ && !changed_) return;  // the store holds it as it is
  std::vector<std::byte> bytes;
  try {
    bytes = snapshot();
  } catch (const std::exception& e) {
    spdlog::error("room '{}': its snapshot cannot be taken ({}); its last snapshot stands", id_, e.what());
    return;
  }
  if (!bytes.empty()) {
    store->save(id_, std::move(bytes));
    stored_ = true;
  } else if (stored_) {
    store->remove(id_);
    stored_ = false;
  }
}

void Room::end(EndReason why, std::string_view detail) {
  if (!alive()) return;
  const State state_before = std::exchange(state_, State::ending);
  auto self = shared_from_this();  // the registry may hold the last reference
  switch (why) {
    case EndReason::empty:
      spdlog::debug("room '{}' stayed empty for its grace period: destroyed", id_);
      break;
    case EndReason::replaced:
      spdlog::info("room '{}' is empty and ends: its next connect starts on the new service", id_);
      break;
    case EndReason::failed:
      spdlog::error("room '{}' failed: {}; closing its {} client(s)", id_, detail, members_.size());
      break;
    case EndReason::unavailable:
      // One that could not start is reported by whoever asked for it (rate-limited).
      if (state_before != State::created)
        spdlog::warn("room '{}' cannot run now: {}; closing its {} client(s)", id_, detail, members_.size());
      break;
    case EndReason::shutdown:
      break;
  }
  // A service paused mid-call, or half restored, cannot be snapshotted.
  keep_state(why, running_ || state_before == State::paused || state_before == State::restoring);
  restoring_.reset();
  saving_ = {};
  auto members = std::move(members_);
  members_.clear();
  queue_.clear();
  queued_bytes_ = 0;
  waiting_.clear();
  const CloseCode code = why == EndReason::failed        ? CloseCode::internal_error
                         : why == EndReason::unavailable ? CloseCode::try_again_later
                                                         : CloseCode::going_away;
  const char* reason = why == EndReason::failed        ? "room failed"
                       : why == EndReason::unavailable ? "room unavailable, try again later"
                                                       : "server shutting down";
  for (auto& m : members) m.client->close(code, reason);
  unregister();
  service_.reset();  // a WebAssembly room's instance goes with it, before its place in the budget
  failure_.reset();
  unavailable_ = false;
  if (std::exchange(counted_, false)) {
    worker_.shared.admission.room_ended(creator_ ? &*creator_ : nullptr);
    worker_.place_freed();
    if (way_for_ && way_for_ != &worker_ && !worker_.shutting_down)  // for a connect another worker holds
      boost::asio::post(way_for_->ioc, [w = way_for_] { w->place_freed(); });
  }
  state_ = State::ended;
}

}  // namespace stateroom::server
