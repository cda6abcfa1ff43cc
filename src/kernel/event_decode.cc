#include "svcmap/kernel/event_decode.h"

#include <cstring>
#include <string_view>

#include "fmt/format.h"
#include "svcmap/bpf_abi.h"

namespace svcmap::kernel {
namespace {

flow::Owner DecodeOwner(const svcmap_owner& o) {
  flow::Owner owner;
  owner.process = {o.tgid, flow::StartNsToKey(o.start_ns)};
  owner.cgroup_id = o.cgroup_id;
  owner.comm = std::string(o.comm, strnlen(o.comm, sizeof(o.comm)));
  return owner;
}

void DecodeTuple(const svcmap_tuple& t, flow::SockRecord& s) {
  s.local_ip = flow::IpAddr::FromKernel(t.family, t.saddr);
  s.remote_ip = flow::IpAddr::FromKernel(t.family, t.daddr);
  s.local_port = t.sport;
  s.remote_port = t.dport;
}

flow::Role DecodeRole(uint8_t r) {
  switch (r) {
    case SVCMAP_ROLE_CLIENT: return flow::Role::kClient;
    case SVCMAP_ROLE_SERVER: return flow::Role::kServer;
    case SVCMAP_ROLE_LISTENER: return flow::Role::kListener;
    default: return flow::Role::kUnknown;
  }
}

flow::Outcome DecodeOutcome(uint8_t o) {
  switch (o) {
    case SVCMAP_OUTCOME_NONE: return flow::Outcome::kNone;
    case SVCMAP_OUTCOME_REFUSED: return flow::Outcome::kRefused;
    case SVCMAP_OUTCOME_TIMED_OUT: return flow::Outcome::kTimedOut;
    default: return flow::Outcome::kError;
  }
}

}  // namespace

absl::StatusOr<flow::SockEvent> DecodeEvent(absl::Span<const uint8_t> bytes) {
  if (bytes.size() < sizeof(svcmap_event)) {
    return absl::InvalidArgumentError(fmt::format(
        "event record of {} bytes, want {}", bytes.size(), sizeof(svcmap_event)));
  }
  svcmap_event e;
  std::memcpy(&e, bytes.data(), sizeof(e));  // ring records may be unaligned for us

  flow::SockEvent ev;
  switch (e.type) {
    case SVCMAP_EV_LISTEN: ev.type = flow::EventType::kListen; break;
    case SVCMAP_EV_CONNECT: ev.type = flow::EventType::kConnect; break;
    case SVCMAP_EV_ACCEPT: ev.type = flow::EventType::kAccept; break;
    case SVCMAP_EV_CLOSE: ev.type = flow::EventType::kClose; break;
    case SVCMAP_EV_FORK: ev.type = flow::EventType::kFork; break;
    default:
      return absl::InvalidArgumentError(fmt::format("unknown event type {}", e.type));
  }
  if (e.tuple.family != 2 && e.tuple.family != 10)
    return absl::InvalidArgumentError(fmt::format("unknown family {}", e.tuple.family));

  ev.ts_ns = e.ts_ns;
  if (ev.type == flow::EventType::kFork) {
    ev.sock.owner = DecodeOwner(e.owner);
    ev.parent = {static_cast<uint32_t>(e.sock_id), flow::StartNsToKey(e.open_ns)};
    return ev;
  }
  flow::SockRecord& s = ev.sock;
  s.sock_id = e.sock_id;
  s.open_ns = e.open_ns;
  s.netns = e.netns;
  s.role = DecodeRole(e.role);
  s.owned = e.flags & SVCMAP_F_OWNED;
  s.established = e.flags & SVCMAP_F_ESTABLISHED;
  s.seeded = e.flags & SVCMAP_F_SEEDED;
  s.owner = DecodeOwner(e.owner);
  DecodeTuple(e.tuple, s);
  s.bytes_sent = e.bytes_sent;
  s.bytes_received = e.bytes_received;
  if (ev.type == flow::EventType::kClose && (e.flags & SVCMAP_F_TCP_COUNTERS))
    ev.tcp = flow::TcpCounters{e.tcp_bytes_sent, e.tcp_bytes_received};
  if (ev.type == flow::EventType::kClose) {
    flow::ConnHealth& h = s.health;
    h.outcome = DecodeOutcome(e.outcome);
    h.reset_received = e.reset_received != 0;
    h.reset_sent = e.reset_sent != 0;
    h.retransmits = e.total_retrans;
    h.srtt_us = e.srtt_us;
    h.rtt_min_us = e.rtt_min_us;
    h.connect_us = e.connect_us;
  }
  return ev;
}

flow::SockRecord DecodeSockState(uint64_t sock_id, const svcmap_sock_state& st) {
  flow::SockRecord s;
  s.sock_id = sock_id;
  s.open_ns = st.open_ns;
  s.netns = st.netns;
  s.role = DecodeRole(st.role);
  s.owned = st.owned != 0;
  s.established = st.established != 0;
  s.seeded = st.seeded != 0;
  s.owner = DecodeOwner(st.owner);
  DecodeTuple(st.tuple, s);
  // Racing atomic adds may be mid-flight; each u64 is read whole, so a
  // later read only ever sees more.
  s.bytes_sent = __atomic_load_n(&st.bytes_sent, __ATOMIC_RELAXED);
  s.bytes_received = __atomic_load_n(&st.bytes_received, __ATOMIC_RELAXED);
  return s;
}

absl::StatusOr<flow::SockRecord> DecodeLive(uint64_t sock_id, const svcmap_sock_state& st) {
  if (st.tuple.family != 2 && st.tuple.family != 10)
    return absl::InvalidArgumentError(fmt::format("unknown family {}", st.tuple.family));
  flow::SockRecord s = DecodeSockState(sock_id, st);
  flow::ReconcileBytes({st.tcp_bytes_sent, st.tcp_bytes_received}, s);
  return s;
}

void IngestRecord(absl::Span<const uint8_t> record, std::vector<flow::SockEvent>& batch,
                  IngestCounters& counters) {
  absl::StatusOr<flow::SockEvent> ev = DecodeEvent(record);
  if (!ev.ok()) {
    counters.decode_errors.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (ev->tcp && flow::ReconcileBytes(*ev->tcp, ev->sock))
    counters.tcp_corrected.fetch_add(1, std::memory_order_relaxed);
  batch.push_back(*std::move(ev));
}

}  // namespace svcmap::kernel
