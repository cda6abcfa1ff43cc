#include "svcmap/flow/service_view.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "fmt/format.h"

namespace svcmap::flow {
namespace {

void AppendIp(std::string& out, const IpAddr& ip) {
  out.push_back(static_cast<char>(ip.version()));
  out.append(reinterpret_cast<const char*>(ip.bytes().data()), ip.is_v4() ? 4 : 16);
}

template <typename T>
void AppendInt(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(v));
}

}  // namespace

std::string GroupId(const FlowKey& g) {
  std::string id;
  id.reserve(g.service.size() + 64);
  AppendInt(id, g.netns);
  AppendInt(id, static_cast<uint8_t>(g.role));
  AppendIp(id, g.local_ip);
  AppendInt(id, g.local_port);
  AppendIp(id, g.remote_ip);
  AppendInt(id, g.remote_port);
  AppendIp(id, g.nat_ip);
  AppendInt(id, g.nat_port);
  id.append(g.service);
  return id;
}

std::string TrafficId(const TrafficKey& t) {
  std::string id;
  AppendInt(id, t.netns);
  AppendInt(id, static_cast<uint8_t>(t.observed_as));
  AppendIp(id, t.src_ip);
  AppendIp(id, t.dst_ip);
  AppendInt(id, t.dst_port);
  return id;
}

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
  // A retired flow's service is in its key; a process's, in the table
  // (nullopt: not named yet, left out of this view).
  auto name_of = [&](const ProcessKey& key, const std::string& retired) -> std::optional<std::string> {
    if (!retired.empty()) return retired;
    if (const ProcessInfo* info = processes.Find(key)) {
      if (!info->name.empty()) return info->name;
      if (!info->comm.empty()) return info->comm;
      return fmt::format("pid-{}", key.pid);
    }
    if (processes.Get(key) != nullptr) return std::nullopt;  // pending
    return fmt::format("pid-{}", key.pid);
  };
  auto service = [&](const ProcessKey& key, uint32_t netns, const std::string& name) -> ServiceRow& {
    auto ip_it = options.netns_ips.find(netns);
    const std::string& ip = ip_it != options.netns_ips.end() ? ip_it->second : options.instance_ip;
    std::pair<std::string, std::string> id{name, ip};
    ServiceRow& row = services[id];
    if (row.name.empty()) {
      row.name = name;
      row.instance_ip = ip;
      row.instance_id = InstanceId(name, ip);
    }
    if (key.pid != 0) pids[id].insert(key.pid);
    const ProcessInfo* info = processes.Find(key);
    if (row.exe.empty() && info != nullptr) row.exe = info->exe;
    if (row.name_source.empty() && info != nullptr) row.name_source = info->name_source;
    return row;
  };

  for (const Listener& l : listeners) {
    if (!wanted(l.netns)) continue;
    std::optional<std::string> name = name_of(l.owner.process, "");
    if (!name) continue;
    service(l.owner.process, l.netns, *name).listen_ports.insert(l.port);
  }

  ServiceGraph graph;
  for (const auto& [key, stats] : flows.flows) {
    if (!wanted(key.netns)) continue;
    std::optional<std::string> name = name_of(key.process, key.service);
    if (!name) continue;
    ServiceRow& row = service(key.process, key.netns, *name);
    if (key.role == Role::kServer) {
      const ProcessInfo* info = processes.Find(key.process);
      row.accepted.push_back(AcceptedRow{key.process.pid, info ? info->comm : "", key.local_ip,
                                         key.local_port, key.remote_ip, stats,
                                         GroupId(key.retired() ? key : key.Group(*name))});
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
    c.netns = key.netns;
    c.group = GroupId(key.retired() ? key : key.Group(*name));
    graph.connections.push_back(std::move(c));
  }
  for (const auto& [key, t] : flows.traffic_series) {
    if (!wanted(key.netns)) continue;
    graph.traffic_series.push_back(TrafficSeriesRow{key.src_ip, key.dst_ip, key.dst_port,
                                                    t.bytes_to_dst + t.bytes_to_src, t.live,
                                                    t.last_seen_ns, TrafficId(key)});
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
              return std::tie(a.src_service_name, a.src_pid, a.dst_ip, a.dst_port, a.src_ip,
                              a.actual_dst_ip, a.actual_dst_port, a.netns) <
                     std::tie(b.src_service_name, b.src_pid, b.dst_ip, b.dst_port, b.src_ip,
                              b.actual_dst_ip, b.actual_dst_port, b.netns);
            });
  std::sort(graph.traffic_series.begin(), graph.traffic_series.end(),
            [](const TrafficSeriesRow& a, const TrafficSeriesRow& b) {
              return std::tie(a.dst_ip, a.dst_port, a.src_ip, a.id) <
                     std::tie(b.dst_ip, b.dst_port, b.src_ip, b.id);
            });
  std::sort(graph.traffic.begin(), graph.traffic.end(),
            [](const TrafficRow& a, const TrafficRow& b) {
              return std::tie(a.dst_ip, a.dst_port, a.src_ip, a.src_port, a.observed_as) <
                     std::tie(b.dst_ip, b.dst_port, b.src_ip, b.src_port, b.observed_as);
            });
  return graph;
}

}  // namespace svcmap::flow
