#ifndef SVCMAP_FLOW_COLLECTOR_H_
#define SVCMAP_FLOW_COLLECTOR_H_

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "svcmap/flow/flow_table.h"
#include "svcmap/flow/listen_table.h"
#include "svcmap/flow/process_table.h"
#include "svcmap/flow/service_view.h"
#include "svcmap/flow/sock.h"

namespace svcmap::flow {

// Where a client socket really went, as far as the NAT resolver knows
// without asking the kernel (kUnknown: it must be asked).
enum class NatState { kUnknown, kPlain, kTranslated };
struct NatAnswer {
  NatState state = NatState::kUnknown;
  IpAddr ip;
  uint16_t port = 0;

  static NatAnswer Unknown() { return {NatState::kUnknown, IpAddr(), 0}; }
  static NatAnswer Plain() { return {NatState::kPlain, IpAddr(), 0}; }
  static NatAnswer Translated(IpAddr ip, uint16_t port) { return {NatState::kTranslated, ip, port}; }
};

struct CollectorOptions {
  FlowTableOptions flows;
  std::optional<uint32_t> netns;  // only this namespace; the rest is dropped
  // A process not described by then is named by its comm.
  uint64_t naming_deadline_ns = 2'000'000'000;
  // How long a process whose /proc is gone, and whose parent is unknown, is
  // asked for again before it is named by its comm: past the ring buffer's
  // 100 ms drain, which may still hold its fork record.
  uint64_t naming_retry_ns = 300'000'000;
  // How often a process without sockets is checked for having exited.
  uint64_t exit_check_interval_ns = 1'000'000'000;
  // A process referenced by nothing (no flow, socket or listener) goes
  // after this long, exited or not.
  uint64_t unreferenced_ttl_ns = 60'000'000'000;
  size_t max_parked_closes = 65536;
  // A closed connection's own NETWORK_TRAFFIC row (the snapshot's, with its
  // source port) is listed this long at most, when flows expire at all.
  uint64_t traffic_row_ttl_ns = 60'000'000'000;
  // A closed listener still claims its port (a one-shot snapshot reports
  // everything that listened in its window; a daemon only what listens).
  bool keep_closed_listeners = false;
};

struct CollectorSizes {
  FlowTableSizes flows;
  size_t processes = 0;
  size_t pending_processes = 0;
  size_t process_tombstones = 0;
  size_t forks = 0;
  size_t listeners = 0;
  size_t parked_closes = 0;
};

struct CollectorCounts {
  uint64_t duplicate_closes = 0;  // a close already taken (or closed as lost)
  uint64_t lost_closes = 0;       // closed as last read: the close never came
  uint64_t lost_listeners = 0;    // listeners gone without a close
  uint64_t named_overdue = 0;     // named by comm: the describer was late
  uint64_t renamed = 0;           // processes whose name changed
  uint64_t retired = 0;           // exited processes folded into their services
  uint64_t evicted = 0;           // process entries dropped
  uint64_t nat_skipped = 0;       // closes filed without a NAT lookup (too many waiting)
  uint64_t traffic_overflow = 0;  // closed connections not listed one by one (row cap)
};

// What a housekeeping pass removed, for the exporter's counters.
struct Housekeeping {
  std::vector<std::string> expired_groups;   // GroupId()s
  std::vector<std::string> expired_traffic;  // TrafficId()s
  size_t expired_flows = 0;                  // groups removed
};

// Feeds lifecycle events and live reads into the process, listen and flow
// tables, and answers "what does it all look like now". Pure: describing
// processes and looking up NATs are asked for (TakeNamingRequests,
// TakeNatRequests) and answered later by the caller, from another thread;
// nothing here blocks. Not thread-safe: the caller serialises every call.
class Collector {
 public:
  explicit Collector(CollectorOptions options = {});

  // Non-blocking NAT answers for client sockets (none: no NAT lookups).
  using NatPeek = std::function<NatAnswer(const SockRecord&)>;
  void set_nat(NatPeek peek) { nat_peek_ = std::move(peek); }

  // -- The drain thread --
  void OnEvent(const SockEvent& ev);
  // Events taken so far, by EventType.
  const std::array<uint64_t, kEventTypes>& event_counts() const { return event_counts_; }

  // -- A live read, in pieces --
  void BeginLive(uint64_t now_ns);
  // Client sockets whose destination needs a blocking NAT lookup first go
  // to `need_nat`: give them back, answered, to AddLiveResolved.
  void AddLive(const SockRecord& s, std::vector<SockRecord>& need_nat);
  // The sockets of unknown role, now that every listener of the read is known.
  void FinishLive(std::vector<SockRecord>& need_nat);
  void AddLiveResolved(SockRecord s, const NatAnswer& nat);
  void EndLive(bool complete);

  // -- Closes that waited for a NAT lookup --
  std::vector<SockRecord> TakeNatRequests();
  void ResolveClose(const SockKey& key, const NatAnswer& nat);

  // -- Naming --
  std::vector<ProcessTable::Request> TakeNamingRequests() { return processes_.TakeRequests(); }
  // See ProcessTable::Retry: false once its window has passed.
  bool RetryNaming(const Owner& owner, uint64_t now_ns) {
    return processes_.Retry(owner, now_ns, options_.naming_retry_ns);
  }
  void Describe(const ProcessKey& key, ProcessInfo info, uint64_t now_ns);
  void RenameAll(const ProcessTable::Renamer& rename, uint64_t now_ns);
  size_t pending_names() const { return processes_.pending(); }
  bool naming_requested() const { return processes_.has_requests(); }

  // -- Exits --
  // Processes to check for having exited (no socket, no listener, not
  // checked lately); marks them checked.
  std::vector<ProcessKey> ExitCandidates(uint64_t now_ns);
  void MarkExited(const ProcessKey& key) { processes_.MarkExited(key); }

  // -- Views --
  ServiceGraph Graph(const ServiceViewOptions& options, bool per_connection);
  FlowView Flows(bool per_connection) const { return flows_.View(per_connection); }
  std::vector<Listener> Listeners() const { return listeners_.All(); }
  // Sockets opened while watched, per netns (FlowTableOptions::count_opens).
  const absl::flat_hash_map<uint32_t, uint64_t>& Opened() const { return flows_.opened(); }

  // Exited processes folded into their services, idle groups (with
  // `idle_ns` > 0) and traffic removed, processes nothing refers to
  // dropped, old closed ids forgotten. `retire`: false keeps every process
  // for the whole run (a one-shot snapshot).
  Housekeeping Housekeep(uint64_t now_ns, uint64_t idle_ns, bool retire);

  const ProcessTable& processes() const { return processes_; }
  const ListenTable& listeners() const { return listeners_; }
  CollectorSizes Sizes() const;
  CollectorCounts Counts() const;

 private:
  bool Wanted(uint32_t netns) const { return !options_.netns || *options_.netns == netns; }
  Role RoleOf(const SockRecord& s) const;
  bool NeedsNat(const SockRecord& s, Role role) const;
  void AddLiveRole(const SockRecord& s, Role role, std::vector<SockRecord>& need_nat);
  void Rename(const ProcessKey& key, const std::string& old_name, uint64_t now_ns);

  CollectorOptions options_;
  ProcessTable processes_;
  ListenTable listeners_;
  FlowTable flows_;
  NatPeek nat_peek_;
  std::array<uint64_t, kEventTypes> event_counts_{};
  uint64_t live_ns_ = 0;
  std::vector<SockRecord> unknown_role_;  // of the live read in progress
  struct Parked {
    SockRecord sock;
    Role role;
    uint64_t close_ns;
    bool asked = false;
  };
  absl::flat_hash_map<SockKey, Parked> parked_;
  CollectorCounts counts_;
};

}  // namespace svcmap::flow

#endif  // SVCMAP_FLOW_COLLECTOR_H_
