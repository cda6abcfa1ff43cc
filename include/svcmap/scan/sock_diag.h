#ifndef SVCMAP_SCAN_SOCK_DIAG_H_
#define SVCMAP_SCAN_SOCK_DIAG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "svcmap/scan/inet_diag.h"
#include "svcmap/scan/proc_parse.h"

namespace svcmap::scan {

// Every TCP state a process can own or just have closed: not TIME_WAIT (no
// owner, no counters left) and not NEW_SYN_RECV (a request, not a socket).
uint32_t OwnedStatesMask();

// Dumps the TCP sockets (IPv4 and IPv6) of the calling thread's netns over
// netlink sock_diag, with tcp_info.
absl::StatusOr<std::vector<DiagSock>> DumpTcpSockets(uint32_t state_mask);

// What one namespace holds, read from inside it.
struct NetnsSockets {
  std::vector<DiagSock> socks;
  std::string source;              // "sock_diag" or "proc" (no byte counts)
  std::optional<TcpOpens> opens;   // from /proc/thread-self/net/snmp
  uint64_t bad_records = 0;
  std::string diag_error;          // why sock_diag was not used
};
// Reads the calling thread's netns: sock_diag when `use_diag` and it works,
// else /proc/thread-self/net/tcp{,6}.
NetnsSockets ReadCurrentNetns(bool use_diag);

// The TCP open counters of the calling thread's netns.
std::optional<TcpOpens> ReadCurrentOpens();

// The TCP open counters of every netns (ListNetns), by netns inode.
absl::flat_hash_map<uint32_t, TcpOpens> ReadOpensByNetns();

}  // namespace svcmap::scan

#endif  // SVCMAP_SCAN_SOCK_DIAG_H_
