#ifndef SVCMAP_KERNEL_BACKEND_H_
#define SVCMAP_KERNEL_BACKEND_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "svcmap/flow/sock.h"

namespace svcmap::kernel {

struct BackendStats {
  uint64_t ringbuf_drops = 0;   // kernel: ring buffer full
  uint64_t socks_full = 0;      // kernel: socks map full, socket not tracked
  uint64_t events = 0;          // events delivered
  uint64_t unowned_close = 0;   // accepted socket closed before its owner was known
  uint64_t track_errors = 0;    // kernel: socks map update failed (not full), socket not tracked
  uint64_t connect_end_unseen = 0;  // kernel: failed connect whose CLOSE transition went unseen
  uint64_t established_unseen = 0;  // kernel: connection whose ESTABLISHED went unseen, found at destroy
  // kernel: runs of our programs the kernel skipped because one of them was
  // already running on that CPU (a softirq's transition while a program ran
  // in process context): events that never reached the tables.
  uint64_t recursion_misses = 0;
  uint64_t decode_errors = 0;   // malformed records
  uint64_t tcp_corrected = 0;   // closes where TCP counted more bytes than the hooks
  // Start-up seeding: sockets that existed before svcmap.
  uint64_t seeded_sockets = 0;
  uint64_t seeded_listeners = 0;
  uint64_t seed_unowned = 0;    // no process holds them (closed, lingering)
  uint64_t seed_rescued = 0;    // found only by a second walk (iterator skips)
  // Scanning backend.
  uint64_t scans = 0;
  uint64_t scan_errors = 0;     // namespaces or processes that vanished mid-scan
  uint64_t last_scan_us = 0;
};

// A source of socket lifecycle events and live socket state: the BPF
// backends or the /proc + sock_diag scanner. Userspace above this line
// cannot tell them apart.
class Backend {
 public:
  // Events in the order the kernel queued them, a batch at a time: the
  // agent's sink takes its lock once per batch, not once per record.
  using EventSink = std::function<void(absl::Span<const flow::SockEvent>)>;
  virtual ~Backend() = default;

  // Starts delivering events to `sink` (on a thread of the backend's).
  virtual absl::Status Start(EventSink sink) = 0;
  // Delivers what is pending, then stops. Idempotent.
  virtual void Stop() = 0;
  using LiveFn = std::function<void(const flow::SockRecord&)>;
  // Brings the live table up to date (TCP's counters, a scan); may deliver
  // events to the sink, so call it without holding what the sink locks.
  virtual absl::Status RefreshLive() = 0;
  // Every socket alive as of the last refresh, with its byte totals so far,
  // one at a time: a node's live table can be large, and this never holds
  // all of it. Delivers no events.
  virtual absl::Status ForEachLive(const LiveFn& fn) = 0;
  // Both, gathered (tests, small tools).
  absl::StatusOr<std::vector<flow::SockRecord>> ReadLive() {
    if (absl::Status s = RefreshLive(); !s.ok()) return s;
    std::vector<flow::SockRecord> out;
    absl::Status s = ForEachLive([&](const flow::SockRecord& r) { out.push_back(r); });
    if (!s.ok()) return s;
    return out;
  }
  virtual BackendStats Stats() const = 0;
  // The thread that delivers events: whether it still runs, and when it
  // last made progress (a ring-buffer poll came back, a scan finished).
  struct Progress {
    bool running = false;
    absl::Time last = absl::InfinitePast();
  };
  virtual Progress DrainProgress() const = 0;
  // What is attached or read, for the start-up line: "tp_btf/...", ...
  virtual const std::vector<std::string>& attached() const = 0;
};

}  // namespace svcmap::kernel

#endif  // SVCMAP_KERNEL_BACKEND_H_
