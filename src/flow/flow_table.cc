#include "svcmap/flow/flow_table.h"

#include <algorithm>

namespace svcmap::flow {

void FlowStats::Add(const SockRecord& s, uint64_t seen_ns, bool closed) {
  bytes_sent += s.bytes_sent;
  bytes_received += s.bytes_received;
  if (s.established) {
    ++connections;
    if (!closed) ++active;
  } else if (closed) {
    ++failed;
  }
  uint64_t first = s.open_ns ? s.open_ns : seen_ns;
  first_seen_ns = first_seen_ns ? std::min(first_seen_ns, first) : first;
  last_seen_ns = std::max(last_seen_ns, seen_ns);
}

Role FlowTable::EffectiveRole(const SockRecord& s, const IsServerFn& is_server) {
  if (s.role != Role::kUnknown) return s.role;
  return is_server && is_server(s) ? Role::kServer : Role::kClient;
}

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

void FlowTable::AddTo(FlowView& view, const SockRecord& s, uint64_t seen_ns,
                      Role role, bool closed, bool collapse_src_ports) const {
  // A role the hooks did not see being set means the socket predates them.
  if (!s.seeded && (s.role == Role::kClient || s.role == Role::kServer)) ++view.opened[s.netns];
  // A child socket that never established (its handshake lost a race, or
  // the accept queue was full, and the client's retry made another) is a
  // passive open to the kernel but no connection: no flow, no empty row
  // with a 0.0.0.0 peer. A client's is a failed connect, which is one.
  if (role == Role::kServer && !s.established) return;
  view.flows[KeyOf(s, role)].Add(s, seen_ns, closed);
  if (!s.established) return;  // no 4-tuple worth listing
  TrafficKey tk = TrafficKeyOf(s, role);
  if (collapse_src_ports) tk.src_port = 0;
  auto it = view.traffic.find(tk);
  if (it == view.traffic.end()) {
    if (view.traffic.size() >= max_traffic_) {
      ++view.traffic_overflow;
      return;
    }
    it = view.traffic.emplace(tk, TrafficStats{}).first;
  }
  bool outbound = role != Role::kServer;
  it->second.bytes_to_dst += outbound ? s.bytes_sent : s.bytes_received;
  it->second.bytes_to_src += outbound ? s.bytes_received : s.bytes_sent;
  it->second.last_seen_ns = std::max(it->second.last_seen_ns, seen_ns);
  it->second.process = s.owner.process;
}

void FlowTable::AddClosed(const SockRecord& s, uint64_t close_ns,
                          const IsServerFn& is_server) {
  if (s.role == Role::kListener) return;
  closed_ids_[SockId{s.sock_id, s.open_ns}] = close_ns;
  AddTo(closed_, s, close_ns, EffectiveRole(s, is_server), true);
}

FlowView FlowTable::View(absl::Span<const SockRecord> live, uint64_t now_ns,
                         const IsServerFn& is_server, const ViewOptions& options) const {
  FlowView view = StartView(options);
  for (const SockRecord& s : live) AddLive(view, s, now_ns, is_server, options);
  return view;
}

FlowView FlowTable::StartView(const ViewOptions& options) const {
  FlowView view;
  view.flows = closed_.flows;
  view.opened = closed_.opened;
  view.traffic_overflow = closed_.traffic_overflow;
  if (!options.collapse_src_ports) {
    view.traffic = closed_.traffic;
  } else {
    for (const auto& [k, t] : closed_.traffic) {
      TrafficKey key = k;
      key.src_port = 0;
      TrafficStats& into = view.traffic[key];
      into.bytes_to_dst += t.bytes_to_dst;
      into.bytes_to_src += t.bytes_to_src;
      into.last_seen_ns = std::max(into.last_seen_ns, t.last_seen_ns);
      into.process = t.process;
    }
  }
  return view;
}

void FlowTable::AddLive(FlowView& view, const SockRecord& s, uint64_t now_ns,
                        const IsServerFn& is_server, const ViewOptions& options) const {
  if (s.role == Role::kListener) return;
  if (closed_ids_.contains(SockId{s.sock_id, s.open_ns})) return;
  const Role role = EffectiveRole(s, is_server);
  if (options.nat && role == Role::kClient && s.established) {
    SockRecord translated = s;
    options.nat(translated);
    AddTo(view, translated, now_ns, role, false, options.collapse_src_ports);
  } else {
    AddTo(view, s, now_ns, role, false, options.collapse_src_ports);
  }
}

void FlowTable::ForgetClosedBefore(uint64_t ns) {
  absl::erase_if(closed_ids_, [ns](const auto& kv) { return kv.second < ns; });
}

size_t FlowTable::ExpireIdle(uint64_t ns) {
  size_t before = closed_.flows.size();
  absl::erase_if(closed_.flows, [ns](const auto& kv) { return kv.second.last_seen_ns < ns; });
  absl::erase_if(closed_.traffic, [ns](const auto& kv) { return kv.second.last_seen_ns < ns; });
  return before - closed_.flows.size();
}

}  // namespace svcmap::flow
