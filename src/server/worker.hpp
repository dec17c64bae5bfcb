// Worker: one thread with its own io_context, owning the rooms pinned to it.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <atomic>
#include <cstdint>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "admission.hpp"
#include "client.hpp"
#include "file_reader.hpp"
#include "gate.hpp"
#include "io_thread.hpp"
#include "protocol/deflate.hpp"
#include "stateroom/server.hpp"

namespace stateroom::server {

class Room;
struct Worker;
enum class SnapshotStep : std::uint8_t;  // room.hpp

/// A connection with output waiting for the end of this pass of its worker's event loop.
class Corked {
 public:
  /// Writes what is queued, as far as the connection takes it now.
  virtual void flush() = 0;

 protected:
  ~Corked() = default;
};

/// The factory new rooms are built with, numbered so a room knows whether it was replaced.
struct FactoryVersion {
  std::shared_ptr<ServiceFactory> factory;
  std::uint64_t generation = 0;
};

/// What every worker shares: read-only after start, except `factory`.
struct Shared {
  /// Swapped by Server::replace_factory; rooms read it when they are created.
  std::atomic<std::shared_ptr<const FactoryVersion>> factory;
  ServerOptions options;
  /// The largest message a room may send: options.max_send_bytes, or what an empty send queue
  /// holds.
  std::size_t max_send_bytes() const noexcept {
    return options.max_send_bytes ? options.max_send_bytes : largest_queueable(options.max_queued_bytes);
  }
  /// The connection and room budgets (configured from `options` when the server starts).
  Admission admission;
  /// The checks an upgrade passes before it reaches a room (configured when the server starts).
  Gate gate;
  /// What snapshots held in memory count against (options.memory_budget, or one of half the
  /// machine's memory).
  std::shared_ptr<MemoryBudget> memory;
  /// Where rooms' snapshots go (options.state_store, or the store of options.state_dir); null:
  /// rooms keep nothing.
  std::shared_ptr<StateStore> store;
  std::vector<std::unique_ptr<Worker>> workers;
  /// The static files' thread, when the server serves a static directory. Declared after the
  /// workers so that it is joined before they go: it posts its answers to them.
  std::unique_ptr<FileReader> files;
  /// The thread that reads waking rooms' saved state (store->load: the file, its checks, its
  /// decompression), when there is a store: a worker never waits on the disk. After the workers,
  /// like `files`.
  std::unique_ptr<IoThread> state_loader;

  /// The worker a room lives on: chosen by hashing its id, so every connection to a room reaches
  /// the same thread without any lookup shared between threads.
  Worker& worker_for_room(std::string_view room_id) const;
};

/// `store`'s snapshot of `room_id`: what load() says, and `unavailable` when it throws.
LoadedState load_state(StateStore& store, std::string_view room_id);

struct Worker {
  Worker(Shared& shared, std::size_t index) : shared(shared), index(index) {}

  Shared& shared;
  const std::size_t index;

  // Everything below is touched only on this worker's thread.
  std::unordered_map<std::string, std::shared_ptr<Room>> rooms;
  std::size_t websocket_sessions = 0;  ///< live WebSocket sessions (for the shutdown drain)
  bool shutting_down = false;

  /// The read buffer of every session on this worker: a session reads into it, parses every frame
  /// in it and hands the messages on before the next session reads, so an idle connection holds
  /// no buffer of its own.
  static constexpr std::size_t read_buffer_size = 64 * 1024;
  std::unique_ptr<std::uint8_t[]> read_buffer{new std::uint8_t[read_buffer_size]};
  /// The messages of one read, gathered to reach their room in one delivery (views into the read
  /// buffer; kept for its capacity).
  std::vector<MessagePayload> inbound;

  /// permessage-deflate, for the connections that negotiated it: the compressors of outgoing
  /// messages (one per window size in use), the decompressor of clients that compress every
  /// message on its own, and the buffer a decompressed message is handed to its room from. Made
  /// on first need: a server without compression holds none of it.
  struct Compression {
    protocol::MessageDeflaters deflaters;
    protocol::Inflater inflater{protocol::max_window_bits, false};
    std::string inflated;
  };
  Compression& compression() {
    if (!compression_) compression_ = std::make_unique<Compression>();
    return *compression_;
  }

  /// Queues `session` to be flushed once the ready handlers of this pass of the event loop have
  /// run: whatever its room sends meanwhile leaves in one write.
  void cork(std::shared_ptr<Corked> session);
  std::vector<std::shared_ptr<Corked>> corked;    ///< to flush at the end of this pass
  std::vector<std::shared_ptr<Corked>> flushing;  ///< being flushed (kept for its capacity)

  /// The room `room_id`, created (service built, its saved state restored or `init` delivered)
  /// if it does not exist, for a client at `creator` (none: not for a client). Null when the
  /// service could not be built or failed in `init` (logged), or when a budget refuses a new room
  /// or its saved state cannot be used now (then `*refused` says which). Reads the saved state on
  /// this thread: for tests and tools; connections use with_room.
  std::shared_ptr<Room> find_or_create_room(const std::string& room_id, const PeerAddress* creator = nullptr,
                                            std::optional<Refusal>* refused = nullptr);
  /// What with_room hands over: the room (null as find_or_create_room's) and why it was refused.
  using RoomReady = std::function<void(std::shared_ptr<Room> room, std::optional<Refusal> refused)>;
  /// Calls `ready` with the room `room_id` as find_or_create_room finds or makes it: at once when
  /// it is alive or there is no store, else once its saved state has been read on the state
  /// loader's thread (the other connects to it wait with this one, in order).
  void with_room(const std::string& room_id, const PeerAddress* creator, RoomReady ready);
  /// Rooms whose saved state is being read, with the connects that wait for them.
  std::unordered_map<std::string, std::vector<RoomReady>> waking;
  /// A room of this worker gave its place in the room budget back: connects waiting for a place
  /// (make_way_for) try again after this pass.
  void place_freed();
  /// Connects for a new room that wait while an empty room makes way for it.
  struct AwaitingPlace {
    std::string room_id;
    std::optional<PeerAddress> creator;
    RoomReady ready;
    std::chrono::steady_clock::time_point deadline;
    std::uint64_t ask = 0;  ///< the question to the other workers it waits on (0: a room here makes way)
  };
  std::deque<AwaitingPlace> awaiting_place;
  /// How long a connect waits for an empty room to make way before it is refused with 1013.
  static constexpr std::chrono::seconds make_way_timeout{10};

  std::unique_ptr<Compression> compression_;

 private:
  /// Takes a place in the room budget for a new room `room_id` (logging a refusal, but for
  /// --max-rooms when `quiet_if_full`); why not.
  std::optional<Refusal> admit_room(const std::string& room_id, const PeerAddress* creator, bool quiet_if_full = false);
  void report_rooms_full(const std::string& room_id);
  /// --max-rooms is reached: the oldest empty room of this worker makes way for `room_id`, whose
  /// connect waits for its place (true); with none here, the other workers are asked in turn
  /// (give_way) and the connect waits for the answer. False (refuse it now): the only worker has
  /// no empty room.
  bool make_way_for(const std::string& room_id, const PeerAddress* creator, RoomReady& ready);
  /// On this worker, for a connect waiting on `requester` (its question `ask`, the `asked`-th
  /// worker asked): its oldest empty room makes way, or the next worker is asked, or, every worker
  /// asked, the requester hears there is no way (no_way).
  void give_way(Worker& requester, std::uint64_t ask, std::size_t asked);
  /// No worker has an empty room for the connect waiting on question `ask`: it is refused (1013).
  void no_way(std::uint64_t ask);
  std::uint64_t asks_ = 0;
  /// Tries the connects in awaiting_place again; refuses those past their deadline.
  void retry_awaiting_place();
  bool place_retry_posted_ = false;
  /// Builds the admitted room `room_id` from `saved`, gives its place back when it cannot start.
  /// `charge`: what `saved` holds of the memory budget.
  std::shared_ptr<Room> create_room(const std::string& room_id, LoadedState saved, const PeerAddress* creator,
                                    std::optional<Refusal>* refused, MemoryCharge charge = {});
  /// The saved state of waking room `room_id` has been read: the room starts, its connects go on.
  void woke(const std::string& room_id, const PeerAddress* creator, LoadedState saved, MemoryCharge charge);
  /// Runs the snapshot work of one pass (snapshot_step_bytes), then posts itself again while
  /// there is more.
  void take_steps();
  /// The store has max_writes_in_flight: take_steps again in store_wait_period.
  void wait_for_store();
  bool store_wait_armed_ = false;
  std::deque<std::weak_ptr<Room>> steps_;  ///< rooms with a step queued, in order
  const Room* stepping_ = nullptr;          ///< the room whose step runs now
  std::optional<SnapshotStep> asked_;        ///< a step it asked for meanwhile
  bool steps_posted_ = false;
  std::chrono::steady_clock::time_point behind_reported_{};  ///< the last "fall behind" line
  std::chrono::steady_clock::time_point memory_reported_{};  ///< the last report_memory_wait line
  std::size_t memory_unreported_ = 0;                          ///< waits since then

 public:

  /// Starts the periodic snapshots: four ticks every `interval`, the first after `first`. At each
  /// tick the rooms whose oldest unsaved event is two ticks old are queued for a snapshot, the
  /// oldest first, so that it is taken and written within the interval; a room left unsaved for two
  /// intervals is said in the log (at most every 10 s).
  void tick_snapshots(std::chrono::milliseconds interval, std::chrono::milliseconds first);
  /// Ticks of the periodic snapshots so far (Room::unsaved_since).
  std::uint64_t snapshot_tick = 0;
  /// Ticks (two intervals) past which a room's unsaved events are late: said in the log, and its
  /// snapshot no longer waits for a store that is behind.
  static constexpr std::uint64_t snapshot_late_ticks = 8;
  /// How much copying one pass of the event loop gives to snapshots and restores in steps at most,
  /// in pieces of snapshot_piece_bytes, and for how long: a pass ends with the piece that passes
  /// snapshot_pass_time, so that a large room's snapshot never holds its neighbours up for long.
  /// bench/state-stall `periodic` (14 x 60 MiB every 2 s, two workers), a neighbour's p99 / max
  /// round trip in ms: 2 MiB a pass 13.2 / 16.2; 64 KiB pieces for 500 us 5.9-6.6 / 9.7; for
  /// 100 us 4.0-5.8 / 6.0-6.4.
  static constexpr std::size_t snapshot_step_bytes = std::size_t{2} << 20;
  static constexpr std::size_t snapshot_piece_bytes = std::size_t{64} << 10;
  static constexpr std::chrono::microseconds snapshot_pass_time{100};
  /// A snapshot of `room_id` (`bytes` so far) did not fit the memory budget and waits: said in
  /// the log at most every 10 s per worker.
  void report_memory_wait(const std::string& room_id, std::size_t bytes, bool hibernating);
  /// Queues a step of `why` for `room` in the snapshot work (a restore or a hibernation goes
  /// ahead of periodic snapshots; a room holds one place, for its most urgent step).
  void queue_step(const std::shared_ptr<Room>& room, SnapshotStep why);

  // Declared last so it is destroyed first: handlers still queued in it are destroyed while the
  // rest of the worker is alive.
  boost::asio::io_context ioc{1};
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work{
      ioc.get_executor()};
  std::thread thread;
  /// For tick_snapshots; after `ioc`, so it goes before it.
  std::optional<boost::asio::steady_timer> snapshot_timer;
  /// For wait_for_store; the same.
  std::optional<boost::asio::steady_timer> store_wait;
  /// For the deadline of awaiting_place; the same.
  std::optional<boost::asio::steady_timer> place_timer;
  /// How often periodic snapshots waiting for the store look again whether it has caught up.
  static constexpr std::chrono::milliseconds store_wait_period{5};
  /// The scheduler slice a worker thread asks for (detail::request_short_slice): a neighbour's p99
  /// round trip under bench/state-stall's `many` 3.5 -> 2.9-3.9 ms, its max 7-15 -> 6.6-7.1 ms.
  static constexpr std::chrono::microseconds scheduler_slice{300};
};

}  // namespace stateroom::server
