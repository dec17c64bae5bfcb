// print_report: the summary for people and the JSON object.
#include <cstdio>
#include <string>

#include "load.hpp"

namespace stateroom::load {

namespace {

// `value` with up to `decimals` decimals, trailing zeros dropped (a JSON number).
std::string number(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  std::string s = text;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s == "-0" ? "0" : s;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", byte);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string duration_text(double us) {
  if (us < 1000) return number(us, 1) + "us";
  if (us < 1e6) return number(us / 1e3, 2) + "ms";
  return number(us / 1e6, 2) + "s";
}

std::string size_text(double bytes) {
  if (bytes < 1024 && bytes > -1024) return number(bytes, 0) + " B";
  if (bytes < 1024 * 1024 && bytes > -1024 * 1024) return number(bytes / 1024, 1) + " KiB";
  return number(bytes / (1024 * 1024), 1) + " MiB";
}

std::string seconds_text(std::chrono::milliseconds d) {
  return number(static_cast<double>(d.count()) / 1000, 3) + " s";
}

void print_json(const LoadResult& r, std::ostream& out) {
  const LoadOptions& o = r.options;
  const LatencySummary& l = r.latency_us;
  const ErrorCounts& e = r.errors;
  out << "{\"workload\":" << json_string(workload_name(o.workload)) << ",\"target\":" << json_string(o.target)
      << ",\"connections\":" << o.connections << ",\"rooms\":" << *o.rooms << ",\"in_flight\":" << o.in_flight
      << ",\"payload_bytes\":" << o.payload_bytes << ",\"threads\":" << o.threads << ",\"rate\":" << number(o.rate, 1)
      << ",\"warmup_seconds\":" << number(static_cast<double>(o.warmup.count()) / 1000, 3)
      << ",\"seconds\":" << number(r.seconds, 3) << ",\"messages\":" << r.messages
      << ",\"messages_per_second\":" << number(r.messages_per_second, 1)
      << ",\"latency_us\":{\"p50\":" << number(l.p50, 1) << ",\"p90\":" << number(l.p90, 1)
      << ",\"p99\":" << number(l.p99, 1) << ",\"p999\":" << number(l.p999, 1)
      << ",\"max\":" << number(l.max, 1) << ",\"mean\":" << number(l.mean, 1) << "},\"errors\":" << e.total()
      << ",\"error_counts\":{\"connect\":" << e.connect << ",\"handshake\":" << e.handshake
      << ",\"closed\":" << e.closed << ",\"protocol\":" << e.protocol << ",\"mismatch\":" << e.mismatch
      << ",\"timeout\":" << e.timeout << "}";
  if (!r.first_error.empty()) out << ",\"first_error\":" << json_string(r.first_error);
  out << ",\"open_connections\":" << r.open_connections
      << ",\"load_cpu_share\":" << number(r.load_cpu_share, 3);
  if (o.server_pid) out << ",\"server_pid\":" << *o.server_pid;
  if (r.server) {
    out << ",\"server_cpu_us_per_message\":" << number(r.server->cpu_us_per_message, 3)
        << ",\"server_cpu_share\":" << number(r.server->cpu_share, 3)
        << ",\"rss_bytes\":" << r.server->rss_bytes;
    if (r.server->rss_bytes_per_connection)
      out << ",\"rss_bytes_per_connection\":" << number(*r.server->rss_bytes_per_connection, 0);
  }
  out << "}\n";
}

void print_summary(const LoadResult& r, std::ostream& out) {
  const LoadOptions& o = r.options;
  const bool churn = o.workload == Workload::connect_churn;
  out << workload_name(o.workload) << " @ " << o.target << ": " << o.connections
      << (churn ? " concurrent cycles" : " connections") << " in " << *o.rooms
      << (*o.rooms == 1 ? " room" : " rooms");
  if (o.workload != Workload::idle && !churn) out << ", " << o.in_flight << " in flight";
  if (o.rate > 0) out << ", paced at " << number(o.rate, 0) << " messages/s";
  if (o.workload == Workload::echo || churn) out << ", " << o.payload_bytes << "-byte messages";
  out << "; " << seconds_text(o.duration) << " measured after " << seconds_text(o.warmup) << " of warmup, "
      << o.threads << (o.threads == 1 ? " thread\n" : " threads\n");

  const LatencySummary& l = r.latency_us;
  if (l.max > 0) {
    out << "  " << (churn ? "Cycle time" : "Latency   ")
        << "      p50       p90       p99     p99.9       max      mean\n";
    char line[160];
    std::snprintf(line, sizeof line, "            %9s %9s %9s %9s %9s %9s\n", duration_text(l.p50).c_str(),
                  duration_text(l.p90).c_str(), duration_text(l.p99).c_str(), duration_text(l.p999).c_str(),
                  duration_text(l.max).c_str(), duration_text(l.mean).c_str());
    out << line;
  }
  out << "  " << r.messages << (churn ? " cycles" : " messages") << " in " << number(r.seconds, 3)
      << " s: " << number(r.messages_per_second, 1) << (churn ? " connections/s\n" : " messages/s\n");
  const ErrorCounts& e = r.errors;
  out << "  Errors: " << e.total();
  if (e.total() > 0) {
    const std::pair<const char*, std::uint64_t> kinds[] = {
        {"connect", e.connect},   {"handshake", e.handshake}, {"closed", e.closed},
        {"protocol", e.protocol}, {"mismatch", e.mismatch},   {"timeout", e.timeout}};
    const char* separator = " (";
    for (const auto& [name, count] : kinds) {
      if (count == 0) continue;
      out << separator << name << " " << count;
      separator = ", ";
    }
    out << "); the first: " << r.first_error;
  }
  out << "\n";
  if (!churn)
    out << "  Open at the end: " << r.open_connections
        << (r.open_connections == 1 ? " connection\n" : " connections\n");
  out << "  Load generator CPU: " << number(r.load_cpu_share * 100, 1) << "% of a core\n";
  if (r.server) {
    out << "  Server (pid " << *o.server_pid << "): " << number(r.server->cpu_share * 100, 1)
        << "% of a core, ";
    if (r.messages > 0)
      out << number(r.server->cpu_us_per_message, 3) << " us CPU per " << (churn ? "cycle" : "message")
          << ", ";
    out << "RSS " << size_text(static_cast<double>(r.server->rss_bytes));
    if (r.server->rss_bytes_per_connection)
      out << ", " << size_text(*r.server->rss_bytes_per_connection) << " per connection";
    out << "\n";
  }
}

}  // namespace

void print_report(const LoadResult& result, std::ostream& out) {
  if (result.options.json)
    print_json(result, out);
  else
    print_summary(result, out);
}

}  // namespace stateroom::load
