#ifndef SVCMAP_TOPOLOGY_GRAPH_H_
#define SVCMAP_TOPOLOGY_GRAPH_H_

// The cross-machine join: SERVICE_CONNECTION dst_ip:dst_port (or the actual
// destination behind a DNAT) against SERVICE instance_ip:listen_port, into
// a service graph. Pure: no I/O.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "svcmap/topology/model.h"

namespace svcmap::topology {

enum class GroupBy { kInstance, kService, kMachine };
absl::StatusOr<GroupBy> ParseGroupBy(std::string_view text);

struct Node {
  std::string id;           // instance id, service name or machine; "ip:port" if external
  std::string service;      // empty for an external node
  std::string instance_id;  // empty unless grouped by instance
  std::string instance_ip;
  std::string machine;
  std::vector<uint16_t> listen_ports;
  bool external = false;    // a destination no agent owns
};

struct Edge {
  std::string src, dst;  // node ids
  std::string src_service, dst_service;
  std::string dst_ip;    // the destination dialled (empty if several, once grouped)
  uint16_t dst_port = 0;
  uint64_t bytes_sent = 0;      // from src to dst
  uint64_t bytes_received = 0;  // back
  uint64_t connections = 0;
  uint64_t active = 0;          // still open, where known
  Health health;                // of its closed connections
};

// A connection the join would not turn into an edge, and why.
struct Unmatched {
  std::string src_instance_id;  // the caller's address when it was not observed
  std::string src_service_name;
  std::string dst_ip;
  uint16_t dst_port = 0;
  std::string reason;                  // "ambiguous", "caller not observed"
  std::vector<std::string> candidates; // instance ids that claim the destination
  uint64_t bytes_sent = 0;      // both ways, for "caller not observed"
  uint64_t bytes_received = 0;
  uint64_t connections = 0;
};

struct Graph {
  std::vector<Node> nodes;  // by id
  std::vector<Edge> edges;  // by src, dst, port
  std::vector<Unmatched> unmatched;
};

// Joins, then groups. A destination claimed by exactly one instance in the
// connection's time range is an edge to it; by none, an edge to an external
// node "ip:port"; by several, an Unmatched "ambiguous" entry (never a guess).
// A loopback destination is looked for on the caller's own machine.
Graph Join(const Observations& obs, GroupBy group_by = GroupBy::kInstance);

// The application protocol a well-known port suggests ("HTTP", "PostgreSQL",
// ...), or empty.
std::string_view GuessProtocol(uint16_t port);

}  // namespace svcmap::topology

#endif  // SVCMAP_TOPOLOGY_GRAPH_H_
