#ifndef SVCMAP_FLOW_COLLECTOR_H_
#define SVCMAP_FLOW_COLLECTOR_H_

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "svcmap/flow/flow_table.h"
#include "svcmap/flow/listen_table.h"
#include "svcmap/flow/process_table.h"
#include "svcmap/flow/sock.h"

namespace svcmap::flow {

// Feeds lifecycle events into the process, listen and flow tables, and
// answers "what does it all look like now" given the live sockets. Not
// thread-safe: the caller serialises OnEvent() and View().
class Collector {
 public:
  explicit Collector(ProcessTable::Describer describer = nullptr, size_t max_traffic = 100000)
      : processes_(std::move(describer)), flows_(max_traffic) {}

  // The real destination of a client socket behind a DNAT (nat::
  // ConntrackResolver in the agent), asked for each client socket as it
  // closes and for each live one in View(). None by default.
  using NatLookup = std::function<void(SockRecord&)>;
  void set_nat_lookup(NatLookup lookup) { nat_lookup_ = std::move(lookup); }

  void OnEvent(const SockEvent& ev);
  // Events taken so far, by EventType.
  const std::array<uint64_t, 4>& event_counts() const { return event_counts_; }

  struct Result {
    FlowView flows;
    std::vector<Listener> listeners;
  };
  // `live` came from the kernel at `now_ns`, before the last events were
  // drained (see FlowTable).
  // `collapse_src_ports`: see FlowTable::ViewOptions.
  Result View(absl::Span<const SockRecord> live, uint64_t now_ns,
              bool collapse_src_ports = false);
  // The same, with the live sockets handed over one at a time by `source`
  // (Backend::ForEachLive), so that a large table is never held whole.
  using LiveSource = std::function<absl::Status(const std::function<void(const SockRecord&)>&)>;
  absl::StatusOr<Result> ViewLive(const LiveSource& source, uint64_t now_ns,
                                  bool collapse_src_ports = false);

  // Closed flows idle since before `ns` go (FlowTable::ExpireIdle).
  size_t ExpireIdle(uint64_t ns) { return flows_.ExpireIdle(ns); }
  const FlowTable& flows() const { return flows_; }

  const ProcessTable& processes() const { return processes_; }
  ProcessTable& mutable_processes() { return processes_; }
  const ListenTable& listeners() const { return listeners_; }

 private:
  bool IsServer(const SockRecord& s) const;

  ProcessTable processes_;
  ListenTable listeners_;
  FlowTable flows_;
  std::array<uint64_t, 4> event_counts_{};
  NatLookup nat_lookup_;
};

}  // namespace svcmap::flow

#endif  // SVCMAP_FLOW_COLLECTOR_H_
