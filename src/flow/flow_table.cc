#include "svcmap/flow/flow_table.h"

#include <algorithm>

namespace svcmap::flow {

FlowKey FlowKey::Group(std::string name) const {
  FlowKey g = *this;
  g.process = {};
  g.service = std::move(name);
  return g;
}

void LatencyHistogram::Add(uint64_t us) {
  size_t i = 0;
  while (i < kLatencyBoundsUs.size() && us > kLatencyBoundsUs[i]) ++i;
  ++buckets[i];
  ++count;
  sum_us += us;
}

void LatencyHistogram::Merge(const LatencyHistogram& o) {
  for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
  count += o.count;
  sum_us += o.sum_us;
}

void FlowHealth::AddClose(const ConnHealth* h, bool established, bool client) {
  if (!established && client) {
    // A connect that never established and whose close said nothing is
    // an error: `failed` is the sum of the three.
    const Outcome o = h ? h->outcome : Outcome::kError;
    if (o == Outcome::kRefused)
      ++refused;
    else if (o == Outcome::kTimedOut)
      ++timed_out;
    else
      ++error;
  }
  if (h == nullptr) return;
  retransmits += h->retransmits;
  if (!established) return;
  resets_received += h->reset_received;
  resets_sent += h->reset_sent;
  if (h->srtt_us != 0) rtt.Add(h->srtt_us);
  if (h->rtt_min_us != 0)
    rtt_min_us = rtt_min_us ? std::min(rtt_min_us, h->rtt_min_us) : h->rtt_min_us;
  if (client && h->connect_us != 0) connect.Add(h->connect_us);
}

void FlowHealth::Merge(const FlowHealth& o) {
  refused += o.refused;
  timed_out += o.timed_out;
  error += o.error;
  resets_received += o.resets_received;
  resets_sent += o.resets_sent;
  retransmits += o.retransmits;
  rtt.Merge(o.rtt);
  connect.Merge(o.connect);
  if (o.rtt_min_us != 0) rtt_min_us = rtt_min_us ? std::min(rtt_min_us, o.rtt_min_us) : o.rtt_min_us;
}

void FlowStats::Merge(const FlowStats& o) {
  bytes_sent += o.bytes_sent;
  bytes_received += o.bytes_received;
  connections += o.connections;
  failed += o.failed;
  active += o.active;
  health.Merge(o.health);
  if (o.first_seen_ns != 0 || o.last_seen_ns != 0) Seen(o.first_seen_ns, o.last_seen_ns);
}

void FlowStats::Seen(uint64_t first_ns, uint64_t last_ns) {
  if (first_ns == 0) first_ns = last_ns;
  first_seen_ns = first_seen_ns ? std::min(first_seen_ns, first_ns) : first_ns;
  last_seen_ns = std::max(last_seen_ns, last_ns);
}

FlowTable::FlowTable(FlowTableOptions options) : options_(options) {}

FlowKey FlowTable::KeyOf(const SockRecord& s, Role role) {
  FlowKey k;
  k.process = s.owner.process;
  k.netns = s.netns;
  k.role = role;
  k.local_ip = s.local_ip;
  k.remote_ip = s.remote_ip;
  if (role == Role::kServer) {
    k.local_port = s.local_port;
  } else {
    k.remote_port = s.remote_port;
    k.nat_ip = s.nat_ip;
    k.nat_port = s.nat_port;
  }
  return k;
}

TrafficKey FlowTable::TrafficKeyOf(const SockRecord& s, Role role) {
  TrafficKey k;
  k.netns = s.netns;
  k.observed_as = role;
  if (role == Role::kServer) {
    k.src_ip = s.remote_ip;
    k.src_port = s.remote_port;
    k.dst_ip = s.local_ip;
    k.dst_port = s.local_port;
  } else {
    k.src_ip = s.local_ip;
    k.src_port = s.local_port;
    k.dst_ip = s.remote_ip;
    k.dst_port = s.remote_port;
  }
  return k;
}

FlowTable::BucketMap::value_type* FlowTable::BucketFor(const FlowKey& key) {
  if (BucketMap::value_type* e = recent_buckets_.Find(key)) return e;
  BucketMap::value_type* e = &*buckets_.try_emplace(key).first;
  recent_buckets_.Put(e);
  return e;
}

FlowTable::TrafficMap::value_type* FlowTable::SeriesFor(const TrafficKey& key) {
  if (TrafficMap::value_type* e = recent_series_.Find(key)) return e;
  TrafficMap::value_type* e = &*series_.try_emplace(key).first;
  recent_series_.Put(e);
  return e;
}

void FlowTable::CountOpen(const SockRecord& s, Role role) {
  if (!options_.count_opens || s.seeded) return;
  // The role the hooks saw being set: without one the socket predates them.
  if (s.role == Role::kClient || s.role == Role::kServer) ++opened_[s.netns];
}

void FlowTable::AddRow(const TrafficKey& key, uint64_t to_dst, uint64_t to_src, uint64_t seen_ns,
                       const ProcessKey& p) {
  if (options_.max_traffic_rows == 0) {
    ++rows_overflow_;
    return;
  }
  if (rows_.size() >= options_.max_traffic_rows) {
    rows_.pop_front();
    ++rows_overflow_;
  }
  rows_.emplace_back(key, TrafficStats{.bytes_to_dst = to_dst,
                                       .bytes_to_src = to_src,
                                       .last_seen_ns = seen_ns,
                                       .process = p});
}

bool FlowTable::BeginClose(const SockKey& key) {
  if (!lost_ids_.empty() && lost_ids_.contains(key)) return false;
  return !reading_ || read_closes_.insert(key).second;
}

FlowTable::Base FlowTable::BaseOf(const SockKey& key, const LiveSock& ls) const {
  if (!ls.rebased) return {};
  auto it = bases_.find(key);
  return it == bases_.end() ? Base{} : it->second;
}

void FlowTable::Rebase(const SockKey& key, LiveSock& ls) {
  bases_[key] = {ls.sent, ls.received};
  ls.rebased = true;
}

FlowTable::Base FlowTable::Unfolded(const SockKey& key, const LiveSock& ls) const {
  const Base base = BaseOf(key, ls);
  return {ls.sent - std::min(base.sent, ls.sent),
          ls.received - std::min(base.received, ls.received)};
}

void FlowTable::HandOver(const SockKey& key, LiveSock& ls, FlowStats& to, uint64_t until_ns) {
  const Base moved = Unfolded(key, ls);
  to.bytes_sent += moved.sent;
  to.bytes_received += moved.received;
  if (ls.established && !ls.connection_counted) {
    ++to.connections;
    ls.connection_counted = true;
  }
  to.Seen(key.open_ns, until_ns);
  Rebase(key, ls);
}

uint64_t FlowTable::GenNs(uint32_t gen) const {
  if (gen_ns_.empty() || gen < gen_ns_.front().first || gen > gen_ns_.back().first) return 0;
  return gen_ns_[gen - gen_ns_.front().first].second;
}

void FlowTable::Close(const SockKey& sock, LiveSock& ls, uint64_t close_ns,
                      const ConnHealth* health) {
  const FlowKey& key = ls.flow->first;
  FlowStats& f = ls.flow->second.closed;
  const Base moved = Unfolded(sock, ls);
  f.bytes_sent += moved.sent;
  f.bytes_received += moved.received;
  if (ls.established) {
    if (!ls.connection_counted) ++f.connections;
  } else if (key.role == Role::kClient) {
    ++f.failed;
  }
  f.health.AddClose(health, ls.established, key.role == Role::kClient);
  f.Seen(sock.open_ns, close_ns);
  if (ls.series == nullptr || !ls.established) return;
  const bool outbound = key.role != Role::kServer;
  const uint64_t to_dst = outbound ? ls.sent : ls.received;
  const uint64_t to_src = outbound ? ls.received : ls.sent;
  TrafficStats& t = ls.series->second.closed;
  t.bytes_to_dst += to_dst;
  t.bytes_to_src += to_src;
  t.last_seen_ns = std::max(t.last_seen_ns, close_ns);
  t.process = key.process;
  TrafficKey row = ls.series->first;
  row.src_port = ls.src_port;
  AddRow(row, to_dst, to_src, close_ns, key.process);
}

void FlowTable::DropLive(LiveMap::iterator it) {
  LiveSock& ls = it->second;
  --ls.flow->second.live_socks;
  if (ls.series != nullptr) --ls.series->second.live_socks;
  if (!ls.flow->first.retired()) {
    auto p = live_by_process_.find(ls.flow->first.process);
    if (p != live_by_process_.end() && --p->second == 0) live_by_process_.erase(p);
  }
  if (ls.rebased) bases_.erase(it->first);
  live_.erase(it);
}

void FlowTable::Refile(const SockKey& sock, LiveSock& ls, const SockRecord& s) {
  ls.owned = true;
  if (s.owner.process == ls.flow->first.process) return;
  HandOver(sock, ls, ls.flow->second.closed, std::max(read_ns_, sock.open_ns));
  --ls.flow->second.live_socks;
  auto p = live_by_process_.find(ls.flow->first.process);
  if (p != live_by_process_.end() && --p->second == 0) live_by_process_.erase(p);
  FlowKey key = ls.flow->first;
  key.process = s.owner.process;
  ls.flow = BucketFor(key);
  ++ls.flow->second.live_socks;
  ++live_by_process_[key.process];
}

void FlowTable::Update(LiveSock& ls, const SockRecord& s) {
  ls.sent = std::max(ls.sent, s.bytes_sent);
  ls.received = std::max(ls.received, s.bytes_received);
  if (s.established) ls.established = true;
  if (!ls.established) return;
  // Its 4-tuple is whole from ESTABLISHED on (the source port of a connect
  // is chosen after SYN_SENT): its NETWORK_TRAFFIC series, then.
  const Role r = ls.flow->first.role;
  uint16_t port = r == Role::kServer ? s.remote_port : s.local_port;
  if (port != 0) ls.src_port = port;
  if (ls.series == nullptr) {
    TrafficKey tk = TrafficKeyOf(s, r);
    tk.src_port = 0;
    ls.series = SeriesFor(tk);
    ++ls.series->second.live_socks;
  }
}

void FlowTable::ApplyClose(const SockRecord& s, Role role, uint64_t close_ns) {
  if (auto it = live_.find(s.key()); it != live_.end()) {
    LiveSock& ls = it->second;
    if (s.owned && !ls.owned) Refile(it->first, ls, s);
    // The close carries the final totals, never less than a read's.
    Update(ls, s);
    Close(it->first, ls, close_ns, &s.health);
    DropLive(it);
    return;
  }
  if (role != Role::kClient && role != Role::kServer) return;
  CountOpen(s, role);
  // A child socket that never established (its handshake lost a race, or
  // the accept queue was full, and the client's retry made another) is a
  // passive open to the kernel but no connection: no flow, no empty row
  // with a 0.0.0.0 peer. A client's is a failed connect, which is one.
  if (role == Role::kServer && !s.established) return;
  LiveSock once;
  once.flow = BucketFor(KeyOf(s, role));
  once.sent = s.bytes_sent;
  once.received = s.bytes_received;
  once.established = s.established;
  if (s.established) {
    TrafficKey tk = TrafficKeyOf(s, role);
    once.src_port = tk.src_port;
    tk.src_port = 0;
    once.series = SeriesFor(tk);
  }
  Close(s.key(), once, close_ns, &s.health);
}

void FlowTable::BeginLive(uint64_t now_ns) {
  reading_ = true;
  read_closes_.clear();
  ++gen_;
  read_ns_ = now_ns;
  gen_ns_.emplace_back(gen_, now_ns);
  // Enough generations to cover the lost-close grace at a frame a second.
  while (gen_ns_.size() > 4096) gen_ns_.pop_front();
}

void FlowTable::AddLive(const SockRecord& s, Role role) {
  if (role != Role::kClient && role != Role::kServer) return;
  const SockKey key = s.key();
  // Its close came first, during this read.
  if (read_closes_.contains(key) || (!lost_ids_.empty() && lost_ids_.contains(key))) return;
  auto it = live_.find(key);
  if (it == live_.end()) {
    if (role == Role::kServer && !s.established) return;  // not a connection yet
    CountOpen(s, role);
    LiveSock ls;
    ls.flow = BucketFor(KeyOf(s, role));
    ++ls.flow->second.live_socks;
    ++live_by_process_[s.owner.process];
    ls.seeded = s.seeded;
    ls.owned = s.owned;
    it = live_.emplace(key, ls).first;
  }
  LiveSock& ls = it->second;
  if (s.owned && !ls.owned) Refile(it->first, ls, s);
  Update(ls, s);
  ls.seen_gen = gen_;
  ls.missed = 0;
}

size_t FlowTable::EndLive(bool complete) {
  reading_ = false;
  read_closes_.clear();
  if (!complete) return 0;
  size_t lost = 0;
  for (auto it = live_.begin(); it != live_.end();) {
    LiveSock& ls = it->second;
    if (ls.seen_gen == gen_) {
      ++it;
      continue;
    }
    if (ls.missed < 255) ++ls.missed;
    const uint64_t seen_ns = GenNs(ls.seen_gen);
    if (ls.missed < 2 || (seen_ns != 0 && read_ns_ - seen_ns < options_.lost_close_grace_ns)) {
      ++it;
      continue;
    }
    // Gone from the kernel's table, and its close never came (dropped in
    // the ring buffer): closed as last read. A close that does come later
    // is dropped by its remembered id.
    const SockKey key = it->first;
    Close(key, ls, seen_ns != 0 ? seen_ns : read_ns_, nullptr);
    const uint64_t until = read_ns_ + options_.lost_id_ttl_ns;
    if (lost_ids_.insert_or_assign(key, until).second) lost_order_.emplace_back(until, key);
    DropLive(it++);
    ++lost;
  }
  lost_closes_ += lost;
  return lost;
}

FlowView FlowTable::View(bool per_connection) const {
  FlowView v;
  v.flows.reserve(buckets_.size());
  for (const auto& [k, b] : buckets_) v.flows.emplace(k, b.closed);
  v.traffic_series.reserve(series_.size());
  for (const auto& [k, t] : series_) v.traffic_series.emplace(k, t.closed);
  if (per_connection) {
    v.traffic.reserve(rows_.size());
    for (const auto& [k, r] : rows_) {
      TrafficStats& t = v.traffic[k];
      t.bytes_to_dst += r.bytes_to_dst;
      t.bytes_to_src += r.bytes_to_src;
      t.process = r.process;  // the last close names it, as for a series
      t.last_seen_ns = std::max(t.last_seen_ns, r.last_seen_ns);
    }
  }
  v.traffic_overflow = rows_overflow_;
  for (const auto& [key, ls] : live_) {
    const uint64_t seen_ns = std::max(GenNs(ls.seen_gen), key.open_ns);
    const Base moved = Unfolded(key, ls);
    FlowStats& f = v.flows[ls.flow->first];
    f.bytes_sent += moved.sent;
    f.bytes_received += moved.received;
    if (ls.established) {
      ++f.active;
      if (!ls.connection_counted) ++f.connections;
    }
    f.Seen(key.open_ns, seen_ns);
    if (ls.series == nullptr || !ls.established) continue;
    const bool outbound = ls.flow->first.role != Role::kServer;
    const uint64_t to_dst = outbound ? ls.sent : ls.received;
    const uint64_t to_src = outbound ? ls.received : ls.sent;
    TrafficStats& t = v.traffic_series[ls.series->first];
    t.bytes_to_dst += to_dst;
    t.bytes_to_src += to_src;
    t.last_seen_ns = std::max(t.last_seen_ns, seen_ns);
    t.process = ls.flow->first.process;
    ++t.live;
    if (!per_connection) continue;
    TrafficKey row = ls.series->first;
    row.src_port = ls.src_port;
    auto r = v.traffic.find(row);
    if (r == v.traffic.end()) {
      if (v.traffic.size() >= options_.max_traffic_rows) continue;
      r = v.traffic.emplace(row, TrafficStats{}).first;
    }
    r->second.bytes_to_dst += to_dst;
    r->second.bytes_to_src += to_src;
    r->second.last_seen_ns = std::max(r->second.last_seen_ns, seen_ns);
    r->second.process = ls.flow->first.process;
    ++r->second.live;
  }
  v.opened = opened_;
  return v;
}

bool FlowTable::HasLive(const ProcessKey& p) const { return live_by_process_.contains(p); }

void FlowTable::RetireProcess(const ProcessKey& p, const std::string& name, uint64_t now_ns) {
  if (HasLive(p)) {
    // Open sockets stay where they are, and from now on count only what
    // they move next: what they moved so far goes with the old name.
    for (auto& [key, ls] : live_) {
      if (ls.flow->first.process != p) continue;
      HandOver(key, ls, BucketFor(ls.flow->first.Group(name))->second.closed, now_ns);
    }
  }
  std::vector<BucketMap::value_type*> mine;
  for (auto& kv : buckets_)
    if (kv.first.process == p && !kv.first.retired()) mine.push_back(&kv);
  for (BucketMap::value_type* kv : mine) {
    if (kv->second.closed.last_seen_ns != 0)
      BucketFor(kv->first.Group(name))->second.closed.Merge(kv->second.closed);
    kv->second.closed = {};
    if (kv->second.live_socks == 0) {
      recent_buckets_.Clear();
      buckets_.erase(kv->first);
    }
  }
}

std::vector<FlowKey> FlowTable::ExpireIdleGroups(uint64_t cutoff_ns, const NameOf& name_of) {
  struct Group {
    bool keep = false;
    std::vector<const FlowKey*> members;
  };
  absl::flat_hash_map<FlowKey, Group> groups;
  for (const auto& [k, b] : buckets_) {
    std::optional<std::string> name;
    if (k.retired()) {
      name = k.service;
    } else {
      name = name_of(k.process);
      if (!name) continue;  // not named yet: its group is unknown, so it stays
    }
    Group& g = groups[k.retired() ? k : k.Group(*std::move(name))];
    g.members.push_back(&k);
    if (b.live_socks > 0 || b.closed.last_seen_ns >= cutoff_ns) g.keep = true;
  }
  std::vector<FlowKey> gone;
  for (auto& [key, g] : groups) {
    if (g.keep) continue;
    recent_buckets_.Clear();
    for (const FlowKey* m : g.members) buckets_.erase(*m);
    gone.push_back(key);
  }
  return gone;
}

std::vector<TrafficKey> FlowTable::ExpireIdleTraffic(uint64_t cutoff_ns, uint64_t rows_cutoff_ns) {
  std::vector<TrafficKey> gone;
  for (auto it = series_.begin(); it != series_.end();) {
    if (it->second.live_socks == 0 && it->second.closed.last_seen_ns < cutoff_ns) {
      gone.push_back(it->first);
      recent_series_.Clear();
      series_.erase(it++);
    } else {
      ++it;
    }
  }
  // Close order is nearly time order (two CPUs' events interleave), so
  // most of what goes is at the front; the rest is a pass over the entries.
  while (!rows_.empty() && rows_.front().second.last_seen_ns < rows_cutoff_ns) rows_.pop_front();
  std::erase_if(rows_, [&](const auto& kv) { return kv.second.last_seen_ns < rows_cutoff_ns; });
  return gone;
}

void FlowTable::ForgetClosed(uint64_t now_ns) {
  while (!lost_order_.empty() && lost_order_.front().first <= now_ns) {
    auto it = lost_ids_.find(lost_order_.front().second);
    if (it != lost_ids_.end() && it->second == lost_order_.front().first) lost_ids_.erase(it);
    lost_order_.pop_front();
  }
}

std::vector<ProcessKey> FlowTable::Processes() const {
  absl::flat_hash_set<ProcessKey> seen;
  for (const auto& [k, b] : buckets_)
    if (!k.retired()) seen.insert(k.process);
  return {seen.begin(), seen.end()};
}

FlowTableSizes FlowTable::Sizes() const {
  return {buckets_.size(), live_.size(), lost_ids_.size() + read_closes_.size(), rows_.size(),
          series_.size()};
}

}  // namespace svcmap::flow
