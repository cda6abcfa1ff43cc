#ifndef SVCMAP_NAT_CONNTRACK_H_
#define SVCMAP_NAT_CONNTRACK_H_

// Where a connection really went: the kernel's conntrack table, asked over
// netlink (libnetfilter_conntrack) in the socket's own network namespace.
// A DNAT (a Kubernetes ClusterIP, an nftables or iptables rule,
// docker-proxy's) leaves the client socket with the address it dialled;
// conntrack's reply tuple has the backend's.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "svcmap/flow/ip_addr.h"
#include "svcmap/flow/sock.h"

struct nfct_handle;

namespace svcmap::nat {

struct Endpoint {
  flow::IpAddr ip;
  uint16_t port = 0;
  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

struct ResolverStats {
  uint64_t lookups = 0;      // netlink queries made
  uint64_t translated = 0;   // answers that named another destination
  uint64_t failures = 0;     // no entry, or no conntrack in that netns
};

// Thread-safe. Each destination is looked up until one of its connections
// shows no translation; it is then taken as not translated for `negative_ttl`
// (DNAT rules match on the destination, so its other connections are not
// either), which keeps the cost of plain traffic to one query per
// destination and period. Known() answers from that cache without ever
// blocking (the drain thread asks it); Resolve() asks the kernel, and only
// one query runs at a time, outside the cache's lock.
class ConntrackResolver {
 public:
  explicit ConntrackResolver(absl::Duration negative_ttl = absl::Seconds(60));
  ~ConntrackResolver();
  ConntrackResolver(const ConntrackResolver&) = delete;
  ConntrackResolver& operator=(const ConntrackResolver&) = delete;

  // The real destination of the client socket `s` if conntrack says it was
  // translated, else nullopt (not translated, or nothing known).
  std::optional<Endpoint> Resolve(const flow::SockRecord& s);
  // True when `s` needs no query: its destination is known not to be
  // translated (or cannot be: loopback, unspecified). Never blocks on I/O.
  bool KnownPlain(const flow::SockRecord& s);
  // Closes the handles, and forgets the answers, of every namespace not in
  // `alive`: an open netlink socket keeps its namespace from being freed.
  void Prune(const std::vector<uint32_t>& alive);
  size_t handles() const;
  size_t answers() const;
  ResolverStats Stats() const;

 private:
  struct HandleDeleter {
    void operator()(nfct_handle* h) const;
  };
  using Handle = std::unique_ptr<nfct_handle, HandleDeleter>;
  // The netlink handle for a netns, opened in it on first use; null when
  // the netns has no conntrack (or is gone).
  nfct_handle* HandleFor(uint32_t netns);
  std::optional<Endpoint> Query(nfct_handle* h, const flow::SockRecord& s);

  const absl::Duration negative_ttl_;
  mutable std::mutex query_mu_;  // the handles and the netlink queries
  absl::flat_hash_map<uint32_t, Handle> handles_;  // guarded by query_mu_
  mutable std::mutex mu_;  // the caches and the counts
  // (netns, destination) -> until when it is taken as not translated.
  absl::flat_hash_map<std::pair<uint32_t, std::string>, absl::Time> plain_;
  ResolverStats stats_;
};

}  // namespace svcmap::nat

#endif  // SVCMAP_NAT_CONNTRACK_H_
