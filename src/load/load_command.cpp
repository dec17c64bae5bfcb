#include "load_command.hpp"

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>

#include "cli/options.hpp"

namespace stateroom::load {

namespace {

// `parse`, throwing CLI11's error for `flag` when the text is not `what`.
template <class Parse>
auto checked(std::string flag, std::string what, Parse parse) {
  return [flag, what, parse](const std::string& text) {
    auto value = parse(text);
    if (!value) throw CLI::ValidationError(flag, "'" + text + "' is not " + what);
    return *value;
  };
}

// Seconds, with decimals (`2.5`), or a duration with a unit (`500ms`, `2m`).
std::optional<std::chrono::milliseconds> parse_seconds(std::string_view text) {
  double seconds = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec != std::errc{} || end != text.data() + text.size()) return cli::parse_duration(text);
  if (!(seconds >= 0 && seconds <= 1e9)) return std::nullopt;
  return std::chrono::milliseconds(std::llround(seconds * 1000));
}

}  // namespace

void add_load_options(CLI::App& app, LoadOptions& o) {
  app.add_option("--target", o.target, "The server: HOST:PORT ([::1]:PORT for IPv6)")->required();
  const std::string workloads = "echo, broadcast, counter, connect-churn or idle";
  app.add_option_function<std::string>(
         "--workload",
         [&o, workloads](const std::string& s) {
           o.workload = checked("--workload", workloads, parse_workload)(s);
         },
         workloads)
      ->default_str("echo");
  app.add_option("--connections", o.connections, "Connections (connect-churn: cycles under way at once)")
      ->capture_default_str();
  app.add_option_function<std::size_t>(
      "--rooms", [&o](std::size_t rooms) { o.rooms = rooms; },
      "Rooms the connections are spread over (default: one per connection; broadcast and idle: 1)");
  app.add_option("--in-flight", o.in_flight, "Messages each sender keeps unanswered")->capture_default_str();
  app.add_option("--rate", o.rate,
                 "Messages per second, paced evenly over the senders (each still keeps at most --in-flight "
                 "unanswered); 0 sends the next message as soon as one is answered")
      ->capture_default_str();
  app.add_option_function<std::string>(
         "--seconds",
         [&o](const std::string& s) { o.duration = checked("--seconds", "a duration", parse_seconds)(s); },
         "How long to measure: seconds (2.5) or a duration (500ms, 2m)")
      ->default_str("10");
  app.add_option_function<std::string>(
         "--payload",
         [&o](const std::string& s) { o.payload_bytes = checked("--payload", "a size", cli::parse_size)(s); },
         "Bytes in each message of echo and connect-churn (64KiB, 1MiB)")
      ->default_str("32");
  app.add_option_function<std::string>(
         "--warmup",
         [&o](const std::string& s) { o.warmup = checked("--warmup", "a duration", parse_seconds)(s); },
         "How long to run before measuring, once every connection is open")
      ->default_str("1");
  app.add_option("--path-prefix", o.path_prefix, "Room i is at <path-prefix><room-prefix>i")
      ->capture_default_str();
  app.add_option("--room-prefix", o.room_prefix, "The rooms' names before their number")
      ->capture_default_str();
  app.add_option_function<int>(
      "--server-pid", [&o](int pid) { o.server_pid = pid; },
      "A local server process: report its CPU time per message, CPU share and memory (from /proc)");
  app.add_option("--threads", o.threads, "Event loops sharing the connections")->capture_default_str();
  app.add_flag("--json", o.json, "Print the result as one JSON object");
}

int run_load_command(const LoadOptions& options, std::ostream& out, std::ostream& progress) {
  try {
    const LoadResult result = run_load(options, progress);
    print_report(result, out);
    out.flush();
    return result.errors.total() > 0 ? 1 : 0;
  } catch (const LoadError& e) {
    progress << "error: " << e.what() << "\n";
    return 2;
  }
}

}  // namespace stateroom::load
