#include "svcmap/scan/inet_diag.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace svcmap::scan {
namespace {

constexpr size_t Align4(size_t n) { return (n + 3) & ~size_t{3}; }

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // netlink gives 4-byte alignment only
  return v;
}

void ParseSock(const uint8_t* p, size_t len, std::vector<DiagSock>& out, DiagReply& r) {
  if (len < sizeof(inet_diag_msg)) {
    ++r.bad_messages;
    return;
  }
  inet_diag_msg msg = Load<inet_diag_msg>(p);
  if (msg.idiag_family != AF_INET && msg.idiag_family != AF_INET6) {
    ++r.bad_messages;
    return;
  }
  DiagSock s;
  s.family = msg.idiag_family;
  s.state = msg.idiag_state;
  s.local_ip = flow::IpAddr::FromKernel(s.family,
                                        reinterpret_cast<const uint8_t*>(msg.id.idiag_src));
  s.remote_ip = flow::IpAddr::FromKernel(s.family,
                                         reinterpret_cast<const uint8_t*>(msg.id.idiag_dst));
  s.local_port = ntohs(msg.id.idiag_sport);
  s.remote_port = ntohs(msg.id.idiag_dport);
  s.inode = msg.idiag_inode;
  s.cookie = msg.id.idiag_cookie[0] | (uint64_t{msg.id.idiag_cookie[1]} << 32);

  size_t off = Align4(sizeof(inet_diag_msg));
  while (off + sizeof(rtattr) <= len) {
    rtattr a = Load<rtattr>(p + off);
    if (a.rta_len < sizeof(rtattr) || off + a.rta_len > len) {
      ++r.bad_messages;
      break;
    }
    if (a.rta_type == INET_DIAG_INFO) {
      const uint8_t* info = p + off + RTA_LENGTH(0);
      size_t info_len = a.rta_len - RTA_LENGTH(0);
      // Older kernels send a shorter tcp_info: take only what is there.
      if (info_len >= offsetof(tcp_info, tcpi_bytes_acked) + sizeof(uint64_t))
        s.bytes_acked = Load<uint64_t>(info + offsetof(tcp_info, tcpi_bytes_acked));
      if (info_len >= offsetof(tcp_info, tcpi_bytes_received) + sizeof(uint64_t))
        s.bytes_received = Load<uint64_t>(info + offsetof(tcp_info, tcpi_bytes_received));
      if (info_len >= offsetof(tcp_info, tcpi_total_retrans) + sizeof(uint32_t))
        s.total_retrans = Load<uint32_t>(info + offsetof(tcp_info, tcpi_total_retrans));
      if (info_len >= offsetof(tcp_info, tcpi_rtt) + sizeof(uint32_t))
        s.rtt_us = Load<uint32_t>(info + offsetof(tcp_info, tcpi_rtt));
      if (info_len >= offsetof(tcp_info, tcpi_min_rtt) + sizeof(uint32_t)) {
        const uint32_t min = Load<uint32_t>(info + offsetof(tcp_info, tcpi_min_rtt));
        s.min_rtt_us = min == ~0U ? 0 : min;  // ~0U: no sample yet
      }
    }
    off += Align4(a.rta_len);
  }
  out.push_back(s);
}

}  // namespace

std::vector<uint8_t> BuildTcpDiagRequest(uint8_t family, uint32_t state_mask, uint32_t seq) {
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof(msg);
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.nlh.nlmsg_seq = seq;
  msg.req.sdiag_family = family;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = state_mask;
  msg.req.idiag_ext = 1 << (INET_DIAG_INFO - 1);
  std::vector<uint8_t> bytes(sizeof(msg));
  std::memcpy(bytes.data(), &msg, sizeof(msg));
  return bytes;
}

DiagReply ParseTcpDiagDatagram(absl::Span<const uint8_t> buf, std::vector<DiagSock>& out) {
  DiagReply r;
  size_t off = 0;
  while (off + sizeof(nlmsghdr) <= buf.size()) {
    nlmsghdr h = Load<nlmsghdr>(buf.data() + off);
    if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > buf.size() - off) {
      ++r.bad_messages;
      return r;  // cannot find the next header
    }
    const uint8_t* payload = buf.data() + off + NLMSG_HDRLEN;
    size_t payload_len = h.nlmsg_len - NLMSG_HDRLEN;
    switch (h.nlmsg_type) {
      case NLMSG_DONE:
        r.status = DiagParse::kDone;
        return r;
      case NLMSG_ERROR: {
        r.status = DiagParse::kError;
        // The kernel sends -errno; anything else (found by the fuzzer:
        // INT_MIN, whose negation overflows) is a protocol error.
        int e = payload_len >= sizeof(nlmsgerr) ? Load<nlmsgerr>(payload).error : 0;
        r.error = e < 0 && e > -4096 ? -e : EPROTO;
        return r;
      }
      case SOCK_DIAG_BY_FAMILY:
        ParseSock(payload, payload_len, out, r);
        break;
      default:
        break;  // NLMSG_NOOP and friends
    }
    off += NLMSG_ALIGN(h.nlmsg_len);
  }
  if (off != buf.size() && off < buf.size()) ++r.bad_messages;
  return r;
}

}  // namespace svcmap::scan
