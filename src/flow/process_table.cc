#include "svcmap/flow/process_table.h"

namespace svcmap::flow {

void ProcessTable::Observe(const Owner& owner, uint64_t now_ns) {
  auto [it, inserted] = processes_.try_emplace(owner.process);
  Entry& e = it->second;
  if (inserted) {
    e.first_seen_ns = now_ns;
    e.info.comm = owner.comm;
    if (auto t = tombstones_.find(owner.process); t != tombstones_.end()) {
      // Named before it went: most likely a late close of one of its
      // sockets, after it exited.
      e.info.name = std::move(t->second.name);
      e.info.name_source = std::move(t->second.name_source);
      e.named = true;
      e.exited = t->second.exited;
      tombstones_.erase(t);
      return;
    }
    std::optional<ProcessKey> ancestor = Ancestor(owner.process, owner.comm);
    if (ancestor) {
      if (const Entry* p = Get(*ancestor); p != nullptr && p->named) {
        e.info = p->info;
        e.info.comm = owner.comm;
        e.named = true;
        return;
      }
      if (auto t = tombstones_.find(*ancestor); t != tombstones_.end()) {
        e.info.name = t->second.name;
        e.info.name_source = t->second.name_source;
        e.named = true;
        return;
      }
    }
    ++pending_;
    requests_.push_back({owner, ancestor});
    return;
  }
  // exec() keeps the PID and start time but changes the comm (and maybe
  // the name): describe it again, keeping the old name meanwhile.
  if (!owner.comm.empty() && e.info.comm != owner.comm) {
    e.info.comm = owner.comm;
    requests_.push_back({owner, std::nullopt});
  }
}

void ProcessTable::Fork(const ProcessKey& parent, const Owner& child, uint64_t now_ns) {
  if (!forks_.insert_or_assign(child.process, ForkInfo{parent, child.comm}).second) return;
  fork_order_.emplace_back(now_ns, child.process);
  while (fork_order_.size() > max_forks_) {
    forks_.erase(fork_order_.front().second);
    fork_order_.pop_front();
  }
}

std::optional<ProcessKey> ProcessTable::Ancestor(const ProcessKey& p, const std::string& comm) const {
  ProcessKey at = p;
  // A few generations at most (a shell's subshell's child).
  for (int hop = 0; hop < 8; ++hop) {
    auto it = forks_.find(at);
    if (it == forks_.end() || it->second.comm != comm) return std::nullopt;
    at = it->second.parent;
    if (processes_.contains(at) || tombstones_.contains(at)) return at;
  }
  return std::nullopt;
}

std::vector<ProcessTable::Request> ProcessTable::TakeRequests() {
  std::vector<Request> out;
  out.reserve(requests_.size());
  for (Request& r : std::exchange(requests_, {})) {
    auto it = processes_.find(r.owner.process);
    if (it == processes_.end()) continue;  // gone meanwhile
    Entry& e = it->second;
    if (!e.named && !r.forked_from) {
      r.forked_from = Ancestor(r.owner.process, r.owner.comm);
      if (r.forked_from) {
        // Its fork record came after it was first seen.
        const Entry* p = Get(*r.forked_from);
        if (p != nullptr && p->named) {
          e.info = p->info;
          e.info.comm = r.owner.comm;
          e.named = true;
          --pending_;
          continue;
        }
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

bool ProcessTable::Retry(const Owner& owner, uint64_t now_ns, uint64_t window_ns) {
  Entry* e = GetMutable(owner.process);
  if (e == nullptr || e->named || now_ns >= e->first_seen_ns + window_ns) return false;
  requests_.push_back({owner, std::nullopt});
  return true;
}

std::optional<std::string> ProcessTable::Describe(const ProcessKey& key, ProcessInfo info) {
  auto it = processes_.find(key);
  if (it == processes_.end()) return std::nullopt;
  Entry& e = it->second;
  if (info.comm.empty()) info.comm = e.info.comm;
  if (info.name.empty()) {
    info.name = info.comm;
    info.name_source = "comm";
  }
  std::optional<std::string> old;
  if (!e.named) {
    e.named = true;
    --pending_;
  } else if (e.info.name != info.name) {
    old = e.info.name;
  }
  e.info = std::move(info);
  return old;
}

size_t ProcessTable::NameOverdue(uint64_t deadline_ns) {
  size_t n = 0;
  for (auto& [k, e] : processes_) {
    if (e.named || e.first_seen_ns >= deadline_ns) continue;
    e.named = true;
    e.info.name = e.info.comm;
    e.info.name_source = "comm";
    --pending_;
    ++n;
  }
  return n;
}

std::vector<std::pair<ProcessKey, std::string>> ProcessTable::RenameAll(const Renamer& rename) {
  std::vector<std::pair<ProcessKey, std::string>> renamed;
  for (auto& [k, e] : processes_) {
    if (!e.named) continue;  // named with the new rules when described
    auto [name, source] = rename(e.info);
    if (name.empty()) {
      name = e.info.comm;
      source = "comm";
    }
    if (name != e.info.name) renamed.emplace_back(k, e.info.name);
    e.info.name = std::move(name);
    e.info.name_source = std::move(source);
  }
  return renamed;
}

const ProcessInfo* ProcessTable::Find(const ProcessKey& key) const {
  auto it = processes_.find(key);
  return it == processes_.end() || !it->second.named ? nullptr : &it->second.info;
}

const ProcessTable::Entry* ProcessTable::Get(const ProcessKey& key) const {
  auto it = processes_.find(key);
  return it == processes_.end() ? nullptr : &it->second;
}

ProcessTable::Entry* ProcessTable::GetMutable(const ProcessKey& key) {
  auto it = processes_.find(key);
  return it == processes_.end() ? nullptr : &it->second;
}

void ProcessTable::MarkExited(const ProcessKey& key) {
  if (Entry* e = GetMutable(key)) e->exited = true;
}

void ProcessTable::Erase(const ProcessKey& key, uint64_t now_ns) {
  auto it = processes_.find(key);
  if (it == processes_.end()) return;
  if (it->second.named) {
    ProcessInfo& info = it->second.info;
    tombstones_.insert_or_assign(key, Tombstone{std::move(info.name), std::move(info.name_source),
                                                it->second.exited, now_ns + ttl_ns_});
    tombstone_order_.emplace_back(now_ns + ttl_ns_, key);
  } else {
    --pending_;
  }
  processes_.erase(it);
}

void ProcessTable::Prune(uint64_t now_ns) {
  while (!fork_order_.empty() && fork_order_.front().first + ttl_ns_ <= now_ns) {
    forks_.erase(fork_order_.front().second);
    fork_order_.pop_front();
  }
  while (!tombstone_order_.empty() && tombstone_order_.front().first <= now_ns) {
    auto it = tombstones_.find(tombstone_order_.front().second);
    if (it != tombstones_.end() && it->second.until_ns == tombstone_order_.front().first)
      tombstones_.erase(it);
    tombstone_order_.pop_front();
  }
}

}  // namespace svcmap::flow
