#ifndef SVCMAP_FLOW_PROCESS_TABLE_H_
#define SVCMAP_FLOW_PROCESS_TABLE_H_

#include <functional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "svcmap/flow/sock.h"

namespace svcmap::flow {

struct ProcessInfo {
  std::string comm;
  std::string exe;  // empty when it could not be read (process gone)
};

// Process identity -> comm and exe. The exe is looked up once per process,
// through the resolver given at construction (so this stays free of I/O),
// and only when the process is first seen, while it is most likely alive.
class ProcessTable {
 public:
  using ExeResolver = std::function<std::string(const ProcessKey&)>;

  explicit ProcessTable(ExeResolver resolver = nullptr)
      : resolver_(std::move(resolver)) {}

  const ProcessInfo& Observe(const Owner& owner);
  const ProcessInfo* Find(const ProcessKey& key) const;
  size_t size() const { return processes_.size(); }

 private:
  ExeResolver resolver_;
  // Keyed by {pid, start}: a reused PID is a new entry, not an overwrite.
  absl::flat_hash_map<ProcessKey, ProcessInfo> processes_;
};

}  // namespace svcmap::flow

#endif  // SVCMAP_FLOW_PROCESS_TABLE_H_
