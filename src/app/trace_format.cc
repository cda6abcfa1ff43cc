#include "svcmap/app/trace_format.h"

#include "fmt/format.h"
#include "svcmap/export/json_escape.h"

namespace svcmap::app {
namespace {

std::string Endpoint(const flow::IpAddr& ip, uint16_t port) {
  return ip.is_v4() ? fmt::format("{}:{}", ip.ToString(), port)
                    : fmt::format("[{}]:{}", ip.ToString(), port);
}

}  // namespace

std::string TraceHeader() {
  return fmt::format("{:<12} {:<7} {:>7} {:<15} {:<20} {:<20} {:>6} {:>6}", "TIME", "EVENT",
                     "PID", "COMM", "LOCAL", "REMOTE", "TX", "RX");
}

std::string TraceLine(const flow::SockEvent& ev, const exporter::Clock& clock) {
  const flow::SockRecord& s = ev.sock;
  std::string ts = clock.Rfc3339(ev.ts_ns);
  std::string hms = ts.size() >= 23 ? ts.substr(11, 12) : ts;
  std::string tx, rx;
  if (ev.type == flow::EventType::kClose) {
    tx = fmt::to_string(s.bytes_sent);
    rx = fmt::to_string(s.bytes_received);
  }
  std::string remote = ev.type == flow::EventType::kListen ? "-" : Endpoint(s.remote_ip, s.remote_port);
  return fmt::format("{:<12} {:<7} {:>7} {:<15.15} {:<20} {:<20} {:>6} {:>6}", hms,
                     flow::EventTypeName(ev.type), s.owner.process.pid, s.owner.comm,
                     Endpoint(s.local_ip, s.local_port), remote, tx, rx);
}

std::string TraceJson(const flow::SockEvent& ev, const exporter::Clock& clock) {
  // Formatted by hand rather than through a JSON DOM: this runs once per
  // event at tens of thousands of events a second, on the traced machine.
  const flow::SockRecord& s = ev.sock;
  std::string out;
  out.reserve(320);
  auto it = std::back_inserter(out);
  fmt::format_to(it, R"({{"time":"{}","type":"{}","pid":{},"comm":)", clock.Rfc3339(ev.ts_ns),
                 flow::EventTypeName(ev.type), s.owner.process.pid);
  exporter::AppendJsonString(out, s.owner.comm);
  fmt::format_to(it,
                 R"(,"role":"{}","family":"{}","saddr":"{}","sport":{},"daddr":"{}","dport":{},)"
                 R"("netns":{},"cgroup_id":{},"bytes_sent":{},"bytes_received":{})",
                 flow::RoleName(s.role), s.local_ip.is_v4() ? "ipv4" : "ipv6",
                 s.local_ip.ToString(), s.local_port, s.remote_ip.ToString(), s.remote_port,
                 s.netns, s.owner.cgroup_id, s.bytes_sent, s.bytes_received);
  if (ev.tcp) {
    fmt::format_to(it, R"(,"tcp_bytes_sent":{},"tcp_bytes_received":{})", ev.tcp->sent,
                   ev.tcp->received);
  }
  out.push_back('}');
  return out;
}

}  // namespace svcmap::app
