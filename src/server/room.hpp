// Room: one instance of a service, its clients and its timer. Lives on one worker thread.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stateroom/service.hpp"

namespace stateroom::server {

struct Worker;
class WebSocketSession;

/// A room: the service instance plus its members. Every method runs on the room's worker thread;
/// the room is the service's Context. Handlers are never re-entered: what a handler causes that
/// needs another handler (a client evicted while the room sends) runs after it returns.
class Room final : public Context, public std::enable_shared_from_this<Room> {
 public:
  /// Builds the service and delivers `init`. Null when either fails (logged).
  static std::shared_ptr<Room> create(Worker& worker, std::string id);

  Room(Worker& worker, std::string id);
  ~Room();
  Room(const Room&) = delete;
  Room& operator=(const Room&) = delete;

  const std::string& id() const noexcept { return id_; }
  bool alive() const noexcept { return service_ != nullptr; }

  /// Adds `session` as a new client and delivers `connect`. Returns the client id, or nothing when
  /// the room failed meanwhile (the session has then been closed with 1011).
  std::optional<ClientId> join(const std::shared_ptr<WebSocketSession>& session);
  /// Removes a client and delivers its `disconnect` (after the running handler, if any).
  void leave(ClientId client);
  /// Delivers one message from a member.
  void message(ClientId sender, const MessagePayload& payload);
  /// Server shutdown: every client gets its `disconnect` and a 1001 close; the service is
  /// destroyed.
  void shut_down();

  // Context
  void send(MessageRecipient to, MessagePayload payload) override;
  void set_timer(std::uint32_t ms) override;
  void fail(std::string_view reason) override;

 private:
  struct Member {
    ClientId id;
    std::shared_ptr<WebSocketSession> session;
  };

  /// Runs one handler, then whatever it caused: deferred disconnects, or the room's end when it
  /// failed (through Context::fail or an exception).
  template <class Handler>
  void run(const char* event, Handler&& handler);
  /// What runs after every handler: the room's end if it failed, else deferred disconnects and
  /// the empty-room grace period.
  void settle();
  void deliver_disconnect(ClientId client);
  void remove_member(ClientId client);
  /// Ends a failed room: closes every client with 1011, drops the service, leaves the registry.
  void terminate(const std::string& reason);
  void unregister();
  void on_empty();

  Worker& worker_;
  const std::string id_;
  std::unique_ptr<Service> service_;
  std::vector<Member> members_;  ///< sorted by id: ids only grow
  std::uint32_t next_client_ = 1;
  bool in_handler_ = false;
  bool emptied_ = false;  ///< the last member just left: the grace period starts after the handlers
  std::vector<ClientId> pending_disconnects_;
  std::optional<std::string> failure_;
  boost::asio::steady_timer timer_;
  std::uint64_t timer_generation_ = 0;
  boost::asio::steady_timer grace_timer_;
};

}  // namespace stateroom::server
