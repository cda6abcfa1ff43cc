#include "svcmap/app/trace_format.h"

#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace svcmap::app {
namespace {

std::string Endpoint(const flow::IpAddr& ip, uint16_t port) {
  return ip.is_v4() ? fmt::format("{}:{}", ip.ToString(), port)
                    : fmt::format("[{}]:{}", ip.ToString(), port);
}

}  // namespace

std::string TraceHeader() {
  return fmt::format("{:<12} {:<7} {:>7} {:<15} {:<22} {:<22} {:>6} {:>6}", "TIME", "EVENT",
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
  return fmt::format("{:<12} {:<7} {:>7} {:<15.15} {:<22} {:<22} {:>6} {:>6}", hms,
                     flow::EventTypeName(ev.type), s.owner.process.pid, s.owner.comm,
                     Endpoint(s.local_ip, s.local_port), remote, tx, rx);
}

std::string TraceJson(const flow::SockEvent& ev, const exporter::Clock& clock) {
  const flow::SockRecord& s = ev.sock;
  nlohmann::ordered_json j = {
      {"time", clock.Rfc3339(ev.ts_ns)},
      {"type", flow::EventTypeName(ev.type)},
      {"pid", s.owner.process.pid},
      {"comm", s.owner.comm},
      {"role", flow::RoleName(s.role)},
      {"family", s.local_ip.is_v4() ? "ipv4" : "ipv6"},
      {"saddr", s.local_ip.ToString()},
      {"sport", s.local_port},
      {"daddr", s.remote_ip.ToString()},
      {"dport", s.remote_port},
      {"netns", s.netns},
      {"cgroup_id", s.owner.cgroup_id},
      {"bytes_sent", s.bytes_sent},
      {"bytes_received", s.bytes_received},
  };
  if (ev.tcp) {
    j["tcp_bytes_sent"] = ev.tcp->sent;
    j["tcp_bytes_received"] = ev.tcp->received;
  }
  return j.dump();
}

}  // namespace svcmap::app
