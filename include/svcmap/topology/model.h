#ifndef SVCMAP_TOPOLOGY_MODEL_H_
#define SVCMAP_TOPOLOGY_MODEL_H_

// What the agents saw, in the seed's data model, whatever it was read from
// (snapshot files, the agents' /api/snapshot, a Prometheus-compatible
// store): the input of the cross-machine join.

#include <cstdint>
#include <string>
#include <vector>

namespace svcmap::topology {

// SERVICE: a service instance on one machine, and when it was seen
// listening (ms since the epoch; 0 when unknown: always).
struct Instance {
  std::string instance_id;
  std::string instance_ip;
  std::string name;
  std::string machine;  // the agent's host name, or its instance label
  uint32_t pid = 0;
  std::vector<uint16_t> listen_ports;  // ascending
  int64_t first_seen_ms = 0;
  int64_t last_seen_ms = 0;
};

// TCP's own health of a set of closed connections, as counts and sums so
// that they add up over an edge (docs/metrics.md).
struct Health {
  uint64_t refused = 0;    // connect attempts, by outcome
  uint64_t timed_out = 0;
  uint64_t error = 0;
  uint64_t resets_received = 0;
  uint64_t resets_sent = 0;
  uint64_t retransmits = 0;
  uint64_t rtt_samples = 0;  // connections with a smoothed RTT, and their sum
  uint64_t rtt_sum_us = 0;
  uint64_t rtt_min_us = 0;   // the lowest minimum RTT of any; 0: none
  uint64_t connect_samples = 0;
  uint64_t connect_sum_us = 0;

  void Add(const Health& o);
  uint64_t failed() const { return refused + timed_out + error; }
  uint64_t resets() const { return resets_received + resets_sent; }
  // Means; 0 without a sample.
  uint64_t rtt_us() const { return rtt_samples ? rtt_sum_us / rtt_samples : 0; }
  uint64_t connect_us() const { return connect_samples ? connect_sum_us / connect_samples : 0; }
};

// SERVICE_CONNECTION: what one source instance sent to one destination.
// `dst_ip:dst_port` is what it dialled; `actual_dst_*`, when set, is where
// conntrack says the connection really went (DNAT: a Kubernetes ClusterIP,
// an nftables/iptables rule, docker-proxy).
struct Connection {
  std::string src_instance_id;
  std::string src_service_name;
  std::string src_machine;
  std::string src_ip;  // the source instance's address
  std::string dst_ip;
  uint16_t dst_port = 0;
  std::string actual_dst_ip;
  uint16_t actual_dst_port = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t connections = 0;
  uint64_t active = 0;  // still open (snapshots only)
  int64_t first_seen_ms = 0;
  int64_t last_seen_ms = 0;
  Health health;
};

// NETWORK_TRAFFIC: bytes both ways between a caller's address and a
// destination, as either end's agent saw them.
struct Traffic {
  std::string src_ip;
  std::string dst_ip;
  uint16_t dst_port = 0;
  uint64_t bytes = 0;
};

// What one process moved, both ways, outbound and accepted together (from
// snapshots only: the metrics aggregate processes into services).
struct Process {
  std::string machine;
  uint32_t pid = 0;
  std::string comm;
  std::string service;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t connections = 0;
  uint64_t active = 0;
};

struct Observations {
  std::vector<Instance> instances;
  std::vector<Connection> connections;
  std::vector<Traffic> traffic;
  std::vector<Process> processes;
  // How coarse the first/last-seen times are, in ms: a store samples each
  // series once per subquery step, and a caller's and a callee's agents
  // push at different moments within it. 0: exact (or no times at all).
  int64_t time_resolution_ms = 0;
};

// Several sources into one: instances with the same id on the same machine
// merge (their ports and time ranges), connections are kept side by side
// (each agent reports only its own), and so are traffic rows.
void Merge(Observations& into, Observations from);

}  // namespace svcmap::topology

#endif  // SVCMAP_TOPOLOGY_MODEL_H_
