#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/strings/match.h"
#include "fmt/format.h"
#include "svcmap/topology/graph.h"
#include "svcmap/topology/model.h"

namespace svcmap::topology {
namespace {

// 0 means "not known": such a range overlaps everything. Sampled once per
// `resolution`, a seen-first time can be up to one step late and a
// seen-last time one step early, so ranges closer than two steps may
// really overlap: seen in the store, a callee's last listen sample
// (its agent pushed just before a step) fell before the caller's first
// connection sample (its agent pushed just after), and the edge was lost.
bool Overlaps(int64_t a_first, int64_t a_last, int64_t b_first, int64_t b_last,
              int64_t resolution) {
  if (a_first == 0 || a_last == 0 || b_first == 0 || b_last == 0) return true;
  const int64_t slack = 2 * resolution;
  return a_first <= b_last + slack && b_first <= a_last + slack;
}

bool IsLoopback(std::string_view ip) { return ip.substr(0, 4) == "127." || ip == "::1"; }

void MergePorts(std::vector<uint16_t>& into, const std::vector<uint16_t>& from) {
  into.insert(into.end(), from.begin(), from.end());
  std::sort(into.begin(), into.end());
  into.erase(std::unique(into.begin(), into.end()), into.end());
}

void Widen(int64_t& first, int64_t& last, int64_t f, int64_t l) {
  if (f != 0 && (first == 0 || f < first)) first = f;
  if (l != 0 && l > last) last = l;
}

std::string Endpoint(const std::string& ip, uint16_t port) {
  return ip.find(':') != std::string::npos ? fmt::format("[{}]:{}", ip, port)
                                           : fmt::format("{}:{}", ip, port);
}

}  // namespace

absl::StatusOr<GroupBy> ParseGroupBy(std::string_view text) {
  if (text == "instance") return GroupBy::kInstance;
  if (text == "service") return GroupBy::kService;
  if (text == "machine") return GroupBy::kMachine;
  return absl::InvalidArgumentError(
      fmt::format("--group-by {:?}: want service, instance or machine", std::string(text)));
}

void Merge(Observations& into, Observations from) {
  absl::flat_hash_map<std::string, size_t> by_id;
  for (size_t i = 0; i < into.instances.size(); ++i)
    by_id.emplace(into.instances[i].instance_id, i);
  for (Instance& in : from.instances) {
    auto it = by_id.find(in.instance_id);
    if (it == by_id.end()) {
      by_id.emplace(in.instance_id, into.instances.size());
      into.instances.push_back(std::move(in));
      continue;
    }
    Instance& have = into.instances[it->second];
    MergePorts(have.listen_ports, in.listen_ports);
    Widen(have.first_seen_ms, have.last_seen_ms, in.first_seen_ms, in.last_seen_ms);
    if (have.pid == 0) have.pid = in.pid;
    if (have.machine.empty()) have.machine = in.machine;
  }
  for (Connection& c : from.connections) into.connections.push_back(std::move(c));
  for (Traffic& t : from.traffic) into.traffic.push_back(std::move(t));
  for (Process& p : from.processes) into.processes.push_back(std::move(p));
  into.time_resolution_ms = std::max(into.time_resolution_ms, from.time_resolution_ms);
}

void Health::Add(const Health& o) {
  refused += o.refused;
  timed_out += o.timed_out;
  error += o.error;
  resets_received += o.resets_received;
  resets_sent += o.resets_sent;
  retransmits += o.retransmits;
  rtt_samples += o.rtt_samples;
  rtt_sum_us += o.rtt_sum_us;
  if (o.rtt_min_us != 0) rtt_min_us = rtt_min_us ? std::min(rtt_min_us, o.rtt_min_us) : o.rtt_min_us;
  connect_samples += o.connect_samples;
  connect_sum_us += o.connect_sum_us;
}

Graph Join(const Observations& obs, GroupBy group_by) {
  // Who listens where (the instances, by address and by machine). Hash
  // maps: the join is a lookup per connection (bench/topobench.cc).
  absl::flat_hash_map<std::pair<std::string, uint16_t>, std::vector<size_t>> by_addr;
  absl::flat_hash_map<std::pair<std::string, uint16_t>, std::vector<size_t>> by_machine_port;
  absl::flat_hash_map<std::string, size_t> by_id;
  for (size_t i = 0; i < obs.instances.size(); ++i) {
    const Instance& in = obs.instances[i];
    by_id.emplace(in.instance_id, i);
    for (uint16_t p : in.listen_ports) {
      by_addr[{in.instance_ip, p}].push_back(i);
      by_machine_port[{in.machine, p}].push_back(i);
    }
  }

  // Nodes as the join sees them (per instance), then as grouped.
  auto node_id = [&](const Instance& in) -> std::string {
    switch (group_by) {
      case GroupBy::kInstance: return in.instance_id;
      case GroupBy::kService: return in.name;
      case GroupBy::kMachine: return in.machine.empty() ? in.instance_ip : in.machine;
    }
    return in.instance_id;
  };
  struct NodeAgg {
    Node node;
    std::set<std::string> ips, machines;
  };
  // node_hash_map: node_of points at its keys, which must not move.
  absl::node_hash_map<std::string, NodeAgg> nodes;
  // Each instance's node, once: the join refers to it per connection.
  std::vector<const std::string*> node_of(obs.instances.size(), nullptr);
  auto add_instance_node = [&](const Instance& in) -> const std::string& {
    std::string id = node_id(in);
    auto [it, fresh] = nodes.try_emplace(id);
    NodeAgg& n = it->second;
    if (fresh) {
      n.node.id = id;
      n.node.service = group_by == GroupBy::kMachine ? "" : in.name;
      n.node.instance_id = group_by == GroupBy::kInstance ? in.instance_id : "";
    }
    MergePorts(n.node.listen_ports, in.listen_ports);
    n.ips.insert(in.instance_ip);
    if (!in.machine.empty()) n.machines.insert(in.machine);
    return it->first;
  };
  for (size_t i = 0; i < obs.instances.size(); ++i)
    node_of[i] = &add_instance_node(obs.instances[i]);

  struct EdgeAgg {
    Edge edge;
    std::set<std::string> dst_ips;
  };
  absl::flat_hash_map<std::tuple<std::string, std::string, uint16_t>, EdgeAgg> edges;
  std::map<std::tuple<std::string, std::string, uint16_t>, Unmatched> unmatched;

  for (const Connection& c : obs.connections) {
    const std::string& ip = c.actual_dst_ip.empty() ? c.dst_ip : c.actual_dst_ip;
    const uint16_t port = c.actual_dst_ip.empty() ? c.dst_port : c.actual_dst_port;
    const std::vector<size_t>* claims = nullptr;
    if (IsLoopback(ip)) {
      auto it = by_machine_port.find({c.src_machine, port});
      if (it != by_machine_port.end()) claims = &it->second;
    } else {
      auto it = by_addr.find({ip, port});
      if (it != by_addr.end()) claims = &it->second;
    }
    std::set<std::string_view> candidate_ids;
    size_t chosen = 0;
    if (claims) {
      for (size_t i : *claims) {
        const Instance& in = obs.instances[i];
        if (!Overlaps(in.first_seen_ms, in.last_seen_ms, c.first_seen_ms, c.last_seen_ms,
                      obs.time_resolution_ms))
          continue;
        if (candidate_ids.insert(in.instance_id).second) chosen = i;
      }
    }
    if (candidate_ids.size() > 1) {
      Unmatched& u = unmatched[{c.src_instance_id, ip, port}];
      u.src_instance_id = c.src_instance_id;
      u.src_service_name = c.src_service_name;
      u.dst_ip = ip;
      u.dst_port = port;
      u.reason = "ambiguous";
      u.candidates.assign(candidate_ids.begin(), candidate_ids.end());
      u.bytes_sent += c.bytes_sent;
      u.bytes_received += c.bytes_received;
      u.connections += c.connections;
      continue;
    }

    // The source: its instance if an agent listed it, else what the
    // connection itself says.
    std::string src;
    const std::string& src_service = c.src_service_name;
    if (auto it = by_id.find(c.src_instance_id); it != by_id.end()) {
      src = *node_of[it->second];
    } else {
      Instance in;
      in.instance_id = c.src_instance_id;
      in.name = c.src_service_name;
      in.instance_ip = c.src_ip;
      in.machine = c.src_machine;
      src = add_instance_node(in);
    }

    std::string dst, dst_service;
    if (candidate_ids.size() == 1) {
      const Instance& in = obs.instances[chosen];
      dst = *node_of[chosen];
      dst_service = in.name;
    } else {
      dst = Endpoint(ip, port);
      Node& n = nodes[dst].node;
      n.id = dst;
      n.instance_ip = ip;
      n.listen_ports = {port};
      n.external = true;
    }
    EdgeAgg& e = edges[{src, dst, c.dst_port}];
    e.edge.src = src;
    e.edge.dst = dst;
    e.edge.src_service = group_by == GroupBy::kMachine ? "" : src_service;
    e.edge.dst_service = group_by == GroupBy::kMachine ? "" : dst_service;
    e.edge.dst_port = c.dst_port;
    e.edge.bytes_sent += c.bytes_sent;
    e.edge.bytes_received += c.bytes_received;
    e.edge.connections += c.connections;
    e.edge.active += c.active;
    e.edge.health.Add(c.health);
    e.dst_ips.insert(c.dst_ip);
  }

  // Traffic into a service from an address no agent covers: its caller was
  // not observed, so there is no source to draw an edge from. Listed, not
  // hidden (both ends' agents report a covered caller's traffic, and its
  // address is then an instance's).
  std::set<std::string> covered;
  for (const Instance& in : obs.instances) covered.insert(in.instance_ip);
  for (const Traffic& t : obs.traffic) {
    if (covered.contains(t.src_ip) || IsLoopback(t.src_ip)) continue;
    auto it = by_addr.find({t.dst_ip, t.dst_port});
    if (it == by_addr.end()) continue;
    std::set<std::string> ids;
    for (size_t i : it->second) ids.insert(obs.instances[i].instance_id);
    Unmatched& u = unmatched[{t.src_ip, t.dst_ip, t.dst_port}];
    u.src_instance_id = t.src_ip;
    u.dst_ip = t.dst_ip;
    u.dst_port = t.dst_port;
    u.reason = "caller not observed";
    u.candidates.assign(ids.begin(), ids.end());
    // Both directions, as NETWORK_TRAFFIC counts them.
    u.bytes_sent += t.bytes;
  }

  Graph g;
  g.nodes.reserve(nodes.size());
  for (auto& [id, agg] : nodes) {
    Node& n = agg.node;
    if (!n.external) {
      n.instance_ip = agg.ips.size() == 1 ? *agg.ips.begin() : "";
      n.machine = agg.machines.size() == 1 ? *agg.machines.begin() : "";
    }
    g.nodes.push_back(std::move(n));
  }
  std::sort(g.nodes.begin(), g.nodes.end(),
            [](const Node& a, const Node& b) { return a.id < b.id; });
  g.edges.reserve(edges.size());
  for (auto& [k, e] : edges) {
    e.edge.dst_ip = e.dst_ips.size() == 1 ? *e.dst_ips.begin() : "";
    g.edges.push_back(std::move(e.edge));
  }
  std::sort(g.edges.begin(), g.edges.end(), [](const Edge& a, const Edge& b) {
    return std::tie(a.src, a.dst, a.dst_port) < std::tie(b.src, b.dst, b.dst_port);
  });
  for (auto& [k, u] : unmatched) g.unmatched.push_back(std::move(u));
  return g;
}

std::string_view GuessProtocol(uint16_t port) {
  switch (port) {
    case 22: return "SSH";
    case 25: return "SMTP";
    case 53: return "DNS";
    case 80: case 8080: case 8000: case 3000: return "HTTP";
    case 443: case 8443: return "HTTPS";
    case 2379: return "etcd";
    case 3306: return "MySQL";
    case 5432: return "PostgreSQL";
    case 5672: return "AMQP";
    case 6379: return "Redis";
    case 8428: return "VictoriaMetrics";
    case 9042: return "Cassandra";
    case 9090: return "Prometheus";
    case 9092: return "Kafka";
    case 9200: return "Elasticsearch";
    case 11211: return "memcached";
    case 27017: return "MongoDB";
    default: return "";
  }
}

}  // namespace svcmap::topology
