#ifndef SVCMAP_SCAN_NETNS_H_
#define SVCMAP_SCAN_NETNS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"

namespace svcmap::scan {

struct NetnsRef {
  uint32_t inode = 0;  // what the BPF side and the snapshot call the netns
  std::string path;    // something to setns() through: /proc/<pid>/ns/net
};

struct NetnsList {
  std::vector<NetnsRef> namespaces;  // ours first, then by inode
  uint64_t unreadable = 0;           // processes that exited mid-listing
};

// Every network namespace in use: those of running processes and those
// bind-mounted under `run_netns` (ip netns add), which may have no process.
NetnsList ListNetns(std::string_view proc_root = "/proc",
                    std::string_view run_netns = "/run/netns");

// The inode of the netns at `path` (0 when it cannot be read).
uint32_t NetnsInodeOf(const std::string& path);

// Runs `fn` on a thread that has joined the netns at `path`, and waits for
// it. setns() changes only the calling thread, so the rest of the process
// stays where it is. NotFound when the namespace is gone.
absl::Status RunInNetns(const std::string& path, absl::FunctionRef<void()> fn);

}  // namespace svcmap::scan

#endif  // SVCMAP_SCAN_NETNS_H_
