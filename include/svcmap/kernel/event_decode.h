#ifndef SVCMAP_KERNEL_EVENT_DECODE_H_
#define SVCMAP_KERNEL_EVENT_DECODE_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "svcmap/flow/sock.h"

struct svcmap_sock_state;

namespace svcmap::kernel {

// Decodes one ring-buffer record (struct svcmap_event). Pure; rejects short
// records and unknown event types instead of guessing.
absl::StatusOr<flow::SockEvent> DecodeEvent(absl::Span<const uint8_t> bytes);

// The flow model's view of one live entry of the socks map.
flow::SockRecord DecodeSockState(uint64_t sock_id, const svcmap_sock_state& st);

// One live entry of the socks map, its bytes reconciled with the TCP
// counters the last refresh stored in it (see flow::ReconcileBytes). Pure;
// rejects an entry of unknown address family.
absl::StatusOr<flow::SockRecord> DecodeLive(uint64_t sock_id, const svcmap_sock_state& st);

// Counts kept by IngestRecord.
struct IngestCounters {
  std::atomic<uint64_t> decode_errors{0};
  std::atomic<uint64_t> tcp_corrected{0};  // closes where TCP counted more
};

// What the ring-buffer reader does with each record: decode it, reconcile a
// close's bytes with TCP's own counters, and append the event to `batch`
// (which the reader hands on when the ring is empty or the batch full). A
// record that does not decode is counted, never passed on. The benchmarks
// (bench/ingestbench.cc) drive exactly this.
void IngestRecord(absl::Span<const uint8_t> record, std::vector<flow::SockEvent>& batch,
                  IngestCounters& counters);

}  // namespace svcmap::kernel

#endif  // SVCMAP_KERNEL_EVENT_DECODE_H_
