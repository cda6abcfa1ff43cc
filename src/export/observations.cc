#include "svcmap/export/observations.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>

namespace svcmap::exporter {
namespace {

// The flow's health in the join's terms: the counts, and the latencies as
// sums over their samples (a snapshot carries means and sample counts, so
// both paths give the same means).
topology::Health HealthOf(const flow::FlowHealth& f) {
  topology::Health h;
  h.refused = f.refused;
  h.timed_out = f.timed_out;
  h.error = f.error;
  h.resets_received = f.resets_received;
  h.resets_sent = f.resets_sent;
  h.retransmits = f.retransmits;
  h.rtt_samples = f.rtt.count;
  h.rtt_sum_us = f.rtt.sum_us;
  h.rtt_min_us = f.rtt_min_us;
  h.connect_samples = f.connect.count;
  h.connect_sum_us = f.connect.sum_us;
  return h;
}

}  // namespace

topology::Observations ToObservations(const InstanceInfo& instance,
                                      const flow::ServiceGraph& graph) {
  // Field for field what ParseSnapshot makes of the same graph's document
  // (tests/observations_test.cc holds the two together).
  const std::string machine = instance.machine.empty() ? instance.hostname : instance.machine;
  const std::string& node_ip = instance.instance_ip;
  topology::Observations obs;
  std::map<std::string, std::string> ip_of;
  std::map<std::pair<uint32_t, std::string>, topology::Process> procs;
  obs.instances.reserve(graph.services.size());
  for (const flow::ServiceRow& s : graph.services) {
    topology::Instance in;
    in.instance_id = s.instance_id;
    in.instance_ip = s.instance_ip.empty() ? node_ip : s.instance_ip;
    in.name = s.name;
    in.machine = machine;
    in.pid = s.pids.empty() ? 0 : s.pids.front();
    in.listen_ports.assign(s.listen_ports.begin(), s.listen_ports.end());
    ip_of[in.instance_id] = in.instance_ip;
    for (const flow::AcceptedRow& a : s.accepted) {
      topology::Process& p = procs[{a.pid, in.name}];
      if (p.comm.empty()) p.comm = a.comm;
      p.bytes_sent += a.stats.bytes_sent;
      p.bytes_received += a.stats.bytes_received;
      p.connections += a.stats.connections;
      p.active += a.stats.active;
    }
    obs.instances.push_back(std::move(in));
  }
  obs.connections.reserve(graph.connections.size());
  for (const flow::ConnectionRow& c : graph.connections) {
    topology::Connection conn;
    conn.src_instance_id = c.src_instance_id;
    conn.src_service_name = c.src_service_name;
    conn.src_machine = machine;
    auto ip = ip_of.find(conn.src_instance_id);
    conn.src_ip = ip != ip_of.end() ? ip->second : node_ip;
    conn.dst_ip = c.dst_ip.ToString();
    conn.dst_port = c.dst_port;
    if (c.actual_dst_port != 0) {
      conn.actual_dst_ip = c.actual_dst_ip.ToString();
      conn.actual_dst_port = c.actual_dst_port;
    }
    conn.bytes_sent = c.stats.bytes_sent;
    conn.bytes_received = c.stats.bytes_received;
    conn.connections = c.stats.connections;
    conn.active = c.stats.active;
    conn.health = HealthOf(c.stats.health);
    topology::Process& p = procs[{c.src_pid, conn.src_service_name}];
    p.comm = c.src_comm;
    p.bytes_sent += conn.bytes_sent;
    p.bytes_received += conn.bytes_received;
    p.connections += conn.connections;
    p.active += conn.active;
    obs.connections.push_back(std::move(conn));
  }
  for (auto& [key, p] : procs) {
    if (key.first == 0) continue;  // exited processes, folded into their service
    p.machine = machine;
    p.pid = key.first;
    p.service = key.second;
    obs.processes.push_back(std::move(p));
  }
  // Every connection between two addresses to a port, together: what the
  // join sums the rows into anyway, and never capped.
  obs.traffic.reserve(graph.traffic_series.size());
  for (const flow::TrafficSeriesRow& t : graph.traffic_series)
    obs.traffic.push_back({t.src_ip.ToString(), t.dst_ip.ToString(), t.dst_port, t.bytes});
  return obs;
}

}  // namespace svcmap::exporter
