#ifndef SVCMAP_NODE_SESSION_H_
#define SVCMAP_NODE_SESSION_H_

// One node's tracing session: a backend draining into the flow model, a
// worker that describes processes, looks up NATs and notices exits, and
// frames (immutable pictures of the node) that snapshot, agent and top all
// read. Nothing slow runs on the drain thread or under the collector's lock.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "svcmap/export/metrics.h"
#include "svcmap/export/snapshot_json.h"
#include "svcmap/flow/collector.h"
#include "svcmap/identity/naming.h"
#include "svcmap/kernel/backend.h"
#include "svcmap/scan/proc_parse.h"
#include "svcmap/topology/model.h"

namespace svcmap::node {

// What the session asks of the node besides the backend, behind an
// interface so that tests stand in for /proc, rtnetlink and conntrack.
// Called from the worker and frame threads, never the drain thread.
class NodeIo {
 public:
  virtual ~NodeIo() = default;
  // What naming looks at (/proc/<pid>/cmdline, exe, cgroup); empty fields
  // when the process is gone.
  virtual identity::ProcessFacts ReadFacts(const flow::ProcessKey& p) = 0;
  // Whether this process (PID and start time) still runs.
  virtual bool Alive(const flow::ProcessKey& p) = 0;
  // The address of every network namespace that has one of its own.
  virtual absl::flat_hash_map<uint32_t, std::string> NetnsAddresses() = 0;
  // A client socket's real destination, from caches only (never blocks).
  virtual flow::NatAnswer PeekNat(const flow::SockRecord& s) = 0;
  // The same, asking the kernel when the caches do not know.
  virtual flow::NatAnswer ResolveNat(const flow::SockRecord& s) = 0;
  // Releases what is held for network namespaces that are gone.
  virtual void Prune() = 0;
  // Entries of its own tables, for the metrics.
  virtual std::vector<std::pair<std::string, uint64_t>> TableSizes() = 0;
};

struct SessionOptions {
  exporter::InstanceInfo instance;  // hostname, instance_ip, netns, backend, machine
  std::optional<uint32_t> netns;    // only this namespace
  // Flow groups with no traffic and no open connection for this long are
  // removed, their series ending (0: never).
  absl::Duration idle_timeout = absl::Minutes(5);
  // Exited processes are folded into their services and forgotten (false
  // keeps them all: a one-shot snapshot).
  bool retire = true;
  // A frame at least this often, asked for or not: housekeeping
  // (InfiniteDuration: only when asked for).
  absl::Duration housekeeping = absl::Seconds(10);
  absl::Duration netns_refresh = absl::Seconds(30);
  // How long a frame waits for the describer to name what is queued.
  absl::Duration naming_wait = absl::Milliseconds(250);
  // How often the worker looks for NAT lookups and exits to check (new
  // processes wake it at once).
  absl::Duration work_poll = absl::Milliseconds(20);
  // Live sockets handed to the collector per lock.
  size_t live_chunk = 1024;
  exporter::MetricsOptions metrics;
  flow::CollectorOptions collector;
};

// How complete a one-shot run was: the connections the kernel opened while
// it watched (each namespace's ActiveOpens and PassiveOpens, after minus
// before; a namespace created meanwhile started from zero) against those
// the run saw opened. `netns`: only that namespace.
exporter::Completeness CompletenessOf(const absl::flat_hash_map<uint32_t, scan::TcpOpens>& before,
                                      const absl::flat_hash_map<uint32_t, scan::TcpOpens>& after,
                                      const absl::flat_hash_map<uint32_t, uint64_t>& seen,
                                      std::optional<uint32_t> netns);

// An immutable picture of the node at one moment. What readers render
// from it (metrics text, snapshot document, the topology's observations)
// is rendered once, by the first reader that asks, and shared.
class Frame {
 public:
  Frame(absl::Time taken_at, uint64_t boot_ns, int64_t realtime_minus_boottime_ns,
        bool per_connection, exporter::InstanceInfo instance, flow::ServiceGraph graph,
        exporter::SnapshotStats stats, exporter::Completeness completeness,
        exporter::Metrics metrics, uint64_t events, uint64_t drops,
        absl::flat_hash_map<uint32_t, uint64_t> opened);

  absl::Time taken_at() const { return taken_at_; }  // when its live read began
  uint64_t boot_ns() const { return boot_ns_; }
  int64_t wall_ms() const { return (static_cast<int64_t>(boot_ns_) + rt_minus_bt_) / 1'000'000; }
  bool per_connection() const { return per_connection_; }
  const flow::ServiceGraph& graph() const { return graph_; }
  const exporter::Metrics& metrics() const { return metrics_; }
  const exporter::SnapshotStats& stats() const { return stats_; }
  const exporter::InstanceInfo& instance() const { return instance_; }
  uint64_t events() const { return events_; }
  uint64_t drops() const { return drops_; }
  int64_t realtime_minus_boottime_ns() const { return rt_minus_bt_; }
  // Sockets opened while watched, per netns (one-shot runs only).
  const absl::flat_hash_map<uint32_t, uint64_t>& opened() const { return opened_; }

  const std::string& MetricsText() const;
  // The snapshot document, compact (indent -1) or pretty.
  const std::string& SnapshotText() const;
  std::string SnapshotText(int indent) const;
  // This node's own observations, straight from the graph (no JSON).
  const topology::Observations& Observations() const;

 private:
  absl::Time taken_at_;
  uint64_t boot_ns_;
  int64_t rt_minus_bt_;
  bool per_connection_;
  exporter::InstanceInfo instance_;
  flow::ServiceGraph graph_;
  exporter::SnapshotStats stats_;
  exporter::Completeness completeness_;
  exporter::Metrics metrics_;
  uint64_t events_, drops_;
  absl::flat_hash_map<uint32_t, uint64_t> opened_;
  mutable std::once_flag metrics_once_, snapshot_once_, observations_once_;
  mutable std::string metrics_text_, snapshot_text_;
  mutable topology::Observations observations_;
};

struct SessionHealth {
  bool drain_running = false;
  absl::Duration since_drain = absl::ZeroDuration();  // since the drain last made progress
  absl::Duration since_frame = absl::InfiniteDuration();
  bool ready = false;  // the first frame is out
};

class Session {
 public:
  // Starts draining `backend` (already loaded, seeded and attached) into a
  // new collector, and the session's worker and frame threads.
  static absl::StatusOr<std::unique_ptr<Session>> Start(std::unique_ptr<kernel::Backend> backend,
                                                        identity::ServiceNamer namer,
                                                        std::unique_ptr<NodeIo> io,
                                                        SessionOptions options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // A frame whose live read began no earlier than `not_before`: the latest
  // if it is that recent, else the next one (every request that arrives
  // while a frame is being taken shares the one after it). nullptr once
  // stopped. `per_connection`: with NETWORK_TRAFFIC row by row.
  std::shared_ptr<const Frame> FrameAfter(absl::Time not_before, bool per_connection = false);
  // The newest frame there is, without waiting (nullptr before the first).
  std::shared_ptr<const Frame> Latest() const;

  // New naming rules (SIGHUP): every process is named again; a process
  // whose name changes keeps what it moved so far under the old name.
  void SetNamer(identity::ServiceNamer namer);
  // Extra health for the metrics (the agent's remote write), asked for by
  // every frame.
  void set_health_hook(std::function<void(exporter::AgentHealth&)> hook);

  // The last frame of a one-shot run: a final live read, then the backend
  // stops (what is left in its ring buffer is applied), every queued name
  // and NAT lookup is answered, and the frame is taken from that state.
  std::shared_ptr<const Frame> Finish();
  // Stops the threads and the backend. Idempotent.
  void Stop();

  SessionHealth Health() const;
  kernel::Backend& backend() { return *backend_; }
  const std::vector<std::string>& attached() const { return backend_->attached(); }

 private:
  struct Passkey {};

 public:
  Session(Passkey, std::unique_ptr<kernel::Backend> backend, identity::ServiceNamer namer,
          std::unique_ptr<NodeIo> io, SessionOptions options);

 private:
  void OnEvents(absl::Span<const flow::SockEvent> events);
  void FrameLoop();
  void WorkLoop();
  // One pass of the worker: names, NATs, exits, namespaces. True if it did
  // anything.
  bool WorkOnce(bool force_netns);
  std::shared_ptr<const Frame> BuildFrame(bool per_connection, bool live_read);
  // Lets the worker name what is queued, for at most `wait`.
  void WaitForNames(absl::Duration wait);
  void WakeWorker();
  // The frame and worker threads, joined; the backend keeps running.
  void StopThreads();
  bool LiveRead(uint64_t now_ns);

  SessionOptions options_;
  std::unique_ptr<kernel::Backend> backend_;
  std::unique_ptr<NodeIo> io_;

  // The collector and everything it holds; never held across I/O.
  mutable std::mutex mu_;
  flow::Collector collector_;

  std::mutex namer_mu_;  // the namer (SIGHUP replaces it); the worker uses it without mu_
  identity::ServiceNamer namer_;
  bool renamed_ = false;  // guarded by namer_mu_: the worker applies it

  // Frames: requests, the latest, who waits.
  mutable std::mutex frame_mu_;
  std::condition_variable frame_cv_;
  std::shared_ptr<const Frame> latest_;
  bool want_frame_ = false;
  bool want_per_connection_ = false;
  bool stopping_ = false;
  std::function<void(exporter::AgentHealth&)> health_hook_;  // guarded by frame_mu_

  // Only the frame thread (or Finish, after it stopped) touches these.
  exporter::Ledgers ledgers_;
  uint64_t expired_flows_ = 0;
  absl::flat_hash_map<uint32_t, std::string> netns_ips_;  // guarded by mu_
  std::vector<flow::ProcessKey> exit_checks_;              // guarded by mu_

  std::mutex step_mu_;  // one WorkOnce at a time
  std::mutex work_mu_;  // the worker's wake-up
  std::condition_variable work_cv_;
  bool work_wake_ = false;  // guarded by work_mu_
  // The drain thread woke the worker for new processes; guarded by mu_.
  bool naming_woken_ = false;
  bool work_stop_ = false;  // guarded by work_mu_
  absl::Time netns_at_ = absl::InfinitePast();  // guarded by step_mu_
  const absl::Time started_ = absl::Now();

  std::atomic<int64_t> last_frame_unix_ns_{0};
  std::thread framer_, worker_;
};

}  // namespace svcmap::node

#endif  // SVCMAP_NODE_SESSION_H_
