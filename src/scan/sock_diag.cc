#include "svcmap/scan/sock_diag.h"

#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fmt/format.h"
#include "svcmap/scan/netns.h"

namespace svcmap::scan {
namespace {

// Kernel TCP states (include/net/tcp_states.h).
constexpr int kTimeWait = 6;
constexpr int kNewSynRecv = 12;

std::string ReadFile(const char* path, bool& ok) {
  std::ifstream in(path);
  ok = static_cast<bool>(in);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

absl::Status DumpFamily(int fd, uint8_t family, uint32_t mask, uint32_t seq,
                        std::vector<DiagSock>& out) {
  std::vector<uint8_t> req = BuildTcpDiagRequest(family, mask, seq);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, req.data(), req.size(), 0, reinterpret_cast<sockaddr*>(&kernel),
             sizeof(kernel)) < 0)
    return absl::UnavailableError(fmt::format("sock_diag send: {}", std::strerror(errno)));
  // Big enough that the kernel packs many sockets per datagram.
  std::vector<uint8_t> buf(256 << 10);
  for (int datagrams = 0; datagrams < 1'000'000; ++datagrams) {
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(fmt::format("sock_diag recv: {}", std::strerror(errno)));
    }
    DiagReply r = ParseTcpDiagDatagram(absl::MakeConstSpan(buf.data(), static_cast<size_t>(n)),
                                       out);
    if (r.status == DiagParse::kDone) return absl::OkStatus();
    if (r.status == DiagParse::kError)
      return absl::UnavailableError(fmt::format("sock_diag: {}", std::strerror(r.error)));
    if (n == 0) return absl::UnavailableError("sock_diag: connection closed mid-dump");
  }
  return absl::ResourceExhaustedError("sock_diag: dump did not end");
}

}  // namespace

uint32_t OwnedStatesMask() {
  uint32_t mask = 0;
  for (int s = 1; s <= 11; ++s)
    if (s != kTimeWait) mask |= 1u << s;
  (void)kNewSynRecv;
  return mask;
}

absl::StatusOr<std::vector<DiagSock>> DumpTcpSockets(uint32_t state_mask) {
  Fd fd(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (fd.get() < 0)
    return absl::UnavailableError(fmt::format("netlink socket: {}", std::strerror(errno)));
  std::vector<DiagSock> out;
  for (uint8_t family : {uint8_t{AF_INET}, uint8_t{AF_INET6}}) {
    if (absl::Status s = DumpFamily(fd.get(), family, state_mask, family, out); !s.ok())
      return s;
  }
  return out;
}

std::optional<TcpOpens> ReadCurrentOpens() {
  bool ok = false;
  std::string snmp = ReadFile("/proc/thread-self/net/snmp", ok);
  if (!ok) return std::nullopt;
  absl::StatusOr<TcpOpens> opens = ParseSnmpTcp(snmp);
  if (!opens.ok()) return std::nullopt;
  return *opens;
}

absl::flat_hash_map<uint32_t, TcpOpens> ReadOpensByNetns() {
  absl::flat_hash_map<uint32_t, TcpOpens> out;
  for (const NetnsRef& ns : ListNetns().namespaces) {
    std::optional<TcpOpens> opens;
    if (RunInNetns(ns.path, [&] { opens = ReadCurrentOpens(); }).ok() && opens)
      out[ns.inode] = *opens;
  }
  return out;
}

NetnsSockets ReadCurrentNetns(bool use_diag) {
  NetnsSockets out;
  out.opens = ReadCurrentOpens();
  if (use_diag) {
    absl::StatusOr<std::vector<DiagSock>> socks = DumpTcpSockets(OwnedStatesMask());
    if (socks.ok()) {
      out.socks = std::move(*socks);
      out.source = "sock_diag";
      return out;
    }
    out.diag_error = std::string(socks.status().message());
  }
  out.source = "proc";
  for (bool v6 : {false, true}) {
    bool ok = false;
    std::string text =
        ReadFile(v6 ? "/proc/thread-self/net/tcp6" : "/proc/thread-self/net/tcp", ok);
    if (!ok) continue;
    ProcNetTcp parsed = ParseProcNetTcp(text, v6);
    out.bad_records += parsed.bad_lines;
    for (const DiagSock& e : parsed.entries)
      if (e.state != kTimeWait && e.state != kNewSynRecv) out.socks.push_back(e);
  }
  return out;
}

}  // namespace svcmap::scan
