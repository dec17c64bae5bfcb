// Room: one instance of a service, its clients and its timer. Lives on one worker thread.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "admission.hpp"
#include "client.hpp"
#include "stateroom/hosted_service.hpp"
#include "stateroom/memory_budget.hpp"
#include "stateroom/server.hpp"
#include "stateroom/state_store.hpp"

namespace stateroom::server {

struct Worker;
struct FactoryVersion;

/// What a step of the worker's snapshot work does for a room (Worker::queue_step), the most
/// urgent first.
enum class SnapshotStep : std::uint8_t {
  restore,    ///< its saved state goes on into its service
  hibernate,  ///< empty past its grace: its snapshot, then it ends
  save,       ///< its periodic snapshot
};

/// A room: the service instance plus its members. Every method runs on the room's worker thread;
/// the room is the service's Context. Handlers are never re-entered and run in arrival order: an
/// event that arrives while a handler runs (a client evicted while the room sends) or while the
/// service is paused (HostedService::pending) waits in the room's queue.
class Room final : public Context, public std::enable_shared_from_this<Room> {
 public:
  /// Builds the service and restores it from `saved` (the store's snapshot of the room) or
  /// delivers `init`. Null when either fails (logged), or when the room cannot run now (the
  /// factory or the restore found it unavailable, Context::unavailable; its snapshot could not be
  /// read): then `unavailable` gets the reason, for the caller to report (not logged here).
  /// `charge` is what `saved` holds of the memory budget, given back as the restore begins (the
  /// memory it grows into is counted from there).
  static std::shared_ptr<Room> create(Worker& worker, std::string id, LoadedState saved,
                                      std::string* unavailable = nullptr, MemoryCharge charge = {});

  Room(Worker& worker, std::string id);
  ~Room();
  Room(const Room&) = delete;
  Room& operator=(const Room&) = delete;

  /// A room's life. `created` while its service is built and `init` delivered; then `running`
  /// (idle or in a handler), `paused` (the service paused part-way through one), `saving` (a
  /// snapshot in steps is under way) and `restoring` (its saved state goes back into its service
  /// in steps), in which events wait; `ending` while end() closes its clients and drops its
  /// service; `ended` for good.
  enum class State : std::uint8_t { created, running, paused, saving, restoring, ending, ended };
  using Step = SnapshotStep;
  /// Why a room ends.
  enum class EndReason : std::uint8_t {
    empty,     ///< no members for its grace period
    replaced,  ///< empty, and its service's factory was replaced (Server::replace_factory)
    failed,    ///< its service failed: every client is closed with 1011
    unavailable,  ///< its service cannot run now (Context::unavailable): closed with 1013
    shutdown,  ///< the server stops: every client is closed with 1001
  };

  const std::string& id() const noexcept { return id_; }
  State state() const noexcept { return state_; }
  bool alive() const noexcept { return state_ < State::ending; }
  /// Whether its service came from a factory that has been replaced since.
  bool outdated() const noexcept;
  /// Ends an outdated room now if it has no members and no handler is running or paused.
  /// Returns whether it ended.
  bool end_if_replaced();
  /// Moves an outdated room to the current factory's service now, between two events, its
  /// members staying: with its service's state when ServerOptions::on_module_change lets the new
  /// factory take the old one's snapshot (the same snapshot_identity; under `layout` the same
  /// non-empty snapshot_layout; under `keep` any), else afresh (`init`, then a `connect` for each
  /// member). False while a handler is running or paused (try again later); true once done, or
  /// when there is nothing to do.
  bool carry_over();

  /// Adds `client` as a new member and delivers `connect`. Returns its id, or nothing when the
  /// room failed meanwhile (the client has then been closed with 1011) or has handed out every
  /// 32-bit client id (closed with 1013, try again later). `client` must call
  /// `leave` (or be closed by the room) before it goes away.
  std::optional<ClientId> join(Client& client);
  /// Removes a member and delivers its `disconnect` (after the running handler, if any).
  void leave(ClientId client);
  /// Delivers one message from member `sender`, now if the room is idle (`payload` may then be a
  /// view: it is not kept), else into the room's queue as a copy. Returns false when the queue is
  /// over its bound (ServerOptions::max_room_queue_bytes): `from` should stop reading until the
  /// room calls its `resume_reading`.
  bool message(ClientId sender, const MessagePayload& payload, Client& from);
  /// Delivers messages from `sender` that arrived together: to a plain service as `message` does
  /// each of them; a HostedService takes them in one call (HostedService::messages) when the room
  /// is idle, and what it does not take waits in the queue.
  bool messages(ClientId sender, std::span<const MessagePayload> payloads, Client& from);
  /// For tests: the next client id this room hands out (ids are never reused).
  void skip_client_ids_to(std::uint32_t next) noexcept { next_client_ = next; }
  /// The room holds one place of Admission's room budget, given back when it ends.
  void count_in_budget(const PeerAddress* creator) noexcept {
    counted_ = true;
    if (creator) creator_ = *creator;
  }
  /// Clients that are members now.
  std::size_t client_count() const noexcept { return members_.size(); }
  /// Whether it is alive with no member (in its grace period), and since when.
  bool empty() const noexcept { return alive() && members_.empty(); }
  std::chrono::steady_clock::time_point empty_since() const noexcept { return empty_since_; }
  /// Ends an empty room before its grace is over, so that a new room takes its place in the room
  /// budget: hibernated when a store keeps rooms (after the running handler, if any), else ended
  /// now (said in the log); `for_worker`, whose connect waits for the place, is told once it is
  /// free (Worker::place_freed). False when it is not empty or makes way already.
  bool make_way(Worker& for_worker);
  bool making_way_now() const noexcept { return making_way_; }
  /// Server shutdown: every client gets its `disconnect` (unless the service is paused) and a 1001
  /// close; the room is snapshotted (with a store, when its service is idle) and its service
  /// destroyed.
  void shut_down();
  /// With a store: whether events happened since its last snapshot that are worth keeping (not
  /// only clients coming and going).
  bool unsaved() const noexcept { return changed_ && used_ && alive() && service_; }
  /// Worker::snapshot_tick when its oldest unsaved event happened.
  std::uint64_t unsaved_since() const noexcept { return unsaved_since_; }
  /// One step of `why` for the worker's snapshot work, about `budget` bytes copied: the bytes it
  /// took. `done` once nothing more is to do for it: the snapshot is in the store (and, for
  /// `hibernate`, the room has ended), the restore is over, or it cannot be done now (a busy room
  /// is left for the next time).
  std::size_t take_step(Step why, std::size_t budget, bool& done);
  /// The step the worker's snapshot work holds for it, if any.
  std::optional<Step> queued_step;

  /// A room snapshot's own part (see snapshot()), read from its front; `service` is the rest.
  struct SnapshotHead {
    std::string identity, layout;
    std::uint32_t next_client = 0;
    std::int64_t timer_ms = -1;
    std::vector<ClientId> members;
    std::span<const std::byte> service;
  };
  /// Nothing, with `why`, when `saved` does not begin with a room snapshot this server reads (or
  /// is cut short before its service's part).
  static std::optional<SnapshotHead> read_room_snapshot_head(std::span<const std::byte> saved, std::string& why);
  /// Whether `factory` restores a snapshot made under `identity` and `layout` under `mode`.
  static bool restores_snapshot_of(std::string_view identity, std::string_view layout, const ServiceFactory& factory,
                                   ServerOptions::OnModuleChange mode);

  // Context
  void send(MessageRecipient to, const MessagePayload& payload) override;
  void set_timer(std::uint32_t ms) override;
  void fail(std::string_view reason) override;
  void unavailable(std::string_view reason) override;

 private:
  struct Member {
    ClientId id;
    Client* client;
    bool connected = false;  ///< its `connect` has run: the room's sends reach it from then on
  };
  enum class EventKind : std::uint8_t { init, connect, disconnect, message, timer };
  struct Event {
    EventKind kind;
    ClientId client{};
    MessagePayload payload{};
    std::uint64_t timer_generation = 0;
  };

  /// Whether an event must wait: a handler is running, the service is paused, or a snapshot or
  /// restore is under way.
  bool busy() const noexcept { return running_ || (state_ >= State::paused && state_ <= State::restoring); }
  /// Runs `event` now if the room is idle, else queues it.
  void deliver(Event&& event);
  /// With `ready` (the last handler finished): runs the queued events until the queue is empty or
  /// the service pauses; then, idle, starts the grace period if the room became empty.
  void run_queue(bool ready);
  /// Calls the service for one event, catching what it throws; false if the room ended.
  bool invoke(const Event& event);
  /// Queues a message (an owning copy) behind the room's other events; false when the queue is
  /// then over its bound, and `from` is told to read again once it drains.
  bool enqueue_message(ClientId sender, const MessagePayload& payload, Client& from);
  /// After a handler or a resume: ends the room if it failed, pauses it if the service is
  /// pending. False when the room cannot run its next event now.
  bool settle();
  /// Schedules the paused service's next `resume` behind the worker's other ready work, or after
  /// the delay it asks for.
  void schedule_resume();
  /// The member with this id, or null.
  Member* member(ClientId client);
  void remove_member(ClientId client);
  /// The last member left: the grace period starts.
  void start_grace();
  /// Hibernates the room after `delay` if it is empty and idle then (else as start_grace says).
  void arm_grace(std::chrono::steady_clock::duration delay);
  bool only_timers_queued() const noexcept;
  /// Lets the clients that stopped reading read again once the queue is under half its bound.
  void release_readers();
  /// The one way a room ends: closes its members (1011 when it failed, 1013 when unavailable, 1001
  /// at shutdown), drops its queue, timers and service, and leaves the registry. `detail` is the
  /// failure's reason.
  void end(EndReason why, std::string_view detail = {});
  /// Builds the room's service with `factory`, guarded: false (with failure_ set) when it threw,
  /// built nothing or could not start.
  bool make_service(ServiceFactory& factory);
  /// The room's snapshot: its own part (next client id, the timer, its members) and its
  /// service's. Empty when the service keeps nothing.
  std::vector<std::byte> snapshot();
  /// A room snapshot around `service` (a service's snapshot) made by `by`; empty when it is.
  std::vector<std::byte> wrap_snapshot(std::vector<std::byte> service, const ServiceFactory& by) const;
  /// Brings the room back from `saved` (a snapshot()) instead of `init`; false when it starts
  /// afresh instead, the snapshot set aside in the store (StateStore::set_aside), with a new
  /// service when the old one may have taken part of it. True with failure_ set when the room
  /// fails or cannot run now: the snapshot then stays as it is. A hosted service's first step
  /// runs here (its memory grown, or refused); what it has left goes on in the worker's snapshot
  /// work (the room `restoring`), and the room's own part is set once it is done (settle_restore).
  bool restore(std::vector<std::byte> saved, ServiceFactory& factory, MemoryCharge charge);
  /// After the service's restore: true (restored) sets up the room's own part of the snapshot;
  /// false sets the snapshot aside and starts a new service (returns false then too, or true with
  /// failure_ set when even that fails).
  bool settle_restore(bool restored, ServiceFactory& factory);
  /// Ends an empty room: snapshotted in steps first when it has a hosted service worth keeping.
  void hibernate();
  /// A restore in steps: the snapshot, where its service's part begins, and the room's own part.
  struct Restoring {
    std::vector<std::byte> saved;
    std::size_t service_at = 0;
    std::uint32_t next_client = 0;
    std::int64_t timer_ms = -1;
    std::vector<ClientId> members;
  };
  std::optional<Restoring> restoring_;
  /// A snapshot in steps so far: the room's part, then the service's as it comes.
  std::vector<std::byte> saving_;
  std::size_t saving_header_ = 0;  ///< the size of the room's part in saving_
  MemoryCharge saving_charge_;     ///< saving_ in the memory budget
  /// The room's part of a snapshot made by `by`, with room for `room_for` bytes of service.
  std::vector<std::byte> snapshot_header(const ServiceFactory& by, std::size_t room_for) const;
  /// Why `factory` does not restore a snapshot made under `identity` and `layout`, by
  /// ServerOptions::on_module_change (none: it does; logged when they differ).
  std::optional<std::string> refuses_snapshot_of(std::string_view identity, std::string_view layout,
                                                 ServiceFactory& factory) const;
  /// Saves the room's snapshot as it ends (hibernating, replaced, shutting down), or forgets its
  /// old one (it failed, or its service keeps nothing now). `mid_call`: its service is in a
  /// handler or paused in one, and cannot be snapshotted.
  void keep_state(EndReason why, bool mid_call);
  void unregister();
  void on_empty();
  /// Shutdown: runs a handler paused part-way to its end, unless the service is held back.
  void finish_paused_handler();

  Worker& worker_;
  const std::string id_;
  std::unique_ptr<Service> service_;
  bool hosted_ = false;  ///< the service is a HostedService (it may pause, and takes batches)
  HostedService& hosted() noexcept { return static_cast<HostedService&>(*service_); }
  std::vector<Member> members_;  ///< sorted by id: ids only grow
  std::uint32_t next_client_ = 1;  ///< 0 once every 32-bit id was handed out
  std::uint64_t generation_ = 0;
  /// The factory that built the service (its snapshots carry its identity).
  std::shared_ptr<const FactoryVersion> made_by_;
  State state_ = State::created;
  bool running_ = false;  ///< a handler (or a run of queued ones) is on the stack
  bool emptied_ = false;  ///< the last member just left: on_empty runs once idle
  std::chrono::steady_clock::time_point empty_since_ = std::chrono::steady_clock::now();  ///< its last member left
  bool making_way_ = false;  ///< make_way has run: it ends as soon as it can
  Worker* way_for_ = nullptr;  ///< the worker whose connect it makes way for (told when it ends)
  std::optional<PeerAddress> creator_;  ///< the address of the client it was created for
  bool counted_ = false;     ///< holds a place in the room budget
  bool grace_over_ = false;  ///< empty past its grace period while busy: ends after the running handler
  std::deque<Event> queue_;
  std::size_t queued_bytes_ = 0;      ///< payload bytes (plus overhead) in queue_
  std::vector<Client*> waiting_;      ///< members that stopped reading because queue_ is full
  std::vector<ClientId> evicted_;     ///< scratch for `send`: members whose queue overflowed
  std::optional<std::string> failure_;
  bool unavailable_ = false;  ///< failure_ came from Context::unavailable
  bool changed_ = false;      ///< events happened since the last snapshot
  std::uint64_t unsaved_since_ = 0;  ///< see unsaved_since()
  bool stored_ = false;       ///< the store holds a snapshot of this room
  /// A message or a timer reached its service, or it was restored: a room that only saw clients
  /// come and go (a bare connect and close) leaves nothing in the store.
  bool used_ = false;
  /// When the service's timer fires (none: no timer pending), for a snapshot.
  std::optional<std::chrono::steady_clock::time_point> timer_due_;
  boost::asio::steady_timer timer_;
  std::uint64_t timer_generation_ = 0;
  boost::asio::steady_timer grace_timer_;
  boost::asio::steady_timer resume_timer_;  ///< a paused service that asked to wait (resume_delay)
};

}  // namespace stateroom::server
