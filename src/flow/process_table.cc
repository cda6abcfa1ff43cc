#include "svcmap/flow/process_table.h"

namespace svcmap::flow {

const ProcessInfo& ProcessTable::Observe(const Owner& owner) {
  auto [it, inserted] = processes_.try_emplace(owner.process);
  // exec() keeps the PID and start time but changes the comm (and maybe
  // the name): describe it again.
  if (inserted || (it->second.comm != owner.comm && !owner.comm.empty())) {
    it->second = describer_ ? describer_(owner) : ProcessInfo{};
    it->second.comm = owner.comm;
    if (it->second.name.empty()) {
      it->second.name = owner.comm;
      it->second.name_source = "comm";
    }
  }
  return it->second;
}

const ProcessInfo* ProcessTable::Find(const ProcessKey& key) const {
  auto it = processes_.find(key);
  return it == processes_.end() ? nullptr : &it->second;
}

void ProcessTable::RenameAll(const std::function<void(ProcessInfo&)>& rename) {
  for (auto& [key, info] : processes_) rename(info);
}

}  // namespace svcmap::flow
