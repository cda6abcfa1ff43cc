#include "svcmap/flow/process_table.h"

namespace svcmap::flow {

const ProcessInfo& ProcessTable::Observe(const Owner& owner) {
  auto [it, inserted] = processes_.try_emplace(owner.process);
  if (inserted) {
    it->second.comm = owner.comm;
    if (resolver_) it->second.exe = resolver_(owner.process);
  } else if (it->second.comm != owner.comm && !owner.comm.empty()) {
    // exec() keeps the PID and start time but changes the name.
    it->second.comm = owner.comm;
  }
  return it->second;
}

const ProcessInfo* ProcessTable::Find(const ProcessKey& key) const {
  auto it = processes_.find(key);
  return it == processes_.end() ? nullptr : &it->second;
}

}  // namespace svcmap::flow
