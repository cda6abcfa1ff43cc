#ifndef SVCMAP_FLOW_SOCK_H_
#define SVCMAP_FLOW_SOCK_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "svcmap/flow/ip_addr.h"

namespace svcmap::flow {

enum class EventType : uint8_t { kListen, kConnect, kAccept, kClose, kFork };
inline constexpr size_t kEventTypes = 5;
enum class Role : uint8_t { kUnknown, kClient, kServer, kListener };

std::string_view EventTypeName(EventType t);
std::string_view RoleName(Role r);

// A process, as opposed to a PID: the start time tells a reused PID from
// the process that had it before.
// /proc reports a process's start time in clock ticks (USER_HZ, 100 on
// every Linux ABI), the kernel's task in ns. Process keys use whole ticks so
// that a process found by a /proc scan and one seen by a BPF hook compare
// equal; two processes with one PID within 10 ms do not happen.
inline constexpr uint64_t kNsPerClockTick = 10'000'000;
inline uint64_t StartNsToKey(uint64_t start_ns) { return start_ns - start_ns % kNsPerClockTick; }

struct ProcessKey {
  uint32_t pid = 0;
  uint64_t start_ns = 0;  // since boot, as the kernel's start_boottime

  friend auto operator<=>(const ProcessKey&, const ProcessKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const ProcessKey& k) {
    return H::combine(std::move(h), k.pid, k.start_ns);
  }
};

// A socket for all time: the kernel reuses a struct sock's address, never
// together with its open time.
struct SockKey {
  uint64_t sock_id = 0;
  uint64_t open_ns = 0;

  friend bool operator==(const SockKey&, const SockKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const SockKey& k) {
    return H::combine(std::move(h), k.sock_id, k.open_ns);
  }
};

struct Owner {
  ProcessKey process;
  uint64_t cgroup_id = 0;
  std::string comm;
};

// How a connect attempt ended (svcmap_outcome).
enum class Outcome : uint8_t { kNone, kRefused, kTimedOut, kError };
std::string_view OutcomeName(Outcome o);

// TCP's own health of one connection, as its close reported it.
struct ConnHealth {
  Outcome outcome = Outcome::kNone;  // a connect that never established
  bool reset_received = false;
  bool reset_sent = false;
  uint32_t retransmits = 0;  // segments, SYNs included (tcp_sock.total_retrans)
  uint32_t srtt_us = 0;      // smoothed RTT; 0: no sample
  uint32_t rtt_min_us = 0;   // 0: no sample
  uint32_t connect_us = 0;   // SYN sent to ESTABLISHED; 0: none
};

// One TCP socket as the kernel saw it: from a lifecycle event, or read live.
// "local" is this host's end.
struct SockRecord {
  uint64_t sock_id = 0;   // unique while the socket lives
  uint64_t open_ns = 0;   // with sock_id, unique for all time
  uint32_t netns = 0;
  Role role = Role::kUnknown;
  bool owned = false;     // owner taken in process context
  bool established = false;
  bool seeded = false;    // existed before svcmap started (start-up scan)
  Owner owner;
  IpAddr local_ip;
  uint16_t local_port = 0;
  IpAddr remote_ip;
  uint16_t remote_port = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  // A client socket's real destination when a DNAT rewrote it (conntrack's
  // reply tuple); port 0 when not translated or not known.
  IpAddr nat_ip;
  uint16_t nat_port = 0;
  ConnHealth health;  // close events only

  SockKey key() const { return {sock_id, open_ns}; }
};

// Payload bytes according to the tcp_sock counters, read at close.
struct TcpCounters {
  uint64_t sent = 0;
  uint64_t received = 0;
};

struct SockEvent {
  EventType type = EventType::kClose;
  uint64_t ts_ns = 0;  // since boot
  SockRecord sock;     // kFork: sock.owner is the child
  ProcessKey parent;   // kFork only
  std::optional<TcpCounters> tcp;  // kClose only
};

// Reconciles the bytes counted at send/receive with TCP's own counters.
// Each source can only miss bytes, never invent them: the send/receive hooks
// do not see splice, sendfile before 6.5 or zero-copy receive; TCP does not
// count data that was written but never acknowledged. So each direction takes
// the larger. Returns true when TCP's figure was the larger, i.e. the hooks
// missed bytes.
bool ReconcileBytes(const TcpCounters& tcp, SockRecord& sock);

}  // namespace svcmap::flow

#endif  // SVCMAP_FLOW_SOCK_H_
