#include "svcmap/app/host_info.h"
#include "svcmap/scan/netns.h"
#include "svcmap/scan/netns_addr.h"

#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <thread>

#include "fmt/format.h"
#include "svcmap/flow/ip_addr.h"
#include "svcmap/kernel/libbpf_error.h"

namespace svcmap::app {
namespace {

absl::StatusOr<std::string> FirstAddressHere() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0)
    return absl::InternalError(fmt::format("getifaddrs: {}", kernel::ErrnoText(errno)));
  std::string v4, v6;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || (i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP))
      continue;
    if (i->ifa_addr->sa_family == AF_INET && v4.empty()) {
      auto* sin = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
      v4 = flow::IpAddr::FromKernel(AF_INET, reinterpret_cast<const uint8_t*>(&sin->sin_addr))
               .ToString();
    } else if (i->ifa_addr->sa_family == AF_INET6 && v6.empty()) {
      auto* sin6 = reinterpret_cast<const sockaddr_in6*>(i->ifa_addr);
      if (IN6_IS_ADDR_LINKLOCAL(&sin6->sin6_addr)) continue;
      v6 = flow::IpAddr::FromKernel(AF_INET6,
                                    reinterpret_cast<const uint8_t*>(&sin6->sin6_addr))
               .ToString();
    }
  }
  freeifaddrs(list);
  if (!v4.empty()) return v4;
  if (!v6.empty()) return v6;
  return absl::NotFoundError("no non-loopback address");
}

}  // namespace

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

std::string MachineName(const std::string& netns_path) {
  if (netns_path.empty()) return Hostname();
  size_t slash = netns_path.find_last_of('/');
  return Hostname() + "/" + (slash == std::string::npos ? netns_path : netns_path.substr(slash + 1));
}

absl::StatusOr<uint32_t> NetnsInode(const std::string& path) {
  std::string p = path.empty() ? "/proc/self/ns/net" : path;
  struct stat st {};
  if (stat(p.c_str(), &st) != 0)
    return absl::NotFoundError(fmt::format("network namespace {}: {}", p, kernel::ErrnoText(errno)));
  return static_cast<uint32_t>(st.st_ino);
}

absl::StatusOr<std::string> FirstAddress(const std::string& netns_path) {
  if (netns_path.empty()) return FirstAddressHere();
  absl::StatusOr<std::string> result = absl::UnknownError("not run");
  std::thread worker([&] {
    int fd = open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      result = absl::NotFoundError(
          fmt::format("open {}: {}", netns_path, kernel::ErrnoText(errno)));
      return;
    }
    // setns() moves only this thread; it ends right after. It needs
    // CAP_SYS_ADMIN; without it (the systemd unit's capability set) the
    // addresses are asked over rtnetlink, which needs only CAP_NET_ADMIN.
    if (setns(fd, CLONE_NEWNET) != 0) {
      const int err = errno;
      absl::StatusOr<std::vector<std::string>> ips = scan::NetnsAddressesOverNetlink(netns_path);
      if (ips.ok() && !ips->empty())
        result = ips->front();
      else if (ips.ok())
        result = absl::NotFoundError("no non-loopback address");
      else
        result = absl::PermissionDeniedError(fmt::format(
            "enter {}: {}; rtnetlink: {}", netns_path, kernel::ErrnoText(err),
            std::string(ips.status().message())));
    } else {
      result = FirstAddressHere();
    }
    close(fd);
  });
  worker.join();
  return result;
}

absl::flat_hash_map<uint32_t, std::string> NetnsAddresses() {
  absl::flat_hash_map<uint32_t, std::string> out;
  absl::StatusOr<uint32_t> own = NetnsInode("");
  for (const scan::NetnsRef& ns : scan::ListNetns().namespaces) {
    if (own.ok() && ns.inode == *own) continue;
    // A namespace that vanished or has only loopback keeps the node's.
    if (absl::StatusOr<std::string> ip = FirstAddress(ns.path); ip.ok()) out[ns.inode] = *ip;
  }
  return out;
}

}  // namespace svcmap::app
