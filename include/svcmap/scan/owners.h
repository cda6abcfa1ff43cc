#ifndef SVCMAP_SCAN_OWNERS_H_
#define SVCMAP_SCAN_OWNERS_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "svcmap/flow/sock.h"

namespace svcmap::scan {

// Socket inode -> the process holding it open, found the way ss -p and
// lsof do: by reading every /proc/<pid>/fd link.
struct SocketOwners {
  absl::flat_hash_map<uint64_t, flow::Owner> by_inode;
  uint64_t processes = 0;   // walked
  uint64_t vanished = 0;    // exited while we read them
  uint64_t unreadable = 0;  // fd directory not readable (permissions)
};

// A process key from /proc: the kernel's start_boottime is only visible
// there in clock ticks, so both sides of svcmap agree on tick granularity
// (see flow::ProcessKeyFromStartNs).
flow::ProcessKey ProcessKeyFromTicks(uint32_t pid, uint64_t start_ticks);

// Walks /proc/<pid>/fd of every process. With `wanted`, only those inodes
// are kept (and only their processes' stat files read), the processes in
// `first` are walked before the others (new sockets mostly belong to
// processes that already had some), and the walk stops once every wanted
// inode is found. When several processes share a socket (a forked
// listener), the first one walked keeps it: the lowest PID, unless hinted.
SocketOwners ScanSocketOwners(const absl::flat_hash_set<uint64_t>* wanted,
                              std::string_view proc_root = "/proc",
                              const std::vector<uint32_t>& first = {});

}  // namespace svcmap::scan

#endif  // SVCMAP_SCAN_OWNERS_H_
