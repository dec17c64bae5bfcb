#include "server/log_format.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>
#include <string>

namespace stateroom::server {
namespace {

TEST(LogFormat, ControlCharactersAndBytesThatAreNotUtf8AreEscaped) {
  EXPECT_EQ(escape_for_log("room-1 ok"), "room-1 ok");
  EXPECT_FALSE(needs_escape_for_log("room-1 ok"));
  EXPECT_EQ(escape_for_log("x\n[2026-12-07 10:00:00.000] [critical] FORGED\x1b[2J"),
            "x\\x0a[2026-12-07 10:00:00.000] [critical] FORGED\\x1b[2J");
  EXPECT_EQ(escape_for_log(std::string("a\0b\r\t\x7f", 6)), "a\\x00b\\x0d\\x09\\x7f");
  EXPECT_EQ(escape_for_log("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")
      << "printable UTF-8 stays as it is";
  EXPECT_EQ(escape_for_log("\xc2\x9b" "31m"), "\\xc2\\x9b31m") << "a C1 control (CSI) is escaped";
  EXPECT_EQ(escape_for_log("\xff\xc3"), "\\xff\\xc3") << "bytes that are not UTF-8, a truncated character";
  EXPECT_EQ(escape_for_log("\xc0\x8a"), "\\xc0\\x8a") << "an overlong newline";
  EXPECT_EQ(escape_for_log("\xed\xa0\x80"), "\\xed\\xa0\\x80") << "a surrogate";
  EXPECT_EQ(escape_for_log("back\\slash \\x0a"), "back\\x5cslash \\x5cx0a")
      << "a backslash begins an escape: one sent as text cannot pass for one";
  EXPECT_EQ(escape_for_log("a\xe2\x80\xa8[info] b\xe2\x80\xa9"), "a\\xe2\\x80\\xa8[info] b\\xe2\\x80\\xa9")
      << "the line and paragraph separators";
  EXPECT_EQ(escape_for_log("\xe2\x80\xae" "evil\xe2\x81\xa6"), "\\xe2\\x80\\xaeevil\\xe2\\x81\\xa6")
      << "a right-to-left override, an isolate";
  EXPECT_EQ(escape_for_log("\xe2\x80\xa7\xe2\x80\xaf"), "\xe2\x80\xa7\xe2\x80\xaf") << "their neighbours are shown";
  EXPECT_TRUE(needs_escape_for_log("\x1b"));
}

TEST(LogFormat, EveryLoggedMessageIsEscapedAndTheLineKeepsItsPattern) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  auto logger = std::make_shared<spdlog::logger>("escaping-test", sink);
  spdlog::register_logger(logger);
  escape_logged_messages();
  logger->warn("room '{}' refused", "x\n[critical] FORGED\x1b[2J");
  spdlog::drop("escaping-test");
  const std::string line = out.str();
  EXPECT_NE(line.find("[warning] room 'x\\x0a[critical] FORGED\\x1b[2J' refused"), std::string::npos) << line;
  EXPECT_EQ(line.find('\x1b'), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line: " << line;
}

}  // namespace
}  // namespace stateroom::server
