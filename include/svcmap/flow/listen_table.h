#ifndef SVCMAP_FLOW_LISTEN_TABLE_H_
#define SVCMAP_FLOW_LISTEN_TABLE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "svcmap/flow/sock.h"

namespace svcmap::flow {

struct Listener {
  uint32_t netns = 0;
  IpAddr ip;
  uint16_t port = 0;
  Owner owner;
  uint64_t since_ns = 0;
};

// {netns, ip, port} -> the process listening there. A wildcard listener
// (0.0.0.0 or ::) answers for every address of its namespace.
class ListenTable {
 public:
  void Add(const Listener& l);
  // The most specific listener for a local endpoint: exact address first,
  // then the wildcard.
  const Listener* Find(uint32_t netns, const IpAddr& ip, uint16_t port) const;
  bool IsListenPort(uint32_t netns, uint16_t port) const;
  std::vector<Listener> All() const;

 private:
  struct Key {
    uint32_t netns;
    IpAddr ip;
    uint16_t port;
    friend bool operator==(const Key&, const Key&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.netns, k.ip, k.port);
    }
  };
  absl::flat_hash_map<Key, Listener> by_endpoint_;
  absl::flat_hash_map<std::pair<uint32_t, uint16_t>, int> ports_;
};

}  // namespace svcmap::flow

#endif  // SVCMAP_FLOW_LISTEN_TABLE_H_
