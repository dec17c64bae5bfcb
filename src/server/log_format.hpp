// The server's log lines cannot be forged: what clients and guests choose (room ids, paths, close
// reasons, guest output) is logged with its control characters escaped.
#pragma once

#include <string>
#include <string_view>

namespace stateroom::server {

/// `text` as a log line may show it: C0 and C1 control characters (a newline, ESC, CSI, ...), DEL
/// and bytes that are not UTF-8 as `\xNN` (a C1 character as the `\xNN` of each of its two bytes);
/// everything else (printable UTF-8, backslashes) as it is.
std::string escape_for_log(std::string_view text);

/// Whether escape_for_log would change `text`.
bool needs_escape_for_log(std::string_view text) noexcept;

/// Makes every sink of every logger registered now (spdlog's default one included) format lines
/// with their message escaped (escape_for_log), keeping spdlog's default pattern. Done once per
/// process when the first Server is made; a logger made or given a pattern later goes without.
void escape_logged_messages();

}  // namespace stateroom::server
