#include "svcmap/nat/conntrack.h"

#include <arpa/inet.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/container/flat_hash_set.h"
#include <vector>

#include "fmt/format.h"
#include "svcmap/scan/netns.h"

namespace svcmap::nat {
namespace {

struct Answer {
  bool found = false;
  Endpoint reply_src;  // where replies come from: the real destination
};

// NFCT_CB_CONTINUE, never STOP: stopping at the entry leaves the kernel's
// ack unread on the socket, and the next query then reads that ack as its
// (empty) answer; every other lookup failed that way.
int OnEntry(enum nf_conntrack_msg_type, struct nf_conntrack* ct, void* data) {
  auto* a = static_cast<Answer*>(data);
  const uint8_t l3 = nfct_get_attr_u8(ct, ATTR_L3PROTO);
  if (l3 == AF_INET) {
    uint32_t ip = nfct_get_attr_u32(ct, ATTR_REPL_IPV4_SRC);
    a->reply_src.ip = flow::IpAddr::FromKernel(AF_INET, reinterpret_cast<const uint8_t*>(&ip));
  } else if (l3 == AF_INET6) {
    const void* ip = nfct_get_attr(ct, ATTR_REPL_IPV6_SRC);
    if (ip == nullptr) return NFCT_CB_CONTINUE;
    a->reply_src.ip = flow::IpAddr::FromKernel(AF_INET6, static_cast<const uint8_t*>(ip));
  } else {
    return NFCT_CB_CONTINUE;
  }
  a->reply_src.port = ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_SRC));
  a->found = true;
  return NFCT_CB_CONTINUE;
}

std::string DestinationKey(const flow::SockRecord& s) {
  return fmt::format("{}:{}", s.remote_ip.ToString(), s.remote_port);
}

}  // namespace

void ConntrackResolver::HandleDeleter::operator()(nfct_handle* h) const {
  nfct_callback_unregister(h);
  nfct_close(h);
}

ConntrackResolver::ConntrackResolver(absl::Duration negative_ttl) : negative_ttl_(negative_ttl) {}
ConntrackResolver::~ConntrackResolver() = default;

nfct_handle* ConntrackResolver::HandleFor(uint32_t netns) {
  auto it = handles_.find(netns);
  if (it != handles_.end()) return it->second.get();
  // A netlink socket belongs to the netns it was created in: open it from a
  // thread that has joined that netns, then use it from any thread.
  Handle handle;
  for (const scan::NetnsRef& ns : scan::ListNetns().namespaces) {
    if (ns.inode != netns) continue;
    (void)scan::RunInNetns(ns.path, [&] { handle.reset(nfct_open(CONNTRACK, 0)); });
    break;
  }
  // Remembered even when null: a netns without conntrack is not asked again.
  return handles_.emplace(netns, std::move(handle)).first->second.get();
}

std::optional<Endpoint> ConntrackResolver::Query(nfct_handle* h, const flow::SockRecord& s) {
  struct CtDeleter {
    void operator()(nf_conntrack* c) const { nfct_destroy(c); }
  };
  std::unique_ptr<nf_conntrack, CtDeleter> ct(nfct_new());
  if (!ct) return std::nullopt;
  const bool v4 = s.local_ip.is_v4();
  nfct_set_attr_u8(ct.get(), ATTR_L3PROTO, v4 ? AF_INET : AF_INET6);
  if (v4) {
    uint32_t src, dst;
    std::memcpy(&src, s.local_ip.bytes().data(), 4);
    std::memcpy(&dst, s.remote_ip.bytes().data(), 4);
    nfct_set_attr_u32(ct.get(), ATTR_IPV4_SRC, src);
    nfct_set_attr_u32(ct.get(), ATTR_IPV4_DST, dst);
  } else {
    nfct_set_attr(ct.get(), ATTR_IPV6_SRC, s.local_ip.bytes().data());
    nfct_set_attr(ct.get(), ATTR_IPV6_DST, s.remote_ip.bytes().data());
  }
  nfct_set_attr_u8(ct.get(), ATTR_L4PROTO, IPPROTO_TCP);
  nfct_set_attr_u16(ct.get(), ATTR_PORT_SRC, htons(s.local_port));
  nfct_set_attr_u16(ct.get(), ATTR_PORT_DST, htons(s.remote_port));
  Answer answer;
  // Registered per query (the answer lives on this stack), and released:
  // each registration allocates, and registering again does not free.
  nfct_callback_register(h, NFCT_T_ALL, OnEntry, &answer);
  const int rc = nfct_query(h, NFCT_Q_GET, ct.get());
  nfct_callback_unregister(h);
  if (rc != 0 || !answer.found) return std::nullopt;
  return answer.reply_src;
}

bool ConntrackResolver::KnownPlain(const flow::SockRecord& s) {
  if (s.remote_port == 0 || s.remote_ip.IsUnspecified() || s.remote_ip.IsLoopback()) return true;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = plain_.find(std::pair{s.netns, DestinationKey(s)});
  return it != plain_.end() && it->second > absl::Now();
}

std::optional<Endpoint> ConntrackResolver::Resolve(const flow::SockRecord& s) {
  if (s.remote_port == 0 || s.remote_ip.IsUnspecified() || s.remote_ip.IsLoopback())
    return std::nullopt;
  const auto key = std::pair{s.netns, DestinationKey(s)};
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = plain_.find(key); it != plain_.end()) {
      if (it->second > absl::Now()) return std::nullopt;
      plain_.erase(it);
    }
  }
  // The socket's own namespace first; then ours, the node's: a pod's
  // connection to a ClusterIP is DNAT'd on the node (kube-proxy), and its
  // conntrack entry lives there, with the pod's address as its source. Our
  // own needs no setns(), which the agent's unit does not allow.
  static const uint32_t own = scan::NetnsInodeOf("/proc/self/ns/net");
  std::vector<uint32_t> order = {s.netns};
  if (own != 0 && own != s.netns) order.push_back(own);
  std::optional<Endpoint> reply;
  uint64_t lookups = 0, failures = 0;
  {
    std::lock_guard<std::mutex> q(query_mu_);
    for (uint32_t ns : order) {
      nfct_handle* h = HandleFor(ns);
      if (h == nullptr) continue;
      ++lookups;
      std::optional<Endpoint> r = Query(h, s);
      if (!r) {
        ++failures;
        continue;
      }
      reply = r;
      if (!(r->ip == s.remote_ip && r->port == s.remote_port)) break;  // translated
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  stats_.lookups += lookups;
  stats_.failures += failures;
  if (!reply) return std::nullopt;  // no entry: nothing learnt about the destination
  const absl::Time now = absl::Now();
  if (reply->ip == s.remote_ip && reply->port == s.remote_port) {
    plain_[key] = now + negative_ttl_;
    // Bounded: past a node's worth of destinations, the expired go.
    if (plain_.size() > 65536) absl::erase_if(plain_, [&](const auto& kv) { return kv.second <= now; });
    return std::nullopt;
  }
  ++stats_.translated;
  return reply;
}

void ConntrackResolver::Prune(const std::vector<uint32_t>& alive) {
  absl::flat_hash_set<uint32_t> keep(alive.begin(), alive.end());
  static const uint32_t own = scan::NetnsInodeOf("/proc/self/ns/net");
  keep.insert(own);
  {
    std::lock_guard<std::mutex> q(query_mu_);
    absl::erase_if(handles_, [&](const auto& kv) { return !keep.contains(kv.first); });
  }
  std::lock_guard<std::mutex> lock(mu_);
  const absl::Time now = absl::Now();
  absl::erase_if(plain_, [&](const auto& kv) {
    return kv.second <= now || !keep.contains(kv.first.first);
  });
}

size_t ConntrackResolver::handles() const {
  std::lock_guard<std::mutex> q(query_mu_);
  return handles_.size();
}

size_t ConntrackResolver::answers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return plain_.size();
}

ResolverStats ConntrackResolver::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace svcmap::nat
