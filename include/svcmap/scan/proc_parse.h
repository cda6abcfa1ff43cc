#ifndef SVCMAP_SCAN_PROC_PARSE_H_
#define SVCMAP_SCAN_PROC_PARSE_H_

// Pure parsers for the text files under /proc that the scanner reads. They
// take the file's bytes and never touch the file system, so tests and fuzz
// targets feed them canned or random input.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "svcmap/flow/ip_addr.h"
#include "svcmap/scan/inet_diag.h"

namespace svcmap::scan {

// The inode of a /proc/<pid>/fd/<n> link that names a socket
// ("socket:[12345]"); nullopt for anything else.
std::optional<uint64_t> ParseSocketLink(std::string_view link);

// The TCP counters of /proc/<pid>/net/snmp that count connections opened:
// tcp_connect() calls and children created from a listener.
struct TcpOpens {
  uint64_t active_opens = 0;
  uint64_t passive_opens = 0;
};
absl::StatusOr<TcpOpens> ParseSnmpTcp(std::string_view snmp);

// The fields of /proc/<pid>/stat the scanner needs. comm may hold spaces
// and parentheses, so it is everything between the first '(' and the last ')'.
struct ProcStat {
  std::string comm;
  char state = '?';          // field 3: R, S, D, Z (exited, not reaped), ...
  uint64_t start_ticks = 0;  // field 22, clock ticks since boot
};
absl::StatusOr<ProcStat> ParseProcStat(std::string_view stat);

// The lines of /proc/<pid>/net/tcp or tcp6, as the sockets sock_diag would
// have listed, without cookie or byte counts. Addresses there are the
// kernel's __be32 words printed as host-order hex.
struct ProcNetTcp {
  std::vector<DiagSock> entries;
  uint64_t bad_lines = 0;  // skipped, not fatal
};
// `ipv6` selects the tcp6 layout. The header line is skipped.
ProcNetTcp ParseProcNetTcp(std::string_view text, bool ipv6);

}  // namespace svcmap::scan

#endif  // SVCMAP_SCAN_PROC_PARSE_H_
