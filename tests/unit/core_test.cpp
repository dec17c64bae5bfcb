// The core types: ClientId, MessagePayload, MessageRecipient, factories.
#include <gtest/gtest.h>

#include <sstream>
#include <unordered_set>

#include "stateroom/server.hpp"
#include "stateroom/service.hpp"

namespace stateroom {
namespace {

TEST(ClientId, ComparesHashesAndPrints) {
  EXPECT_EQ(ClientId(3), ClientId(3));
  EXPECT_LT(ClientId(2), ClientId(3));
  std::unordered_set<ClientId> ids{ClientId(1), ClientId(2), ClientId(1)};
  EXPECT_EQ(ids.size(), 2u);
  EXPECT_EQ(to_string(ClientId(7)), "ClientId(7)");
  std::ostringstream os;
  os << ClientId(42);
  EXPECT_EQ(os.str(), "ClientId(42)");
}

TEST(MessagePayload, StringsAreTextAndBytesAreBinary) {
  MessagePayload text = std::string("increment");
  EXPECT_TRUE(text.is_text());
  EXPECT_TRUE(text.text() == "increment");
  EXPECT_FALSE(text.text() == "decrement");

  const std::vector<std::uint8_t> raw{'i', 'n', 'c', 'r', 'e', 'm', 'e', 'n', 't'};
  MessagePayload bytes = raw;
  EXPECT_TRUE(bytes.is_binary());
  EXPECT_FALSE(bytes.text().has_value());
  EXPECT_FALSE(bytes.text() == "increment") << "binary is never equal to text";
  EXPECT_EQ(std::vector<std::uint8_t>(bytes.bytes().begin(), bytes.bytes().end()), raw);
  EXPECT_EQ(bytes.view(), "increment");
  EXPECT_NE(text, bytes);
  EXPECT_EQ(MessagePayload("x").kind(), PayloadKind::text);
  EXPECT_EQ(MessagePayload(std::string_view("x")).kind(), PayloadKind::text);
  EXPECT_EQ(MessagePayload::binary("x").kind(), PayloadKind::binary);
}

TEST(MessagePayload, MovingKeepsTheBufferAndTheKind) {
  std::string big(1 << 20, 'z');
  MessagePayload a = MessagePayload::binary(std::move(big));
  const auto* data = a.view().data();
  MessagePayload b = std::move(a);
  EXPECT_EQ(b.view().data(), data) << "a move must not copy the buffer";
  EXPECT_TRUE(b.is_binary());
  std::string out = std::move(b).release();
  EXPECT_EQ(out.data(), data);
}

TEST(MessagePayload, AViewBorrowsAndACopyOwns) {
  std::string bytes = "a message longer than any small-string buffer";
  const MessagePayload view = MessagePayload::view(PayloadKind::binary, bytes);
  EXPECT_TRUE(view.is_view());
  EXPECT_EQ(view.view().data(), bytes.data()) << "a view must not copy";
  EXPECT_TRUE(view.is_binary());
  MessagePayload kept = view;  // what a service does to keep a message
  EXPECT_FALSE(kept.is_view());
  EXPECT_NE(kept.view().data(), bytes.data());
  EXPECT_EQ(kept, view);
  MessagePayload moved = MessagePayload::view(PayloadKind::text, bytes);
  MessagePayload target = std::move(moved);
  EXPECT_TRUE(target.is_view());
  bytes[0] = 'A';
  EXPECT_EQ(target.view().front(), 'A');
  EXPECT_EQ(kept.view().front(), 'a');
  target = kept;  // assigning a copy owns again
  EXPECT_FALSE(target.is_view());
  EXPECT_EQ(std::move(MessagePayload::view(PayloadKind::text, bytes)).release(), bytes);
}

TEST(MessageRecipient, IncludesTheRightClients) {
  const ClientId one(1), two(2);
  EXPECT_TRUE(broadcast().includes(one));
  EXPECT_TRUE(client(one).includes(one));
  EXPECT_FALSE(client(one).includes(two));
  EXPECT_FALSE(everyone_except(one).includes(one));
  EXPECT_TRUE(everyone_except(one).includes(two));
  MessageRecipient implicit = two;  // a bare id means that client
  EXPECT_EQ(implicit, client(two));
}

struct Plain : Service {};
struct WithRoom : Service {
  WithRoom(std::string_view room, Context&) : room(room) {}
  std::string room;
};

struct NullContext final : Context {
  void send(MessageRecipient, const MessagePayload&) override {}
  void set_timer(std::uint32_t) override {}
  void fail(std::string_view) override {}
};

TEST(ServiceFactory, BuildsDefaultAndRoomAwareServices) {
  NullContext ctx;
  auto plain = make_factory<Plain>()->create("r", ctx);
  EXPECT_NE(plain, nullptr);
  auto aware = make_factory<WithRoom>()->create("lobby", ctx);
  ASSERT_NE(aware, nullptr);
  EXPECT_EQ(static_cast<WithRoom&>(*aware).room, "lobby");
  static_assert(ServiceType<Plain> && ServiceType<WithRoom>);
  static_assert(!ServiceType<int>);
}

TEST(Status, AnErrorIsNeverOkEvenWithoutAMessage) {
  const Status fine;
  EXPECT_TRUE(fine.ok());
  EXPECT_TRUE(static_cast<bool>(fine));
  EXPECT_EQ(fine.message(), "");
  const Status failed = Status::error("port 80 is in use");
  EXPECT_FALSE(failed.ok());
  EXPECT_EQ(failed.message(), "port 80 is in use");
  const Status unexplained = Status::error("");
  EXPECT_FALSE(unexplained.ok());
  EXPECT_FALSE(static_cast<bool>(unexplained));
  EXPECT_EQ(unexplained.message(), "unknown error");
}

}  // namespace
}  // namespace stateroom
