#ifndef SVCMAP_KERNEL_EVENT_DECODE_H_
#define SVCMAP_KERNEL_EVENT_DECODE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "svcmap/flow/sock.h"

struct svcmap_sock_state;
struct svcmap_live;

namespace svcmap::kernel {

// Decodes one ring-buffer record (struct svcmap_event). Pure; rejects short
// records and unknown event types instead of guessing.
absl::StatusOr<flow::SockEvent> DecodeEvent(absl::Span<const uint8_t> bytes);

// The flow model's view of one live entry of the socks map.
flow::SockRecord DecodeSockState(uint64_t sock_id, const svcmap_sock_state& st);

// One record of the live-socket iterator, its bytes reconciled with TCP's
// own counters (see flow::ReconcileBytes). Pure; rejects short records.
absl::StatusOr<flow::SockRecord> DecodeLive(absl::Span<const uint8_t> bytes);

}  // namespace svcmap::kernel

#endif  // SVCMAP_KERNEL_EVENT_DECODE_H_
