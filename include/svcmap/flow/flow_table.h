#ifndef SVCMAP_FLOW_FLOW_TABLE_H_
#define SVCMAP_FLOW_FLOW_TABLE_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"
#include "svcmap/flow/sock.h"

namespace svcmap::flow {

// What aggregates into one flow. A client flow is keyed by the remote
// service (remote ip + port, local_port 0); a server flow by the local
// service port and the peer address (remote_port 0), so that a client's
// ephemeral ports do not split it.
struct FlowKey {
  ProcessKey process;
  uint32_t netns = 0;
  Role role = Role::kUnknown;  // kClient or kServer
  IpAddr local_ip;
  uint16_t local_port = 0;
  IpAddr remote_ip;
  uint16_t remote_port = 0;
  // Client flows behind a DNAT: the real destination, one flow per backend.
  IpAddr nat_ip;
  uint16_t nat_port = 0;

  friend bool operator==(const FlowKey&, const FlowKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const FlowKey& k) {
    return H::combine(std::move(h), k.process, k.netns, k.role, k.local_ip,
                      k.local_port, k.remote_ip, k.remote_port, k.nat_ip, k.nat_port);
  }
};

struct FlowStats {
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t connections = 0;  // established sockets
  uint64_t failed = 0;       // closed connect attempts that never established
  uint64_t active = 0;       // of the established, those still open
  uint64_t first_seen_ns = 0;
  uint64_t last_seen_ns = 0;

  // A live socket still connecting counts as neither.
  void Add(const SockRecord& s, uint64_t seen_ns, bool closed);
};

// One connection, by its 4-tuple: src is the side that connected.
struct TrafficKey {
  uint32_t netns = 0;  // where it was observed
  IpAddr src_ip;
  uint16_t src_port = 0;
  IpAddr dst_ip;
  uint16_t dst_port = 0;
  Role observed_as = Role::kClient;  // which end this host is

  friend bool operator==(const TrafficKey&, const TrafficKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const TrafficKey& k) {
    return H::combine(std::move(h), k.netns, k.src_ip, k.src_port, k.dst_ip,
                      k.dst_port, k.observed_as);
  }
};

struct TrafficStats {
  uint64_t bytes_to_dst = 0;
  uint64_t bytes_to_src = 0;
  uint64_t last_seen_ns = 0;
  ProcessKey process;
};

struct FlowView {
  absl::flat_hash_map<FlowKey, FlowStats> flows;
  absl::flat_hash_map<TrafficKey, TrafficStats> traffic;
  uint64_t traffic_overflow = 0;  // connections not listed: table was full
  // Sockets opened while we watched (connect attempts and accepted
  // connections, not those found at start-up), per netns: what the
  // kernel's ActiveOpens + PassiveOpens should match.
  absl::flat_hash_map<uint32_t, uint64_t> opened;
};

struct FlowViewOptions {
  // NETWORK_TRAFFIC without the client's port: one row per (src_ip,
  // dst_ip, dst_port), which is all the metrics export, at a fraction of
  // the memory of a row per connection.
  bool collapse_src_ports = false;
  // Fills a client socket's real destination behind a DNAT (nat_ip/port);
  // asked for each live established client socket.
  std::function<void(SockRecord&)> nat;
};

// Flows built from sockets. Closed sockets accumulate here; live sockets are
// laid over them in each View() and never stored, so a socket is counted
// exactly once: by its close if it closed, else by its live state.
//
// Invariant: a socket's identity is (sock_id, open_ns); the ids of sockets
// closed since the oldest live read still in use are remembered, so a live
// read that raced with a close does not count that socket twice.
class FlowTable {
 public:
  // Resolves a socket of unknown role (one older than the tracer): true if
  // its local port is a listening port, i.e. it is the server end.
  using IsServerFn = std::function<bool(const SockRecord&)>;
  using ViewOptions = FlowViewOptions;

  explicit FlowTable(size_t max_traffic = 100000) : max_traffic_(max_traffic) {}

  void AddClosed(const SockRecord& s, uint64_t close_ns, const IsServerFn& is_server);
  // `live` was read from the kernel at `live_read_ns`, before the events
  // already given to AddClosed were drained.
  FlowView View(absl::Span<const SockRecord> live, uint64_t now_ns,
                const IsServerFn& is_server, const ViewOptions& options = {}) const;
  // View() one live socket at a time: StartView, then AddLive for each.
  FlowView StartView(const ViewOptions& options) const;
  void AddLive(FlowView& view, const SockRecord& s, uint64_t now_ns, const IsServerFn& is_server,
               const ViewOptions& options) const;
  // Forgets closed-socket ids older than `ns`: no live read older than that
  // will be passed to View() again.
  void ForgetClosedBefore(uint64_t ns);
  // Drops the closed flows and connections last seen before `ns` (an
  // agent's idle expiry); live sockets are never stored, so never expire.
  // Returns how many flows went.
  size_t ExpireIdle(uint64_t ns);
  size_t closed_ids() const { return closed_ids_.size(); }

  static Role EffectiveRole(const SockRecord& s, const IsServerFn& is_server);
  static FlowKey KeyOf(const SockRecord& s, Role role);
  static TrafficKey TrafficKeyOf(const SockRecord& s, Role role);

 private:
  struct SockId {
    uint64_t sock_id;
    uint64_t open_ns;
    friend bool operator==(const SockId&, const SockId&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const SockId& k) {
      return H::combine(std::move(h), k.sock_id, k.open_ns);
    }
  };
  void AddTo(FlowView& view, const SockRecord& s, uint64_t seen_ns, Role role, bool closed,
             bool collapse_src_ports = false) const;

  size_t max_traffic_;
  FlowView closed_;
  absl::flat_hash_map<SockId, uint64_t> closed_ids_;  // -> close time
};

}  // namespace svcmap::flow

#endif  // SVCMAP_FLOW_FLOW_TABLE_H_
