#include "svcmap/flow/collector.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"

namespace svcmap::flow {

Collector::Collector(CollectorOptions options)
    : options_(options), flows_(options.flows) {}

Role Collector::RoleOf(const SockRecord& s) const {
  if (s.role != Role::kUnknown) return s.role;
  // Older than the hooks: a server if its port is a listening one.
  return listeners_.IsListenPort(s.netns, s.local_port) ? Role::kServer : Role::kClient;
}

bool Collector::NeedsNat(const SockRecord& s, Role role) const {
  return nat_peek_ && role == Role::kClient && s.established && s.remote_port != 0 &&
         !s.remote_ip.IsUnspecified() && !s.remote_ip.IsLoopback();
}

void Collector::OnEvent(const SockEvent& ev) {
  const SockRecord& s = ev.sock;
  if (ev.type == EventType::kFork) {
    ++event_counts_[static_cast<size_t>(ev.type)];
    processes_.Fork(ev.parent, s.owner, ev.ts_ns);
    return;
  }
  if (!Wanted(s.netns)) return;
  ++event_counts_[static_cast<size_t>(ev.type)];
  if (s.owner.process.pid != 0) processes_.Observe(s.owner, ev.ts_ns);
  switch (ev.type) {
    case EventType::kListen:
      listeners_.Add(Listener{s.key(), s.netns, s.local_ip, s.local_port, s.owner, ev.ts_ns});
      return;
    case EventType::kConnect:
    case EventType::kAccept:
      return;  // open until closed: counted from the kernel's live table
    case EventType::kClose:
      break;
    case EventType::kFork:
      return;  // above
  }
  if (s.role == Role::kListener) {
    if (!options_.keep_closed_listeners) listeners_.Remove(s.key());
    return;
  }
  if (!flows_.BeginClose(s.key())) {
    ++counts_.duplicate_closes;
    return;
  }
  const Role role = RoleOf(s);
  // A socket read live keeps the flow it was filed under; one that closed
  // before any read may need its real destination first.
  if (!flows_.IsLive(s.key()) && NeedsNat(s, role)) {
    NatAnswer a = nat_peek_(s);
    if (a.state == NatState::kUnknown) {
      if (parked_.size() < options_.max_parked_closes) {
        parked_.try_emplace(s.key(), Parked{s, role, ev.ts_ns});
        return;
      }
      ++counts_.nat_skipped;
    } else if (a.state == NatState::kTranslated) {
      SockRecord translated = s;
      translated.nat_ip = a.ip;
      translated.nat_port = a.port;
      flows_.ApplyClose(translated, role, ev.ts_ns);
      return;
    }
  }
  flows_.ApplyClose(s, role, ev.ts_ns);
}

std::vector<SockRecord> Collector::TakeNatRequests() {
  std::vector<SockRecord> out;
  for (auto& [key, p] : parked_) {
    if (p.asked) continue;
    p.asked = true;
    out.push_back(p.sock);
  }
  return out;
}

void Collector::ResolveClose(const SockKey& key, const NatAnswer& nat) {
  auto it = parked_.find(key);
  if (it == parked_.end()) return;
  SockRecord s = it->second.sock;
  if (nat.state == NatState::kTranslated) {
    s.nat_ip = nat.ip;
    s.nat_port = nat.port;
  }
  flows_.ApplyClose(s, it->second.role, it->second.close_ns);
  parked_.erase(it);
}

void Collector::BeginLive(uint64_t now_ns) {
  live_ns_ = now_ns;
  unknown_role_.clear();
  flows_.BeginLive(now_ns);
  listeners_.BeginLive();
}

void Collector::AddLiveRole(const SockRecord& s, Role role, std::vector<SockRecord>& need_nat) {
  // A connect still in progress is not a flow yet (it is one once it
  // established, or as a failure once closed): a flow's key is final.
  if (role == Role::kClient && !s.established) return;
  if (!flows_.IsLive(s.key()) && NeedsNat(s, role)) {
    NatAnswer a = nat_peek_(s);
    if (a.state == NatState::kUnknown) {
      need_nat.push_back(s);
      need_nat.back().role = role;
      return;
    }
    if (a.state == NatState::kTranslated) {
      SockRecord translated = s;
      translated.nat_ip = a.ip;
      translated.nat_port = a.port;
      flows_.AddLive(translated, role);
      return;
    }
  }
  flows_.AddLive(s, role);
}

void Collector::AddLive(const SockRecord& s, std::vector<SockRecord>& need_nat) {
  if (!Wanted(s.netns)) return;
  if (s.owner.process.pid != 0) processes_.Observe(s.owner, live_ns_);
  if (s.role == Role::kListener) {
    listeners_.Add(Listener{s.key(), s.netns, s.local_ip, s.local_port, s.owner, s.open_ns});
    return;
  }
  // Its role depends on the listeners, and some may come later in the read.
  if (s.role == Role::kUnknown) {
    unknown_role_.push_back(s);
    return;
  }
  AddLiveRole(s, s.role, need_nat);
}

void Collector::FinishLive(std::vector<SockRecord>& need_nat) {
  for (const SockRecord& s : unknown_role_) AddLiveRole(s, RoleOf(s), need_nat);
  unknown_role_.clear();
}

void Collector::AddLiveResolved(SockRecord s, const NatAnswer& nat) {
  if (nat.state == NatState::kTranslated) {
    s.nat_ip = nat.ip;
    s.nat_port = nat.port;
  }
  flows_.AddLive(s, s.role == Role::kUnknown ? RoleOf(s) : s.role);
}

void Collector::EndLive(bool complete) {
  flows_.EndLive(complete);
  if (!options_.keep_closed_listeners) counts_.lost_listeners += listeners_.EndLive(complete);
}

void Collector::Rename(const ProcessKey& key, const std::string& old_name, uint64_t now_ns) {
  // What it moved so far stays with the old name; from now on, the new.
  flows_.RetireProcess(key, old_name, now_ns);
  ++counts_.renamed;
}

void Collector::Describe(const ProcessKey& key, ProcessInfo info, uint64_t now_ns) {
  if (std::optional<std::string> old = processes_.Describe(key, std::move(info)))
    Rename(key, *old, now_ns);
}

void Collector::RenameAll(const ProcessTable::Renamer& rename, uint64_t now_ns) {
  for (const auto& [key, old] : processes_.RenameAll(rename)) Rename(key, old, now_ns);
}

std::vector<ProcessKey> Collector::ExitCandidates(uint64_t now_ns) {
  std::vector<ProcessKey> out;
  processes_.ForEach([&](const ProcessKey& key, const ProcessTable::Entry& e) {
    if (e.exited || !e.named) return;
    if (e.checked_ns != 0 && now_ns - e.checked_ns < options_.exit_check_interval_ns) return;
    if (flows_.HasLive(key) || listeners_.HasProcess(key)) return;
    out.push_back(key);
  });
  for (const ProcessKey& key : out) processes_.GetMutable(key)->checked_ns = now_ns;
  return out;
}

ServiceGraph Collector::Graph(const ServiceViewOptions& options, bool per_connection) {
  FlowView view = flows_.View(per_connection);
  ServiceGraph g = BuildServiceView(view, listeners_.All(), processes_, options);
  if (!per_connection) g.traffic.clear();
  return g;
}

Housekeeping Collector::Housekeep(uint64_t now_ns, uint64_t idle_ns, bool retire) {
  Housekeeping out;
  if (processes_.pending() > 0 && now_ns > options_.naming_deadline_ns)
    counts_.named_overdue += processes_.NameOverdue(now_ns - options_.naming_deadline_ns);
  // A close waiting for its NAT answer still belongs to its process: retired
  // or evicted first, the close would land on a process nobody can name
  // (its bytes under "pid-N" instead of its service).
  absl::flat_hash_set<ProcessKey> parked_owners;
  auto in_use = [&](const ProcessKey& key) {
    return flows_.HasLive(key) || listeners_.HasProcess(key) || parked_owners.contains(key);
  };
  if (retire) {
    for (const auto& [key, p] : parked_) parked_owners.insert(p.sock.owner.process);
    std::vector<ProcessKey> gone;
    processes_.ForEach([&](const ProcessKey& key, const ProcessTable::Entry& e) {
      if (e.exited && e.named && !in_use(key)) gone.push_back(key);
    });
    for (const ProcessKey& key : gone) {
      flows_.RetireProcess(key, processes_.Get(key)->info.name, now_ns);
      processes_.Erase(key, now_ns);
      ++counts_.retired;
      ++counts_.evicted;
    }
  }
  if (idle_ns > 0 && now_ns > idle_ns) {
    const uint64_t cutoff = now_ns - idle_ns;
    std::vector<FlowKey> groups = flows_.ExpireIdleGroups(
        cutoff, [&](const ProcessKey& p) -> std::optional<std::string> {
          const ProcessInfo* info = processes_.Find(p);
          if (info == nullptr) return std::nullopt;
          return info->name.empty() ? info->comm : info->name;
        });
    out.expired_flows = groups.size();
    for (const FlowKey& g : groups) out.expired_groups.push_back(GroupId(g));
    const uint64_t rows_cutoff =
        now_ns > options_.traffic_row_ttl_ns ? std::max(cutoff, now_ns - options_.traffic_row_ttl_ns)
                                             : cutoff;
    for (const TrafficKey& t : flows_.ExpireIdleTraffic(cutoff, rows_cutoff))
      out.expired_traffic.push_back(TrafficId(t));
  }
  if (retire) {
    // Nothing refers to these any more (their flows expired, their
    // sockets closed): they go, exited or not; a later event describes a
    // live one again.
    absl::flat_hash_set<ProcessKey> referenced;
    for (const ProcessKey& p : flows_.Processes()) referenced.insert(p);
    std::vector<ProcessKey> unreferenced;
    processes_.ForEach([&](const ProcessKey& key, const ProcessTable::Entry& e) {
      if (referenced.contains(key) || in_use(key)) return;
      if (e.exited || now_ns - e.first_seen_ns >= options_.unreferenced_ttl_ns)
        unreferenced.push_back(key);
    });
    for (const ProcessKey& key : unreferenced) {
      processes_.Erase(key, now_ns);
      ++counts_.evicted;
    }
  }
  processes_.Prune(now_ns);
  flows_.ForgetClosed(now_ns);
  return out;
}

CollectorSizes Collector::Sizes() const {
  CollectorSizes s;
  s.flows = flows_.Sizes();
  s.processes = processes_.size();
  s.pending_processes = processes_.pending();
  s.process_tombstones = processes_.tombstones();
  s.forks = processes_.forks();
  s.listeners = listeners_.size();
  s.parked_closes = parked_.size();
  return s;
}

CollectorCounts Collector::Counts() const {
  CollectorCounts c = counts_;
  c.lost_closes = flows_.lost_closes();
  c.traffic_overflow = flows_.rows_overflow();
  return c;
}

}  // namespace svcmap::flow
