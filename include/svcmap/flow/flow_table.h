#ifndef SVCMAP_FLOW_FLOW_TABLE_H_
#define SVCMAP_FLOW_FLOW_TABLE_H_

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "svcmap/flow/sock.h"

namespace svcmap::flow {

// What aggregates into one flow. A client flow is keyed by the remote
// service (remote ip + port, local_port 0); a server flow by the local
// service port and the peer address (remote_port 0), so that a client's
// ephemeral ports do not split it.
//
// A flow belongs to a process, or, once that process has exited (or was
// renamed), to its service: `process` is then {0, 0} and `service` names
// it. A retired flow is also the key of its *group*: every flow with the
// same fields whose process carries that service name.
struct FlowKey {
  ProcessKey process;
  std::string service;  // retired flows only
  uint32_t netns = 0;
  Role role = Role::kUnknown;  // kClient or kServer
  IpAddr local_ip;
  uint16_t local_port = 0;
  IpAddr remote_ip;
  uint16_t remote_port = 0;
  // Client flows behind a DNAT: the real destination, one flow per backend.
  IpAddr nat_ip;
  uint16_t nat_port = 0;

  bool retired() const { return process.pid == 0 && !service.empty(); }
  // This flow's group: the same key, owned by the service `name`.
  FlowKey Group(std::string name) const;

  friend bool operator==(const FlowKey&, const FlowKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const FlowKey& k) {
    return H::combine(std::move(h), k.process, k.service, k.netns, k.role, k.local_ip,
                      k.local_port, k.remote_ip, k.remote_port, k.nat_ip, k.nat_port);
  }
};

// Upper bounds of the RTT and connect-latency histograms, in us: loopback
// and one rack (tens of us) to a SYN retried after 1 s and 3 s.
inline constexpr std::array<uint32_t, 13> kLatencyBoundsUs = {
    100, 250, 500, 1'000, 2'500, 5'000, 10'000, 25'000, 50'000, 100'000, 250'000, 1'000'000,
    5'000'000};

struct LatencyHistogram {
  // Per bucket (not cumulative); the last is above every bound.
  std::array<uint64_t, kLatencyBoundsUs.size() + 1> buckets{};
  uint64_t count = 0;
  uint64_t sum_us = 0;

  void Add(uint64_t us);
  void Merge(const LatencyHistogram& o);
  // 0 when empty.
  uint64_t mean_us() const { return count ? sum_us / count : 0; }
};

// What TCP said of a flow's closed connections (ConnHealth, summed).
struct FlowHealth {
  // Connect attempts that never established, by outcome; together they
  // are FlowStats::failed.
  uint64_t refused = 0;
  uint64_t timed_out = 0;
  uint64_t error = 0;
  uint64_t resets_received = 0;
  uint64_t resets_sent = 0;
  uint64_t retransmits = 0;
  LatencyHistogram rtt;      // each connection's smoothed RTT at close
  LatencyHistogram connect;  // SYN sent to ESTABLISHED
  uint32_t rtt_min_us = 0;   // the lowest min RTT of any; 0: none

  // One closed socket; `h` null when its close carried none (lost, or a
  // backend that cannot tell).
  void AddClose(const ConnHealth* h, bool established, bool client);
  void Merge(const FlowHealth& o);
};

struct FlowStats {
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t connections = 0;  // established sockets
  uint64_t failed = 0;       // closed connect attempts that never established
  uint64_t active = 0;       // of the established, those still open
  uint64_t first_seen_ns = 0;
  uint64_t last_seen_ns = 0;
  FlowHealth health;  // of the closed connections

  void Merge(const FlowStats& o);
  void Seen(uint64_t first_ns, uint64_t last_ns);
};

// One connection, by its 4-tuple: src is the side that connected. With
// src_port 0, every connection between two addresses to one port
// (NETWORK_TRAFFIC as the metrics export it).
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
    return H::combine(std::move(h), k.netns, k.src_ip, k.src_port, k.dst_ip, k.dst_port,
                      k.observed_as);
  }
};

struct TrafficStats {
  uint64_t bytes_to_dst = 0;
  uint64_t bytes_to_src = 0;
  uint64_t last_seen_ns = 0;
  ProcessKey process;  // the last one seen on it
  uint32_t live = 0;   // connections still open
};

// A copy of the flow table at one moment: what a frame is built from.
struct FlowView {
  absl::flat_hash_map<FlowKey, FlowStats> flows;
  // One row per connection (NETWORK_TRAFFIC with the source port), when
  // asked for: the closed ones still remembered, then the open ones.
  absl::flat_hash_map<TrafficKey, TrafficStats> traffic;
  // Every connection between two addresses to a port (src_port 0).
  absl::flat_hash_map<TrafficKey, TrafficStats> traffic_series;
  uint64_t traffic_overflow = 0;  // connections not listed: the row table was full
  // Sockets opened while we watched (connect attempts and accepted
  // connections, not those found at start-up), per netns: what the
  // kernel's ActiveOpens + PassiveOpens should match.
  absl::flat_hash_map<uint32_t, uint64_t> opened;
};

struct FlowTableOptions {
  size_t max_traffic_rows = 100000;  // closed connections listed one by one
  bool count_opens = false;          // FlowView::opened (snapshot's completeness)
  // An open socket that no longer shows up in complete live reads, without
  // a close event for this long (the ring buffer dropped it), is closed
  // with the totals last read.
  uint64_t lost_close_grace_ns = 30'000'000'000;
  // How long the id of a socket closed as lost is remembered: its real
  // close may yet come out of a stalled ring buffer, and must not count it
  // again.
  uint64_t lost_id_ttl_ns = 300'000'000'000;
};

struct FlowTableSizes {
  size_t flows = 0;
  size_t live_sockets = 0;
  size_t closed_ids = 0;
  size_t traffic_rows = 0;
  size_t traffic_series = 0;
};

// Flow totals of one node. Every total only grows: a closed socket's bytes
// are added to its flow, an open one's are laid over it, and nothing is
// subtracted but by removing a whole idle group (ExpireIdleGroups).
//
// Invariants:
// - A socket counts once, by its identity (SockKey): as open (the totals of
//   the last live read that had it, never less than an earlier read) until
//   its close is applied, then as closed. An open socket missing from a live
//   read still counts as open until its close arrives (it may be in the ring
//   buffer) or the grace runs out.
// - The ids of sockets closed recently are remembered, so that a live read
//   that raced with a close does not count that socket again.
// - Within a group (FlowKey::Group), totals are conserved by RetireProcess.
//
// Not thread-safe: the caller serialises everything.
class FlowTable {
 public:
  explicit FlowTable(FlowTableOptions options = {});
  // Its entries point into its own maps.
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;
  FlowTable(FlowTable&&) = default;
  FlowTable& operator=(FlowTable&&) = default;

  // -- Closes (the drain thread) --
  // False if this socket's close was already taken (closed as lost, or a
  // duplicate within one live read): the caller then drops the event.
  bool BeginClose(const SockKey& key);
  // Applies a close BeginClose accepted. `role` is used only for a socket
  // never read live (an open one keeps the key it was first filed under).
  void ApplyClose(const SockRecord& s, Role role, uint64_t close_ns);
  bool IsLive(const SockKey& key) const { return live_.contains(key); }

  // -- Live reads (a frame) --
  void BeginLive(uint64_t now_ns);
  // One socket of the read, with its role resolved; listeners are not flows.
  void AddLive(const SockRecord& s, Role role);
  // `complete`: every open socket was listed (lost-close detection runs
  // only then). Returns how many were closed as lost.
  size_t EndLive(bool complete);

  // -- Views --
  // `per_connection`: fill FlowView::traffic too.
  FlowView View(bool per_connection) const;

  // -- Eviction --
  // Moves everything process `p` contributed so far into its group under
  // `name` (process exit; or a rename, when `p` keeps its open sockets,
  // which from now on count only what they move next). Conserves every
  // group's totals.
  void RetireProcess(const ProcessKey& p, const std::string& name, uint64_t now_ns);
  // Whether `p` has open sockets.
  bool HasLive(const ProcessKey& p) const;
  // Removes every group whose flows have no open socket and were last seen
  // before `cutoff_ns`, whole; `name_of` names a process's group (nullopt:
  // not named yet, so its group stays). Returns the groups removed.
  using NameOf = std::function<std::optional<std::string>(const ProcessKey&)>;
  std::vector<FlowKey> ExpireIdleGroups(uint64_t cutoff_ns, const NameOf& name_of);
  // The same for NETWORK_TRAFFIC series idle since `cutoff_ns` (returned),
  // and per-connection rows of connections closed before `rows_cutoff_ns`.
  std::vector<TrafficKey> ExpireIdleTraffic(uint64_t cutoff_ns, uint64_t rows_cutoff_ns);
  // Forgets the ids of sockets closed as lost once their TTL is over.
  void ForgetClosed(uint64_t now_ns);
  // Processes that have flows here.
  std::vector<ProcessKey> Processes() const;

  FlowTableSizes Sizes() const;
  uint64_t lost_closes() const { return lost_closes_; }
  uint64_t rows_overflow() const { return rows_overflow_; }
  const absl::flat_hash_map<uint32_t, uint64_t>& opened() const { return opened_; }

  static FlowKey KeyOf(const SockRecord& s, Role role);
  static TrafficKey TrafficKeyOf(const SockRecord& s, Role role);

 private:
  struct Bucket {
    FlowStats closed;
    uint32_t live_socks = 0;
  };
  struct TrafficBucket {
    TrafficStats closed;
    uint32_t live_socks = 0;
  };
  using BucketMap = absl::node_hash_map<FlowKey, Bucket>;
  using TrafficMap = absl::node_hash_map<TrafficKey, TrafficBucket>;
  // The last few entries BucketFor or SeriesFor returned, found again by
  // comparing keys instead of hashing them: under connect/close load every
  // close goes to one of a few flows (a client's and its server's), and
  // hashing their keys was a sixth of the agent's CPU. Node maps keep an
  // entry where it is until it is erased, so an erase clears this.
  template <typename Map>
  class Recent {
   public:
    typename Map::value_type* Find(const typename Map::key_type& key) const {
      for (typename Map::value_type* e : slots_)
        if (e != nullptr && e->first == key) return e;
      return nullptr;
    }
    void Put(typename Map::value_type* e) { slots_[next_++ % slots_.size()] = e; }
    void Clear() { slots_ = {}; }

   private:
    std::array<typename Map::value_type*, 4> slots_{};
    uint8_t next_ = 0;
  };
  // One per open socket, so 40 bytes: a node holds hundreds of thousands.
  // Its open time is its key's; when it was read, its generation's.
  struct LiveSock {
    BucketMap::value_type* flow = nullptr;
    TrafficMap::value_type* series = nullptr;  // null until established
    uint64_t sent = 0, received = 0;           // never less than an earlier read
    uint32_t seen_gen = 0;
    uint16_t src_port = 0;
    uint8_t missed = 0;  // complete reads in a row without it
    bool established : 1 = false;
    bool connection_counted : 1 = false;  // in a retired flow already
    bool seeded : 1 = false;
    // Filed under its process for good: a server socket whose accepting
    // process has not touched it yet carries its listener's owner.
    bool owned : 1 = false;
    // Part of its bytes was already counted in another flow (a rename, a
    // process taking it over): how much is in bases_.
    bool rebased : 1 = false;
  };
  static_assert(sizeof(LiveSock) == 40);
  using LiveMap = absl::node_hash_map<SockKey, LiveSock>;
  struct Base {
    uint64_t sent = 0, received = 0;
  };

  BucketMap::value_type* BucketFor(const FlowKey& key);
  TrafficMap::value_type* SeriesFor(const TrafficKey& key);
  // `health`: what the close said of it (null: closed as lost).
  void Close(const SockKey& key, LiveSock& ls, uint64_t close_ns, const ConnHealth* health);
  // What a read or a close says of an open socket: totals never less than
  // before, established once it is.
  void Update(LiveSock& ls, const SockRecord& s);
  Base BaseOf(const SockKey& key, const LiveSock& ls) const;
  // Counts what `ls` moved so far as done (in another flow): it goes on
  // from there.
  void Rebase(const SockKey& key, LiveSock& ls);
  // What `ls` moved since its base: not yet counted in any flow.
  Base Unfolded(const SockKey& key, const LiveSock& ls) const;
  // Counts what `ls` moved so far, and its connection, into `to` (the flow
  // it leaves) and rebases it.
  void HandOver(const SockKey& key, LiveSock& ls, FlowStats& to, uint64_t until_ns);
  // When the live read of generation `gen` ran (0 if too long ago).
  uint64_t GenNs(uint32_t gen) const;
  void CountOpen(const SockRecord& s, Role role);
  void AddRow(const TrafficKey& key, uint64_t to_dst, uint64_t to_src, uint64_t seen_ns,
              const ProcessKey& p);
  void DropLive(LiveMap::iterator it);
  // Moves an open socket to the process that took it over (see
  // LiveSock::owned); what it counted so far stays where it was.
  void Refile(const SockKey& key, LiveSock& ls, const SockRecord& s);

  FlowTableOptions options_;
  BucketMap buckets_;
  TrafficMap series_;
  Recent<BucketMap> recent_buckets_;
  Recent<TrafficMap> recent_series_;
  // Closed connections, one entry per close in close order: appended on
  // the event path (a crr load makes a new 4-tuple per connection, and a
  // hash insert for each was a quarter of the agent's CPU), merged by
  // 4-tuple only when a per-connection view asks (View(true)). At its cap
  // the oldest close makes room for the newest (counted in rows_overflow_):
  // a view lists the most recent closes. Merging at the cap instead hashed
  // every distinct 4-tuple again each time the log filled (2-3 inserts per
  // close under a crr load, a sixth of the agent's CPU), more than the one
  // insert this log replaced. Flows and series lose nothing either way.
  std::deque<std::pair<TrafficKey, TrafficStats>> rows_;
  uint64_t rows_overflow_ = 0;
  LiveMap live_;
  absl::flat_hash_map<SockKey, Base> bases_;  // of the rebased ones
  std::deque<std::pair<uint32_t, uint64_t>> gen_ns_;  // recent reads: generation -> time
  absl::flat_hash_map<ProcessKey, uint32_t> live_by_process_;
  // The closes taken while a live read runs (BeginLive to EndLive), which
  // its chunks may still list: a chunk is applied after it was read. A
  // close taken before the read began is no race: the kernel marks an
  // entry `destroyed` before it queues the close, and the backend skips
  // such entries. So nothing is kept per close between reads (a hash
  // insert and a timed erase for each was a third of the agent's CPU under
  // a connect/close load).
  absl::flat_hash_set<SockKey> read_closes_;
  bool reading_ = false;
  // Sockets closed as lost -> when their id is forgotten, and those times
  // in order.
  absl::flat_hash_map<SockKey, uint64_t> lost_ids_;
  std::deque<std::pair<uint64_t, SockKey>> lost_order_;
  absl::flat_hash_map<uint32_t, uint64_t> opened_;
  uint32_t gen_ = 0;
  uint64_t read_ns_ = 0;
  uint64_t lost_closes_ = 0;
};

}  // namespace svcmap::flow

#endif  // SVCMAP_FLOW_FLOW_TABLE_H_
