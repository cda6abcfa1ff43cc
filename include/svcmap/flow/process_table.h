#ifndef SVCMAP_FLOW_PROCESS_TABLE_H_
#define SVCMAP_FLOW_PROCESS_TABLE_H_

#include <functional>
#include <string>

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

// Process identity -> what we know of it. The details (exe, service name)
// come from the describer given at construction (so this stays free of
// I/O), once per process, when it is first seen and most likely alive, and
// again if it exec()s (same PID and start time, new comm).
class ProcessTable {
 public:
  using Describer = std::function<ProcessInfo(const Owner&)>;

  explicit ProcessTable(Describer describer = nullptr) : describer_(std::move(describer)) {}

  const ProcessInfo& Observe(const Owner& owner);
  const ProcessInfo* Find(const ProcessKey& key) const;
  // Applies `rename` to every process known (new naming rules).
  void RenameAll(const std::function<void(ProcessInfo&)>& rename);
  size_t size() const { return processes_.size(); }

 private:
  Describer describer_;
  // Keyed by {pid, start}: a reused PID is a new entry, not an overwrite.
  absl::flat_hash_map<ProcessKey, ProcessInfo> processes_;
};

}  // namespace svcmap::flow

#endif  // SVCMAP_FLOW_PROCESS_TABLE_H_
