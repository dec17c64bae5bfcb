#include "room.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>

#include "websocket_session.hpp"
#include "worker.hpp"

namespace stateroom::server {

namespace websocket = boost::beast::websocket;

std::shared_ptr<Room> Room::create(Worker& worker, std::string id) {
  auto room = std::make_shared<Room>(worker, std::move(id));
  room->run("create", [&] {
    room->service_ = worker.shared.factory->create(room->id_, *room);
    if (!room->service_ && !room->failure_) room->failure_ = "the service factory built nothing";
  });
  if (!room->alive()) return nullptr;
  spdlog::debug("room '{}' created", room->id_);
  room->run("init", [&] { room->service_->init(*room); });
  if (!room->alive()) return nullptr;
  return room;
}

Room::Room(Worker& worker, std::string id)
    : worker_(worker), id_(std::move(id)), timer_(worker.ioc), grace_timer_(worker.ioc) {}

Room::~Room() = default;

template <class Handler>
void Room::run(const char* event, Handler&& handler) {
  in_handler_ = true;
  try {
    handler();
  } catch (const std::exception& e) {
    failure_ = std::string(event) + " threw: " + e.what();
  } catch (...) {
    failure_ = std::string(event) + " threw a non-standard exception";
  }
  in_handler_ = false;
  settle();
}

void Room::settle() {
  if (failure_) {
    terminate(*failure_);
    return;
  }
  // Disconnects caused by the handler (clients evicted while it sent) run now, each its own handler.
  while (!pending_disconnects_.empty() && alive()) {
    const ClientId client = pending_disconnects_.front();
    pending_disconnects_.erase(pending_disconnects_.begin());
    deliver_disconnect(client);
  }
  if (emptied_ && alive() && members_.empty() && !worker_.shutting_down) on_empty();
  emptied_ = false;
}

void Room::deliver_disconnect(ClientId client) {
  run("disconnect", [&] { service_->disconnect(client, *this); });
}

std::optional<ClientId> Room::join(const std::shared_ptr<WebSocketSession>& session) {
  if (!alive()) return std::nullopt;
  grace_timer_.cancel();
  const ClientId client{next_client_++};
  members_.push_back({client, session});
  session->attach(shared_from_this(), client);
  run("connect", [&] { service_->connect(client, *this); });
  if (!alive()) return std::nullopt;
  return client;
}

void Room::remove_member(ClientId client) {
  auto it = std::lower_bound(members_.begin(), members_.end(), client,
                             [](const Member& m, ClientId c) { return m.id < c; });
  if (it != members_.end() && it->id == client) members_.erase(it);
  emptied_ = members_.empty();
}

void Room::leave(ClientId client) {
  if (!alive()) return;
  remove_member(client);
  if (in_handler_) {
    pending_disconnects_.push_back(client);
    return;
  }
  deliver_disconnect(client);
}

void Room::message(ClientId sender, const MessagePayload& payload) {
  if (!alive()) return;
  run("message", [&] { service_->message(sender, payload, *this); });
}

void Room::send(MessageRecipient to, MessagePayload payload) {
  if (members_.empty()) return;
  // One immutable payload shared by every recipient.
  auto shared = std::make_shared<const MessagePayload>(std::move(payload));
  std::vector<ClientId> evicted;
  auto deliver = [&](Member& m) {
    if (!m.session->enqueue(shared)) evicted.push_back(m.id);
  };
  if (to.kind == MessageRecipient::Kind::client) {
    auto it = std::lower_bound(members_.begin(), members_.end(), to.id,
                               [](const Member& m, ClientId c) { return m.id < c; });
    if (it != members_.end() && it->id == to.id) {
      deliver(*it);
    } else {
      spdlog::debug("room '{}': message to client {} dropped (not connected)", id_, to.id.value);
    }
  } else {
    for (auto& m : members_) {
      if (to.includes(m.id)) deliver(m);
    }
  }
  for (ClientId client : evicted) leave(client);
}

void Room::set_timer(std::uint32_t ms) {
  const std::uint64_t generation = ++timer_generation_;
  timer_.expires_after(std::chrono::milliseconds(ms));
  timer_.async_wait([weak = weak_from_this(), generation](boost::system::error_code) {
    auto self = weak.lock();
    if (!self || !self->alive() || generation != self->timer_generation_) return;
    self->run("timer", [&] { self->service_->timer(*self); });
  });
}

void Room::fail(std::string_view reason) {
  if (!failure_) failure_ = std::string(reason);
}

void Room::on_empty() {
  const auto& delay = worker_.shared.options.room_grace.delay;
  if (!delay) return;
  if (delay->count() == 0) {
    spdlog::debug("room '{}' is empty: destroyed", id_);
    unregister();
    service_.reset();
    return;
  }
  grace_timer_.expires_after(*delay);
  grace_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || !self->alive() || !self->members_.empty()) return;
    spdlog::debug("room '{}' stayed empty for its grace period: destroyed", self->id_);
    self->unregister();
    self->service_.reset();
  });
}

void Room::unregister() {
  timer_.cancel();
  grace_timer_.cancel();
  auto it = worker_.rooms.find(id_);
  if (it != worker_.rooms.end() && it->second.get() == this) worker_.rooms.erase(it);
}

void Room::terminate(const std::string& reason) {
  spdlog::error("room '{}' failed: {}; closing its {} client(s)", id_, reason, members_.size());
  auto self = shared_from_this();  // the registry may hold the last reference
  auto members = std::move(members_);
  members_.clear();
  pending_disconnects_.clear();
  for (auto& m : members) m.session->close_from_room(websocket::close_code::internal_error, "room failed");
  unregister();
  service_.reset();
  failure_.reset();
}

void Room::shut_down() {
  grace_timer_.cancel();
  while (!members_.empty() && alive()) {
    Member m = std::move(members_.front());
    members_.erase(members_.begin());
    m.session->close_from_room(websocket::close_code::going_away, "server shutting down");
    deliver_disconnect(m.id);
  }
  // A room that failed above has already closed the rest.
  timer_.cancel();
  service_.reset();
}

}  // namespace stateroom::server
