#include "svcmap/scan/tracker.h"

#include <algorithm>
#include <functional>

namespace svcmap::scan {
namespace {

// include/net/tcp_states.h
enum : uint8_t {
  kEstablished = 1,
  kSynSent = 2,
  kSynRecv = 3,
  kFinWait1 = 4,
  kFinWait2 = 5,
  kClose = 7,
  kCloseWait = 8,
  kLastAck = 9,
  kListen = 10,
  kClosing = 11,
};

uint64_t Id(const DiagSock& s) { return s.cookie != 0 ? s.cookie : s.inode; }

}  // namespace

void PayloadBytes(const DiagSock& s, flow::Role role, uint64_t& sent, uint64_t& received) {
  uint64_t acked = s.bytes_acked.value_or(0);
  uint64_t ctl = 0;
  if (role == flow::Role::kClient && acked > 0) ++ctl;  // our SYN
  if (s.state == kFinWait2) ++ctl;                       // our FIN, acknowledged
  sent = acked > ctl ? acked - ctl : 0;
  uint64_t rcvd = s.bytes_received.value_or(0);
  bool fin_in = s.state == kCloseWait || s.state == kLastAck || s.state == kClosing;
  received = fin_in && rcvd > 0 ? rcvd - 1 : rcvd;
}

absl::flat_hash_set<uint64_t> SocketTracker::UnknownInodes(
    const std::vector<NetnsScan>& scans) const {
  absl::flat_hash_set<uint64_t> out;
  for (const NetnsScan& ns : scans) {
    for (const DiagSock& s : ns.socks) {
      if (s.inode == 0) continue;
      if (auto u = unresolved_.find(s.inode);
          u != unresolved_.end() && scan_number_ - u->second.marked < kRetryScans)
        continue;
      auto it = socks_.find(Key{ns.netns, Id(s)});
      if (it == socks_.end() || !it->second.owned || it->second.inode != s.inode)
        out.insert(s.inode);
    }
  }
  return out;
}

flow::SockRecord SocketTracker::Record(const Key& k, const Entry& e) const {
  flow::SockRecord r;
  r.sock_id = k.id;
  r.open_ns = e.open_ns;
  r.netns = k.netns;
  r.role = e.role;
  r.owned = e.owned;
  r.seeded = e.seeded;
  r.established = e.state != kSynSent && e.state != kClose && e.role != flow::Role::kListener;
  if (auto it = owners_.find(e.process); it != owners_.end())
    r.owner = it->second;
  else
    r.owner.process = e.process;
  r.local_ip = e.local_ip;
  r.local_port = e.local_port;
  r.remote_ip = e.remote_ip;
  r.remote_port = e.remote_port;
  r.bytes_sent = e.bytes_sent;
  r.bytes_received = e.bytes_received;
  return r;
}

void SocketTracker::NoteUnresolved(const absl::flat_hash_set<uint64_t>& wanted,
                                   const absl::flat_hash_map<uint64_t, flow::Owner>& found) {
  for (uint64_t ino : wanted)
    if (!found.contains(ino)) unresolved_.insert_or_assign(ino, Unresolved{scan_number_, scan_number_});
}

std::vector<flow::SockEvent> SocketTracker::Apply(
    const std::vector<NetnsScan>& scans,
    const absl::flat_hash_map<uint64_t, flow::Owner>& owners,
    const absl::flat_hash_set<uint32_t>& failed_netns, uint64_t now_ns) {
  std::vector<flow::SockEvent> events;
  for (auto& [k, e] : socks_) e.seen = false;

  for (const NetnsScan& ns : scans) {
    // Listeners first: they decide which end of a connection is the server,
    // and lend their owner to accepted sockets no process has picked up yet.
    absl::flat_hash_map<uint16_t, flow::ProcessKey> listen_ports;
    for (const DiagSock& s : ns.socks) {
      if (s.state != kListen) continue;
      flow::ProcessKey p;
      if (auto o = owners.find(s.inode); s.inode != 0 && o != owners.end()) {
        p = o->second.process;
      } else if (auto it = socks_.find(Key{ns.netns, Id(s)}); it != socks_.end()) {
        p = it->second.process;
      }
      auto [it, added] = listen_ports.emplace(s.local_port, p);
      if (!added && it->second.pid == 0) it->second = p;
    }

    for (const DiagSock& s : ns.socks) {
      const uint64_t id = Id(s);
      if (id == 0) continue;  // /proc without an inode: cannot follow it
      if (!unresolved_.empty())
        if (auto u = unresolved_.find(s.inode); u != unresolved_.end())
          u->second.last_seen = scan_number_;
      Key key{ns.netns, id};
      auto [it, added] = socks_.try_emplace(key);
      Entry& e = it->second;
      e.seen = true;
      e.state = s.state;
      e.local_ip = s.local_ip;
      e.local_port = s.local_port;
      e.remote_ip = s.remote_ip;
      e.remote_port = s.remote_port;
      if (added) {
        e.open_ns = now_ns;
        e.seeded = first_;
        e.role = s.state == kListen                  ? flow::Role::kListener
                 : listen_ports.contains(s.local_port) ? flow::Role::kServer
                                                       : flow::Role::kClient;
      }
      // Owner: the process holding the inode; until an accepted socket is
      // picked up (no inode yet), its listener's.
      if (auto o = owners.find(s.inode); s.inode != 0 && o != owners.end()) {
        if (!e.owned || e.process != o->second.process) {
          e.process = o->second.process;
          owners_.insert_or_assign(o->second.process, o->second);
        }
        e.owned = true;
        e.inode = s.inode;
      } else if (!e.owned && e.role == flow::Role::kServer) {
        if (auto l = listen_ports.find(s.local_port); l != listen_ports.end())
          e.process = l->second;
      }
      if (e.role != flow::Role::kListener) {
        e.tcp_info |= s.bytes_acked.has_value();
        uint64_t sent = 0, received = 0;
        PayloadBytes(s, e.role, sent, received);
        // Counters only grow; a closing socket's FIN adjustment must not
        // take back what was already reported, and an orphan in FIN_WAIT2
        // (a timewait socket by then) has no tcp_info left at all.
        e.bytes_sent = std::max(e.bytes_sent, sent);
        e.bytes_received = std::max(e.bytes_received, received);
        // An orphan without tcp_info left keeps what the last one said.
        if (s.bytes_acked.has_value()) {
          e.total_retrans = std::max(e.total_retrans, s.total_retrans);
          if (s.rtt_us != 0) e.rtt_us = s.rtt_us;
          if (s.min_rtt_us != 0) e.min_rtt_us = s.min_rtt_us;
        }
      }

      if (!added) continue;
      if (e.process.pid == 0) {
        // No process holds it and no listener lends one: the BPF seed skips
        // these too. It stays tracked so that an owner found later counts.
        if (first_) ++seed_unowned_;
        continue;
      }
      if (first_) {
        ++(e.role == flow::Role::kListener ? seeded_listeners_ : seeded_);
      }
      flow::SockEvent ev;
      ev.ts_ns = now_ns;
      ev.sock = Record(key, e);
      if (e.role == flow::Role::kListener) {
        ev.type = flow::EventType::kListen;
      } else if (first_) {
        continue;  // existed before us: live, not an event
      } else {
        ev.type = e.role == flow::Role::kServer ? flow::EventType::kAccept
                                                : flow::EventType::kConnect;
      }
      events.push_back(std::move(ev));
    }
  }

  // Not listed any more: closed since the last scan, with the bytes it had
  // then. A netns that could not be read keeps its sockets for next time.
  for (auto it = socks_.begin(); it != socks_.end();) {
    auto cur = it++;
    if (cur->second.seen || failed_netns.contains(cur->first.netns)) continue;
    if (cur->second.role != flow::Role::kListener && cur->second.process.pid != 0) {
      flow::SockEvent ev;
      ev.type = flow::EventType::kClose;
      ev.ts_ns = now_ns;
      ev.sock = Record(cur->first, cur->second);
      // The scanner's byte counts are TCP's own, as of the last scan.
      if (cur->second.tcp_info)
        ev.tcp = flow::TcpCounters{ev.sock.bytes_sent, ev.sock.bytes_received};
      // What tcp_info gives; how it ended (an outcome, a reset) the scanner
      // cannot see.
      ev.sock.health.retransmits = cur->second.total_retrans;
      ev.sock.health.srtt_us = cur->second.rtt_us;
      ev.sock.health.rtt_min_us = cur->second.min_rtt_us;
      events.push_back(std::move(ev));
    }
    socks_.erase(cur);
  }
  // Forget unplaced inodes that are gone, and (now and then: it is a pass
  // over every socket) processes no socket refers to.
  absl::erase_if(unresolved_, [&](const auto& kv) { return kv.second.last_seen != scan_number_; });
  if (scan_number_ % 32 == 0 || owners_.size() > 2 * socks_.size() + 64) {
    absl::flat_hash_set<flow::ProcessKey> used;
    for (const auto& [k, e] : socks_) used.insert(e.process);
    absl::erase_if(owners_, [&](const auto& kv) { return !used.contains(kv.first); });
  }
  first_ = false;
  ++scan_number_;
  return events;
}

std::vector<uint32_t> SocketTracker::OwnerPids() const {
  absl::flat_hash_map<uint32_t, uint64_t> count;
  for (const auto& [k, e] : socks_)
    if (e.owned) ++count[e.process.pid];
  std::vector<std::pair<uint64_t, uint32_t>> by_count;
  for (const auto& [pid, n] : count) by_count.emplace_back(n, pid);
  std::sort(by_count.begin(), by_count.end(), std::greater<>());
  std::vector<uint32_t> out;
  for (const auto& [n, pid] : by_count) out.push_back(pid);
  return out;
}

std::vector<flow::SockRecord> SocketTracker::Live() const {
  std::vector<flow::SockRecord> out;
  out.reserve(socks_.size());
  for (const auto& [k, e] : socks_)
    if (e.process.pid != 0) out.push_back(Record(k, e));
  return out;
}

}  // namespace svcmap::scan
