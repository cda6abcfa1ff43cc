#include "svcmap/flow/listen_table.h"

namespace svcmap::flow {

void ListenTable::Add(const Listener& l) {
  auto [it, inserted] = by_endpoint_.insert_or_assign(Key{l.netns, l.ip, l.port}, l);
  if (inserted) ++ports_[{l.netns, l.port}];
}

const Listener* ListenTable::Find(uint32_t netns, const IpAddr& ip,
                                  uint16_t port) const {
  if (auto it = by_endpoint_.find(Key{netns, ip, port}); it != by_endpoint_.end())
    return &it->second;
  // A dual-stack "::" listener also answers IPv4, so try both wildcards.
  for (const IpAddr& any : {IpAddr(), *IpAddr::Parse("::")}) {
    if (auto it = by_endpoint_.find(Key{netns, any, port}); it != by_endpoint_.end())
      return &it->second;
  }
  return nullptr;
}

bool ListenTable::IsListenPort(uint32_t netns, uint16_t port) const {
  return ports_.contains({netns, port});
}

std::vector<Listener> ListenTable::All() const {
  std::vector<Listener> out;
  out.reserve(by_endpoint_.size());
  for (const auto& [key, l] : by_endpoint_) out.push_back(l);
  return out;
}

}  // namespace svcmap::flow
