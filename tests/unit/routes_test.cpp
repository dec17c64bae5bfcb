// Request routing and room ids.
#include "../../src/server/routes.hpp"

#include <gtest/gtest.h>

namespace stateroom::server {
namespace {

TEST(Routes, Endpoints) {
  EXPECT_EQ(route("/status", "d").kind, Route::Kind::status);
  EXPECT_EQ(route("/status?x=1", "d").kind, Route::Kind::status);
  auto def = route("/ws", "lobby");
  EXPECT_EQ(def.kind, Route::Kind::websocket);
  EXPECT_EQ(def.room_id, "lobby");
  auto named = route("/ws/abc?token=1", "lobby");
  EXPECT_EQ(named.kind, Route::Kind::websocket);
  EXPECT_EQ(named.room_id, "abc");
  EXPECT_EQ(route("/ws/a/b", "d").kind, Route::Kind::other);
  EXPECT_EQ(route("/wsx", "d").kind, Route::Kind::other);
  EXPECT_EQ(route("/", "d").kind, Route::Kind::other);
}

TEST(Routes, RoomIds) {
  EXPECT_EQ(route("/ws/a%2Fb", "d").room_id, "a/b");
  EXPECT_EQ(route("/ws/%E2%9C%93", "d").room_id, "\u2713");
  EXPECT_EQ(route("/ws/a+b", "d").room_id, "a+b");
  EXPECT_EQ(route("/ws/" + std::string(256, 'x'), "d").kind, Route::Kind::websocket);
  for (const std::string& bad :
       std::vector<std::string>{"/ws/", "/ws/%", "/ws/%4", "/ws/%g0", "/ws/%C3", "/ws/%ED%A0%80",
                                "/ws/%C0%AF", "/ws/" + std::string(257, 'x')}) {
    const auto r = route(bad, "d");
    EXPECT_EQ(r.kind, Route::Kind::bad_request) << bad;
    EXPECT_FALSE(r.reason.empty());
  }
}

}  // namespace
}  // namespace stateroom::server
