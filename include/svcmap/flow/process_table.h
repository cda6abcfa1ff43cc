#ifndef SVCMAP_FLOW_PROCESS_TABLE_H_
#define SVCMAP_FLOW_PROCESS_TABLE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "svcmap/flow/sock.h"

namespace svcmap::flow {

struct ProcessInfo {
  std::string comm;
  std::string exe;          // empty when it could not be read (process gone)
  std::string name;         // the service name; the comm if nobody named it
  std::string name_source;  // "rule", "pod", "systemd", "container", "exe", "comm"
  // The rest of what naming looked at, kept so that new rules (SIGHUP) can
  // rename a process that has exited since.
  std::string cmdline;
  std::string cgroup;
};

// Process identity -> what we know of it. Describing a process (reading
// /proc, naming it) is somebody else's job, on another thread: a process
// first seen is *pending* until Describe() answers for it (or NameOverdue
// names it by its comm), and the views leave pending processes out. An
// exec (same PID and start time, new comm) is described again; it keeps
// its name meanwhile.
//
// Bounded by what is live: Erase() drops a process, leaving its name
// behind for a while (a tombstone), since a socket of an exited process
// can still close later, and would otherwise come back nameless.
class ProcessTable {
 public:
  struct Entry {
    ProcessInfo info;
    bool named = false;
    bool exited = false;
    uint64_t first_seen_ns = 0;
    uint64_t checked_ns = 0;  // when it was last checked for an exit
  };

  // Tombstones and fork records are kept for `ttl_ns` (and the newest
  // `max_forks` forks at most): long enough for a late close (an orphaned
  // socket lingers tcp_fin_timeout, 60 s by default) or a child's first
  // socket, short enough that a node forking hundreds of processes a
  // second holds a minute's worth.
  explicit ProcessTable(uint64_t ttl_ns = 60'000'000'000, size_t max_forks = 65536)
      : ttl_ns_(ttl_ns), max_forks_(max_forks) {}

  void Observe(const Owner& owner, uint64_t now_ns);
  // `child` forked from `parent`. Remembered for a while (the newest
  // max_forks): a child first seen on a socket still running its parent's
  // program (the same comm: no exec since) is named as its parent, which a
  // short-lived child needs, its /proc being gone by the time it is read.
  void Fork(const ProcessKey& parent, const Owner& child, uint64_t now_ns);
  struct Request {
    Owner owner;
    // Its nearest ancestor with the same comm, whose /proc names it if its
    // own is gone.
    std::optional<ProcessKey> forked_from;
  };
  // Processes to describe, asked for since the last call. One whose fork
  // record came meanwhile is named as its parent instead.
  std::vector<Request> TakeRequests();
  // Its /proc was gone and nothing says whose child it is: asked for again
  // at the next TakeRequests, until `window_ns` after it was first seen
  // (false after that). A live read can find a child's socket before the
  // ring buffer has delivered the child's fork record.
  bool Retry(const Owner& owner, uint64_t now_ns, uint64_t window_ns);
  // The describer's answer. Returns the old name when a named process gets
  // another (a rename: its flows so far must stay with the old one).
  // Ignored for a process no longer here.
  std::optional<std::string> Describe(const ProcessKey& key, ProcessInfo info);
  // Processes pending since before `deadline_ns` are named by their comm
  // (the describer is behind); returns how many.
  size_t NameOverdue(uint64_t deadline_ns);
  // New rules for every process: `rename` gives the new name and source.
  // Returns the processes whose name changed, with their old names.
  using Renamer = std::function<std::pair<std::string, std::string>(const ProcessInfo&)>;
  std::vector<std::pair<ProcessKey, std::string>> RenameAll(const Renamer& rename);

  const ProcessInfo* Find(const ProcessKey& key) const;  // named ones only
  const Entry* Get(const ProcessKey& key) const;
  Entry* GetMutable(const ProcessKey& key);
  void MarkExited(const ProcessKey& key);
  void Erase(const ProcessKey& key, uint64_t now_ns);
  // Drops tombstones and fork records older than the TTL.
  void Prune(uint64_t now_ns);
  template <typename F>
  void ForEach(F&& f) const {
    for (const auto& [k, e] : processes_) f(k, e);
  }

  size_t size() const { return processes_.size(); }
  size_t pending() const { return pending_; }
  bool has_requests() const { return !requests_.empty(); }
  size_t tombstones() const { return tombstones_.size(); }
  size_t forks() const { return forks_.size(); }

 private:
  // The nearest ancestor of `p` with comm `comm` that forks_ knows of.
  std::optional<ProcessKey> Ancestor(const ProcessKey& p, const std::string& comm) const;

  const uint64_t ttl_ns_;
  const size_t max_forks_;
  struct ForkInfo {
    ProcessKey parent;
    std::string comm;  // the child's, at fork: its parent's
  };
  absl::flat_hash_map<ProcessKey, ForkInfo> forks_;
  std::deque<std::pair<uint64_t, ProcessKey>> fork_order_;  // by time
  // Keyed by {pid, start}: a reused PID is a new entry, not an overwrite.
  absl::flat_hash_map<ProcessKey, Entry> processes_;
  std::vector<Request> requests_;
  size_t pending_ = 0;
  // What a late socket of a process gone needs: its name (and the comm its
  // children are matched by); not the facts naming read.
  struct Tombstone {
    std::string name, name_source;
    bool exited = false;
    uint64_t until_ns = 0;
  };
  absl::flat_hash_map<ProcessKey, Tombstone> tombstones_;
  std::deque<std::pair<uint64_t, ProcessKey>> tombstone_order_;
};

}  // namespace svcmap::flow

#endif  // SVCMAP_FLOW_PROCESS_TABLE_H_
