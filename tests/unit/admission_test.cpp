// The connection and room budgets, and the log that reports their refusals.
#include "server/admission.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>
#include <vector>

namespace stateroom::server {
namespace {

PeerAddress ip(const char* text) { return peer_address(boost::asio::ip::make_address(text)); }

TEST(Admission, LoopbackIsEveryLocalAddressAndNothingElse) {
  EXPECT_TRUE(is_loopback(ip("127.0.0.1")));
  EXPECT_TRUE(is_loopback(ip("127.3.2.1")));
  EXPECT_TRUE(is_loopback(ip("::1")));
  EXPECT_TRUE(is_loopback(ip("::ffff:127.0.0.1")));
  EXPECT_FALSE(is_loopback(ip("10.0.0.1")));
  EXPECT_FALSE(is_loopback(ip("::2")));
  EXPECT_FALSE(is_loopback(ip("::")));
  EXPECT_FALSE(is_loopback(ip("2001:db8::1")));
  EXPECT_EQ(ip("10.1.2.3"), ip("::ffff:10.1.2.3")) << "IPv4 and its mapped form are one address";
}

TEST(Admission, AddressesAreWrittenAsPeopleWriteThem) {
  std::array<char, 46> buffer{};
  EXPECT_EQ(format_peer_address(ip("203.0.113.7"), buffer), "203.0.113.7");
  EXPECT_EQ(format_peer_address(ip("::ffff:203.0.113.7"), buffer), "203.0.113.7") << "IPv4 over an IPv6 socket";
  EXPECT_EQ(format_peer_address(ip("2001:db8::1"), buffer), "2001:db8::1");
  EXPECT_EQ(format_peer_address(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), buffer),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
}

TEST(Admission, TheConnectionBudgetIsGivenBackByTicketsWhereverTheyGo) {
  Admission a;
  a.configure({.connections = 3});
  Refusal why{};
  std::vector<ConnectionTicket> held;
  for (int i = 0; i < 3; ++i) {
    auto t = a.admit(ip("10.0.0.1"), &why);
    ASSERT_TRUE(t);
    held.push_back(std::move(*t));
  }
  EXPECT_EQ(a.connections(), 3u);
  EXPECT_FALSE(a.admit(ip("10.0.0.2"), &why));
  EXPECT_EQ(why, Refusal::connections);
  ConnectionTicket moved = std::move(held.back());  // moving keeps the one place
  held.pop_back();
  EXPECT_EQ(a.connections(), 3u);
  moved = ConnectionTicket{};  // replacing it gives the place back
  EXPECT_EQ(a.connections(), 2u);
  EXPECT_TRUE(a.admit(ip("10.0.0.2"), &why));  // and a temporary goes at once
  EXPECT_EQ(a.connections(), 2u);
  held.clear();
  EXPECT_EQ(a.connections(), 0u);
}

TEST(Admission, OneAddressIsCappedAndLoopbackIsNot) {
  Admission a;
  a.configure({.connections_per_ip = 2});
  Refusal why{};
  auto first = a.admit(ip("192.0.2.7"), &why);
  auto second = a.admit(ip("192.0.2.7"), &why);
  ASSERT_TRUE(first && second);
  EXPECT_FALSE(a.admit(ip("::ffff:192.0.2.7"), &why)) << "the same address, mapped";
  EXPECT_EQ(why, Refusal::connections_per_ip);
  EXPECT_TRUE(a.admit(ip("192.0.2.8"), &why)) << "another address has its own budget";
  std::vector<ConnectionTicket> local;
  for (int i = 0; i < 10; ++i) {
    auto t = a.admit(ip("127.0.0.1"), &why);
    ASSERT_TRUE(t) << "loopback is not counted";
    local.push_back(std::move(*t));
  }
  first.reset();
  EXPECT_TRUE(a.admit(ip("192.0.2.7"), &why)) << "a closed connection gives its address's place back";

  // An IPv6 host has its whole /64: its addresses share one budget.
  auto v6a = a.admit(ip("2001:db8:1:2::1"), &why);
  auto v6b = a.admit(ip("2001:db8:1:2:ffff::9"), &why);
  ASSERT_TRUE(v6a && v6b);
  EXPECT_FALSE(a.admit(ip("2001:db8:1:2:1234:5678:9abc:def0"), &why)) << "the same /64";
  EXPECT_TRUE(a.admit(ip("2001:db8:1:3::1"), &why)) << "another /64 has its own budget";
  v6a.reset();
  EXPECT_TRUE(a.admit(ip("2001:db8:1:2::77"), &why)) << "given back to the /64";
}

TEST(Admission, RoomsAreCappedAndEachAddressCreatesThemAtItsRate) {
  Admission a;
  a.configure({.rooms = 50, .new_rooms_per_ip_per_second = 5});
  const PeerAddress client = ip("198.51.100.1");
  int created = 0;
  while (!a.admit_room(&client)) ++created;
  EXPECT_EQ(created, 10) << "a burst of twice the rate";
  EXPECT_EQ(a.admit_room(&client), Refusal::room_creations_per_ip);
  EXPECT_EQ(a.rooms(), 10u) << "a refused room holds no place";
  const PeerAddress other = ip("198.51.100.2");
  EXPECT_EQ(a.admit_room(&other), std::nullopt) << "another address has its own rate";
  const PeerAddress local = ip("::1");
  std::optional<Refusal> last;
  while (!(last = a.admit_room(&local))) {
  }
  EXPECT_EQ(last, Refusal::rooms) << "loopback creates rooms up to the room budget";
  EXPECT_EQ(a.rooms(), 50u);
  a.room_ended();
  EXPECT_EQ(a.admit_room(nullptr), std::nullopt) << "an ended room gives its place back";
  EXPECT_EQ(a.admit_room(nullptr), Refusal::rooms);
}

// The rooms alive that one remote address created are bounded; each that ends gives its place
// back to that address; loopback and rooms not made for a client are not counted.
TEST(Admission, TheRoomsAliveThatOneAddressCreatedAreBounded) {
  Admission a;
  a.configure({.rooms = 50, .rooms_per_ip = 3});
  const PeerAddress client = ip("198.51.100.1");
  for (int i = 0; i < 3; ++i) ASSERT_EQ(a.admit_room(&client), std::nullopt);
  EXPECT_EQ(a.admit_room(&client), Refusal::rooms_per_ip);
  EXPECT_EQ(a.rooms(), 3u) << "a refused room holds no place";
  const PeerAddress other = ip("198.51.100.2");
  EXPECT_EQ(a.admit_room(&other), std::nullopt) << "another address has its own bound";
  a.room_ended(&client);
  EXPECT_EQ(a.admit_room(&client), std::nullopt) << "an ended room gives its address's place back";
  EXPECT_EQ(a.admit_room(&client), Refusal::rooms_per_ip);
  const PeerAddress local = ip("127.0.0.1");
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.admit_room(&local), std::nullopt) << "loopback is not counted";
  EXPECT_EQ(a.admit_room(nullptr), std::nullopt);
  // A refusal by the creation rate leaves the address's count as it was.
  Admission rated;
  rated.configure({.rooms = 50, .new_rooms_per_ip_per_second = 1, .rooms_per_ip = 3});
  EXPECT_EQ(rated.admit_room(&client), std::nullopt);
  EXPECT_EQ(rated.admit_room(&client), std::nullopt);
  EXPECT_EQ(rated.admit_room(&client), Refusal::room_creations_per_ip);
  rated.room_ended(&client);
  rated.room_ended(&client);
  EXPECT_EQ(rated.rooms(), 0u);
}

TEST(Admission, RefusalsAreLoggedOncePerIntervalForEachCause) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  RefusalLog log;
  for (int i = 0; i < 1000; ++i) log.report(Refusal::connections, "refused a connection");
  log.report(Refusal::rooms, "refused a room");
  spdlog::set_default_logger(previous);
  const std::string text = out.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2) << text;
  EXPECT_NE(text.find("refused a connection"), std::string::npos);
  EXPECT_NE(text.find("refused a room"), std::string::npos) << "each cause has its own interval";
}

}  // namespace
}  // namespace stateroom::server
