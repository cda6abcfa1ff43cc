#ifndef SVCMAP_SCAN_INET_DIAG_H_
#define SVCMAP_SCAN_INET_DIAG_H_

// The netlink sock_diag protocol for TCP: building the dump request and
// parsing the replies. Pure: bytes in, sockets out; the socket I/O lives in
// sock_diag.h.

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/types/span.h"
#include "svcmap/flow/ip_addr.h"

namespace svcmap::scan {

// One TCP socket from an inet_diag reply.
struct DiagSock {
  uint8_t family = 0;  // AF_INET or AF_INET6
  uint8_t state = 0;   // TCP_ESTABLISHED = 1, ... TCP_LISTEN = 10
  flow::IpAddr local_ip;
  uint16_t local_port = 0;
  flow::IpAddr remote_ip;
  uint16_t remote_port = 0;
  uint64_t inode = 0;   // 0 once the owning process closed it
  uint64_t cookie = 0;  // the kernel's socket cookie: unique for all time
  // From INET_DIAG_INFO's tcp_info, when the kernel sent one long enough
  // (bytes_acked and bytes_received arrived in 4.1/4.2).
  std::optional<uint64_t> bytes_acked;
  std::optional<uint64_t> bytes_received;
  // tcp_info's tcpi_total_retrans, tcpi_rtt and tcpi_min_rtt (4.10), in us;
  // 0 when absent.
  uint32_t total_retrans = 0;
  uint32_t rtt_us = 0;
  uint32_t min_rtt_us = 0;
};

// A SOCK_DIAG_BY_FAMILY dump request for TCP sockets of `family` in the
// states of `state_mask` (bit n = state n), asking for tcp_info.
std::vector<uint8_t> BuildTcpDiagRequest(uint8_t family, uint32_t state_mask, uint32_t seq);

enum class DiagParse { kMore, kDone, kError };
struct DiagReply {
  DiagParse status = DiagParse::kMore;
  int error = 0;             // errno from NLMSG_ERROR, when kError
  uint64_t bad_messages = 0; // malformed and skipped
};
// Parses one datagram of the dump into `out`. Stops at NLMSG_DONE or
// NLMSG_ERROR; never reads past `buf`.
DiagReply ParseTcpDiagDatagram(absl::Span<const uint8_t> buf, std::vector<DiagSock>& out);

}  // namespace svcmap::scan

#endif  // SVCMAP_SCAN_INET_DIAG_H_
