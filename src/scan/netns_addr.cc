#include "svcmap/scan/netns_addr.h"

#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/net_namespace.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "fmt/format.h"
#include "svcmap/flow/ip_addr.h"

namespace svcmap::scan {
namespace {

// A NETLINK_ROUTE socket, closed on every way out.
class Rtnl {
 public:
  Rtnl() : fd_(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)) {
    if (fd_ >= 0) {
      timeval tv{2, 0};
      setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      // The kernel reads IFA_TARGET_NETNSID only from strictly checked
      // dumps (inet_valid_dump_ifaddr_req); otherwise it ignores it and
      // answers with our own namespace's addresses.
      int one = 1;
      setsockopt(fd_, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof(one));
    }
  }
  ~Rtnl() {
    if (fd_ >= 0) close(fd_);
  }
  Rtnl(const Rtnl&) = delete;
  Rtnl& operator=(const Rtnl&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

void AddAttr(std::vector<char>& msg, uint16_t type, const void* data, size_t len) {
  nlattr a{};
  a.nla_type = type;
  a.nla_len = static_cast<uint16_t>(NLA_HDRLEN + len);
  size_t at = msg.size();
  msg.resize(at + NLA_ALIGN(a.nla_len), 0);
  std::memcpy(msg.data() + at, &a, sizeof(a));
  std::memcpy(msg.data() + at + NLA_HDRLEN, data, len);
  reinterpret_cast<nlmsghdr*>(msg.data())->nlmsg_len = static_cast<uint32_t>(msg.size());
}

std::vector<char> Message(uint16_t type, uint16_t flags, const void* body, size_t len) {
  std::vector<char> msg(NLMSG_LENGTH(len), 0);
  auto* h = reinterpret_cast<nlmsghdr*>(msg.data());
  h->nlmsg_len = static_cast<uint32_t>(msg.size());
  h->nlmsg_type = type;
  h->nlmsg_flags = NLM_F_REQUEST | flags;
  h->nlmsg_seq = 1;
  std::memcpy(NLMSG_DATA(h), body, len);
  msg.resize(NLMSG_ALIGN(msg.size()), 0);  // moves the buffer: h is stale
  reinterpret_cast<nlmsghdr*>(msg.data())->nlmsg_len = static_cast<uint32_t>(msg.size());
  return msg;
}

absl::Status Send(const Rtnl& s, const std::vector<char>& msg) {
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(s.fd(), msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&kernel),
             sizeof(kernel)) < 0)
    return absl::UnavailableError(fmt::format("rtnetlink send: {}", std::strerror(errno)));
  return absl::OkStatus();
}

// Calls `fn` for each message of the answer until NLMSG_DONE (or the only
// message, for a plain request); an NLMSG_ERROR with an error fails.
template <typename Fn>
absl::Status Receive(const Rtnl& s, bool dump, Fn fn) {
  std::vector<char> buf(1 << 16);
  for (;;) {
    ssize_t n = recv(s.fd(), buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::UnavailableError(fmt::format("rtnetlink recv: {}", std::strerror(errno)));
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, static_cast<size_t>(n));
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE) return absl::OkStatus();
      if (h->nlmsg_type == NLMSG_ERROR) {
        const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        if (e->error == 0) return absl::OkStatus();
        return absl::PermissionDeniedError(fmt::format("rtnetlink: {}", std::strerror(-e->error)));
      }
      fn(h);
      if (!dump) return absl::OkStatus();
    }
  }
}

// The netns's nsid as seen from ours; one is assigned when it has none.
absl::StatusOr<int32_t> Nsid(const Rtnl& s, int netns_fd) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    rtgenmsg g{};
    g.rtgen_family = AF_UNSPEC;
    std::vector<char> get = Message(RTM_GETNSID, 0, &g, sizeof(g));
    uint32_t fd = static_cast<uint32_t>(netns_fd);
    AddAttr(get, NETNSA_FD, &fd, sizeof(fd));
    if (absl::Status st = Send(s, get); !st.ok()) return st;
    int32_t nsid = -1;
    absl::Status st = Receive(s, false, [&](const nlmsghdr* h) {
      if (h->nlmsg_type != RTM_NEWNSID) return;
      int len = static_cast<int>(h->nlmsg_len) - NLMSG_LENGTH(sizeof(rtgenmsg));
      for (auto* a = reinterpret_cast<const nlattr*>(static_cast<const char*>(NLMSG_DATA(h)) +
                                                     NLMSG_ALIGN(sizeof(rtgenmsg)));
           len >= static_cast<int>(NLA_HDRLEN) && a->nla_len >= NLA_HDRLEN && a->nla_len <= len;
           len -= NLA_ALIGN(a->nla_len),
           a = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(a) + NLA_ALIGN(a->nla_len)))
        if ((a->nla_type & NLA_TYPE_MASK) == NETNSA_NSID && a->nla_len >= NLA_HDRLEN + 4)
          std::memcpy(&nsid, reinterpret_cast<const char*>(a) + NLA_HDRLEN, 4);
    });
    if (!st.ok()) return st;
    if (nsid >= 0) return nsid;
    // None yet: ask the kernel to pick one (NETNSA_NSID -1), then read it.
    std::vector<char> set = Message(RTM_NEWNSID, NLM_F_ACK, &g, sizeof(g));
    AddAttr(set, NETNSA_FD, &fd, sizeof(fd));
    int32_t any = -1;
    AddAttr(set, NETNSA_NSID, &any, sizeof(any));
    if (absl::Status sent = Send(s, set); !sent.ok()) return sent;
    if (absl::Status acked = Receive(s, false, [](const nlmsghdr*) {}); !acked.ok()) return acked;
  }
  return absl::NotFoundError("no nsid for the namespace");
}

}  // namespace

absl::StatusOr<std::vector<std::string>> NetnsAddressesOverNetlink(const std::string& netns_path) {
  int netns_fd = open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (netns_fd < 0)
    return absl::NotFoundError(fmt::format("{}: {}", netns_path, std::strerror(errno)));
  Rtnl s;
  if (s.fd() < 0) {
    close(netns_fd);
    return absl::UnavailableError(fmt::format("rtnetlink socket: {}", std::strerror(errno)));
  }
  absl::StatusOr<int32_t> nsid = Nsid(s, netns_fd);
  close(netns_fd);
  if (!nsid.ok()) return nsid.status();

  ifaddrmsg ifa{};
  ifa.ifa_family = AF_UNSPEC;
  std::vector<char> dump = Message(RTM_GETADDR, NLM_F_DUMP, &ifa, sizeof(ifa));
  int32_t target = *nsid;
  AddAttr(dump, IFA_TARGET_NETNSID, &target, sizeof(target));
  if (absl::Status st = Send(s, dump); !st.ok()) return st;
  std::vector<std::string> v4, v6;
  absl::Status st = Receive(s, true, [&](const nlmsghdr* h) {
    if (h->nlmsg_type != RTM_NEWADDR) return;
    const auto* m = static_cast<const ifaddrmsg*>(NLMSG_DATA(h));
    if (m->ifa_scope != RT_SCOPE_UNIVERSE) return;  // host (loopback) and link scope
    int len = static_cast<int>(h->nlmsg_len) - NLMSG_LENGTH(sizeof(ifaddrmsg));
    const uint8_t* local = nullptr;
    const uint8_t* address = nullptr;
    for (auto* a = reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(m) +
                                                   NLMSG_ALIGN(sizeof(ifaddrmsg)));
         RTA_OK(a, len); a = RTA_NEXT(a, len)) {
      const size_t want = m->ifa_family == AF_INET ? 4 : 16;
      if (RTA_PAYLOAD(a) < want) continue;
      if (a->rta_type == IFA_LOCAL) local = static_cast<const uint8_t*>(RTA_DATA(a));
      if (a->rta_type == IFA_ADDRESS) address = static_cast<const uint8_t*>(RTA_DATA(a));
    }
    const uint8_t* bytes = local ? local : address;
    if (bytes == nullptr || (m->ifa_family != AF_INET && m->ifa_family != AF_INET6)) return;
    flow::IpAddr ip = flow::IpAddr::FromKernel(m->ifa_family, bytes);
    if (ip.IsLoopback()) return;
    (m->ifa_family == AF_INET ? v4 : v6).push_back(ip.ToString());
  });
  if (!st.ok()) return st;
  v4.insert(v4.end(), v6.begin(), v6.end());
  return v4;
}

}  // namespace svcmap::scan
