#ifndef SVCMAP_FLOW_LISTEN_TABLE_H_
#define SVCMAP_FLOW_LISTEN_TABLE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "svcmap/flow/sock.h"

namespace svcmap::flow {

struct Listener {
  SockKey sock;  // the listening socket
  uint32_t netns = 0;
  IpAddr ip;
  uint16_t port = 0;
  Owner owner;
  uint64_t since_ns = 0;
};

// Listening sockets that are open now: {netns, ip, port} -> the process
// listening there. A wildcard listener (0.0.0.0 or ::) answers for every
// address of its namespace. A listener goes when its socket closes, so a
// port given up is no longer claimed; one whose close was lost goes when a
// complete live read no longer lists it.
class ListenTable {
 public:
  // The same socket again replaces its entry (a newer owner, say).
  void Add(const Listener& l);
  // False if it was not listed.
  bool Remove(const SockKey& sock);
  // The most specific listener for a local endpoint: exact address first,
  // then the wildcard; of several sockets on one endpoint
  // (SO_REUSEPORT), the latest.
  const Listener* Find(uint32_t netns, const IpAddr& ip, uint16_t port) const;
  bool IsListenPort(uint32_t netns, uint16_t port) const;
  bool HasProcess(const ProcessKey& p) const { return by_process_.contains(p); }
  std::vector<Listener> All() const;
  size_t size() const { return by_sock_.size(); }

  // A live read: Add() everything it lists between the two; with
  // `complete`, the listeners it did not list (and no event added since
  // BeginLive) are removed. Returns how many.
  void BeginLive() { ++gen_; }
  size_t EndLive(bool complete);

 private:
  struct Endpoint {
    uint32_t netns;
    IpAddr ip;
    uint16_t port;
    friend bool operator==(const Endpoint&, const Endpoint&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Endpoint& k) {
      return H::combine(std::move(h), k.netns, k.ip, k.port);
    }
  };
  struct Entry {
    Listener l;
    uint32_t seen_gen = 0;
  };
  absl::flat_hash_map<SockKey, Entry> by_sock_;
  // Sockets on each endpoint, oldest first.
  absl::flat_hash_map<Endpoint, std::vector<SockKey>> by_endpoint_;
  absl::flat_hash_map<std::pair<uint32_t, uint16_t>, int> ports_;
  absl::flat_hash_map<ProcessKey, int> by_process_;
  uint32_t gen_ = 0;
};

}  // namespace svcmap::flow

#endif  // SVCMAP_FLOW_LISTEN_TABLE_H_
