#include "svcmap/flow/service_view.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "fmt/format.h"

namespace svcmap::flow {
namespace {

std::string NameOf(const ProcessTable& processes, const ProcessKey& key) {
  const ProcessInfo* info = processes.Find(key);
  if (info == nullptr || info->name.empty()) return fmt::format("pid-{}", key.pid);
  return info->name;
}

}  // namespace

std::string InstanceId(std::string_view name, std::string_view instance_ip) {
  return fmt::format("{}@{}", name, instance_ip);
}

ServiceGraph BuildServiceView(const FlowView& flows,
                              const std::vector<Listener>& listeners,
                              const ProcessTable& processes,
                              const ServiceViewOptions& options) {
  auto wanted = [&](uint32_t netns) {
    return !options.netns.has_value() || *options.netns == netns;
  };
  // std::map: the output is sorted by name (then address) without a
  // separate pass.
  std::map<std::pair<std::string, std::string>, ServiceRow> services;
  std::map<std::pair<std::string, std::string>, std::set<uint32_t>> pids;
  auto service = [&](const ProcessKey& key, uint32_t netns) -> ServiceRow& {
    std::string name = NameOf(processes, key);
    auto ip_it = options.netns_ips.find(netns);
    const std::string& ip = ip_it != options.netns_ips.end() ? ip_it->second : options.instance_ip;
    std::pair<std::string, std::string> id{name, ip};
    ServiceRow& row = services[id];
    if (row.name.empty()) {
      row.name = name;
      row.instance_ip = ip;
      row.instance_id = InstanceId(name, ip);
    }
    pids[id].insert(key.pid);
    const ProcessInfo* info = processes.Find(key);
    if (row.exe.empty() && info != nullptr) row.exe = info->exe;
    if (row.name_source.empty() && info != nullptr) row.name_source = info->name_source;
    return row;
  };

  for (const Listener& l : listeners) {
    if (!wanted(l.netns)) continue;
    service(l.owner.process, l.netns).listen_ports.insert(l.port);
  }

  ServiceGraph graph;
  for (const auto& [key, stats] : flows.flows) {
    if (!wanted(key.netns)) continue;
    ServiceRow& row = service(key.process, key.netns);
    if (key.role == Role::kServer) {
      const ProcessInfo* info = processes.Find(key.process);
      row.accepted.push_back(AcceptedRow{key.process.pid, info ? info->comm : "", key.local_ip,
                                         key.local_port, key.remote_ip, stats});
      continue;
    }
    ConnectionRow c;
    c.src_instance_id = row.instance_id;
    c.src_service_name = row.name;
    c.src_pid = key.process.pid;
    if (const ProcessInfo* info = processes.Find(key.process)) c.src_comm = info->comm;
    c.src_ip = key.local_ip;
    c.dst_ip = key.remote_ip;
    c.dst_port = key.remote_port;
    c.actual_dst_ip = key.nat_ip;
    c.actual_dst_port = key.nat_port;
    c.stats = stats;
    graph.connections.push_back(std::move(c));
  }

  for (const auto& [key, stats] : flows.traffic) {
    if (!wanted(key.netns)) continue;
    graph.traffic.push_back(TrafficRow{key.src_ip, key.src_port, key.dst_ip,
                                       key.dst_port, stats.bytes_to_dst,
                                       stats.bytes_to_src, key.observed_as,
                                       stats.process.pid, stats.last_seen_ns});
  }

  for (auto& [id, row] : services) {
    row.pids.assign(pids[id].begin(), pids[id].end());
    std::sort(row.accepted.begin(), row.accepted.end(),
              [](const AcceptedRow& a, const AcceptedRow& b) {
                return std::tie(a.local_port, a.peer_ip, a.pid) <
                       std::tie(b.local_port, b.peer_ip, b.pid);
              });
    graph.services.push_back(std::move(row));
  }
  std::sort(graph.connections.begin(), graph.connections.end(),
            [](const ConnectionRow& a, const ConnectionRow& b) {
              return std::tie(a.src_service_name, a.src_pid, a.dst_ip, a.dst_port, a.src_ip) <
                     std::tie(b.src_service_name, b.src_pid, b.dst_ip, b.dst_port, b.src_ip);
            });
  std::sort(graph.traffic.begin(), graph.traffic.end(),
            [](const TrafficRow& a, const TrafficRow& b) {
              return std::tie(a.dst_ip, a.dst_port, a.src_ip, a.src_port, a.observed_as) <
                     std::tie(b.dst_ip, b.dst_port, b.src_ip, b.src_port, b.observed_as);
            });
  return graph;
}

}  // namespace svcmap::flow
