#ifndef SVCMAP_BASE_CLOCK_H_
#define SVCMAP_BASE_CLOCK_H_

// The kernel's clocks as svcmap uses them: CLOCK_BOOTTIME for everything
// the BPF programs timestamp (bpf_ktime_get_boot_ns), and its offset from
// wall time for output.

#include <cstdint>

namespace svcmap {

// Nanoseconds since boot, suspend included: what bpf_ktime_get_boot_ns()
// returns.
uint64_t BoottimeNs();

// CLOCK_REALTIME minus CLOCK_BOOTTIME, for turning kernel timestamps into
// wall time.
int64_t RealtimeMinusBoottimeNs();

}  // namespace svcmap

#endif  // SVCMAP_BASE_CLOCK_H_
