#ifndef SVCMAP_FLOW_SERVICE_VIEW_H_
#define SVCMAP_FLOW_SERVICE_VIEW_H_

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "svcmap/flow/flow_table.h"
#include "svcmap/flow/listen_table.h"
#include "svcmap/flow/process_table.h"

namespace svcmap::flow {

struct ServiceViewOptions {
  std::optional<uint32_t> netns;  // only sockets in this namespace
  std::string instance_ip;        // this machine's address for the join
  // A namespace's own address (a pod's, a container's), by netns inode: the
  // services in it are reached there, not at the node's address.
  absl::flat_hash_map<uint32_t, std::string> netns_ips;
};

// Connections accepted by a service, per peer address and service port.
struct AcceptedRow {
  uint32_t pid = 0;
  std::string comm;
  IpAddr local_ip;
  uint16_t local_port = 0;
  IpAddr peer_ip;
  FlowStats stats;
  std::string group;  // GroupId() of its flow's group, as ConnectionRow::group
};

struct ServiceRow {
  std::string name;
  std::string instance_id;
  std::string instance_ip;
  std::vector<uint32_t> pids;          // ascending
  std::set<uint16_t> listen_ports;
  std::string exe;                     // of the lowest pid that has one
  std::string name_source;             // how the name was found (identity::ServiceName)
  std::vector<AcceptedRow> accepted;
};

// SERVICE_CONNECTION: an outbound flow of one process (or, src_pid 0, of
// the exited processes of one service).
struct ConnectionRow {
  std::string src_instance_id;
  std::string src_service_name;
  uint32_t src_pid = 0;
  std::string src_comm;
  IpAddr src_ip;
  IpAddr dst_ip;
  uint16_t dst_port = 0;
  // Where a DNAT sent it (port 0: not translated).
  IpAddr actual_dst_ip;
  uint16_t actual_dst_port = 0;
  FlowStats stats;
  uint32_t netns = 0;
  std::string group;  // GroupId() of its flow's group: the exporter's unit of account
};

// NETWORK_TRAFFIC: one connection by 4-tuple, src being the connecting end.
struct TrafficRow {
  IpAddr src_ip;
  uint16_t src_port = 0;
  IpAddr dst_ip;
  uint16_t dst_port = 0;
  uint64_t bytes_to_dst = 0;
  uint64_t bytes_to_src = 0;
  Role observed_as = Role::kClient;
  uint32_t pid = 0;
  uint64_t last_seen_ns = 0;
};

// NETWORK_TRAFFIC between two addresses to one port, every connection
// together, as observed in one namespace from one end.
struct TrafficSeriesRow {
  IpAddr src_ip;
  IpAddr dst_ip;
  uint16_t dst_port = 0;
  uint64_t bytes = 0;  // both ways
  uint32_t live = 0;   // connections open
  uint64_t last_seen_ns = 0;
  std::string id;      // TrafficId()
};

struct ServiceGraph {
  std::vector<ServiceRow> services;       // by name
  std::vector<ConnectionRow> connections; // by service, then destination
  std::vector<TrafficRow> traffic;        // per connection, when asked for
  std::vector<TrafficSeriesRow> traffic_series;
};

// Stable ids of what the exporter accounts by (opaque, compact): a flow
// group (FlowKey::Group), and a NETWORK_TRAFFIC series of one namespace
// and end (TrafficKey with src_port 0).
std::string GroupId(const FlowKey& group);
std::string TrafficId(const TrafficKey& series);

// The stable id of a service on a machine: "<name>@<instance_ip>". The same
// service name on the same machine address always gets the same id, across
// restarts of the service and of svcmap.
std::string InstanceId(std::string_view name, std::string_view instance_ip);

// Groups processes into services by name (ProcessInfo::name) and address
// (the instance_ip of the namespace their sockets are in), and
// lists each service's listening ports, accepted and outbound flows.
// Processes not named yet are left out (they join once named); retired
// flows are their service's, with pid 0.
ServiceGraph BuildServiceView(const FlowView& flows,
                              const std::vector<Listener>& listeners,
                              const ProcessTable& processes,
                              const ServiceViewOptions& options);

}  // namespace svcmap::flow

#endif  // SVCMAP_FLOW_SERVICE_VIEW_H_
