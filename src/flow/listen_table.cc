#include "svcmap/flow/listen_table.h"

#include <algorithm>

namespace svcmap::flow {

void ListenTable::Add(const Listener& l) {
  auto [it, inserted] = by_sock_.try_emplace(l.sock);
  if (!inserted) {
    // The same socket: its endpoint cannot change, its owner may.
    if (--by_process_[it->second.l.owner.process] == 0) by_process_.erase(it->second.l.owner.process);
  } else {
    by_endpoint_[Endpoint{l.netns, l.ip, l.port}].push_back(l.sock);
    ++ports_[{l.netns, l.port}];
  }
  it->second.l = l;
  it->second.seen_gen = gen_;
  ++by_process_[l.owner.process];
}

bool ListenTable::Remove(const SockKey& sock) {
  auto it = by_sock_.find(sock);
  if (it == by_sock_.end()) return false;
  const Listener& l = it->second.l;
  auto ep = by_endpoint_.find(Endpoint{l.netns, l.ip, l.port});
  if (ep != by_endpoint_.end()) {
    std::erase(ep->second, sock);
    if (ep->second.empty()) by_endpoint_.erase(ep);
  }
  auto port = ports_.find({l.netns, l.port});
  if (port != ports_.end() && --port->second == 0) ports_.erase(port);
  auto p = by_process_.find(l.owner.process);
  if (p != by_process_.end() && --p->second == 0) by_process_.erase(p);
  by_sock_.erase(it);
  return true;
}

size_t ListenTable::EndLive(bool complete) {
  if (!complete) return 0;
  std::vector<SockKey> gone;
  for (const auto& [sock, e] : by_sock_)
    if (e.seen_gen != gen_) gone.push_back(sock);
  for (const SockKey& s : gone) Remove(s);
  return gone.size();
}

const Listener* ListenTable::Find(uint32_t netns, const IpAddr& ip, uint16_t port) const {
  auto latest = [&](const IpAddr& at) -> const Listener* {
    auto it = by_endpoint_.find(Endpoint{netns, at, port});
    if (it == by_endpoint_.end() || it->second.empty()) return nullptr;
    return &by_sock_.at(it->second.back()).l;
  };
  if (const Listener* l = latest(ip)) return l;
  // A dual-stack "::" listener also answers IPv4, so try both wildcards.
  for (const IpAddr& any : {IpAddr(), *IpAddr::Parse("::")})
    if (const Listener* l = latest(any)) return l;
  return nullptr;
}

bool ListenTable::IsListenPort(uint32_t netns, uint16_t port) const {
  return ports_.contains({netns, port});
}

std::vector<Listener> ListenTable::All() const {
  std::vector<Listener> out;
  out.reserve(by_sock_.size());
  for (const auto& [sock, e] : by_sock_) out.push_back(e.l);
  return out;
}

}  // namespace svcmap::flow
