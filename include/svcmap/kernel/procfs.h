#ifndef SVCMAP_KERNEL_PROCFS_H_
#define SVCMAP_KERNEL_PROCFS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "svcmap/flow/sock.h"

namespace svcmap::kernel {

// Field 22 of /proc/<pid>/stat: start time in clock ticks since boot. The
// comm field may hold spaces and parentheses, so parsing starts after the
// last ')'.
absl::StatusOr<uint64_t> ParseStatStartTicks(std::string_view stat);

// The kernel's start_boottime (ns) in the clock ticks /proc reports.
uint64_t StartNsToTicks(uint64_t start_ns, long ticks_per_second);

// The executable of a process, if it is still the process we mean (same
// PID and start time); empty otherwise. Reads /proc under `proc_root`.
std::string ReadExe(const flow::ProcessKey& key,
                    std::string_view proc_root = "/proc");

}  // namespace svcmap::kernel

#endif  // SVCMAP_KERNEL_PROCFS_H_
