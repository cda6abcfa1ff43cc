#include "svcmap/flow/collector.h"

namespace svcmap::flow {

bool Collector::IsServer(const SockRecord& s) const {
  return listeners_.IsListenPort(s.netns, s.local_port);
}

void Collector::OnEvent(const SockEvent& ev) {
  const SockRecord& s = ev.sock;
  ++event_counts_[static_cast<size_t>(ev.type)];
  if (s.owner.process.pid != 0) processes_.Observe(s.owner);
  auto is_server = [this](const SockRecord& r) { return IsServer(r); };
  switch (ev.type) {
    case EventType::kListen:
      listeners_.Add(Listener{s.netns, s.local_ip, s.local_port, s.owner, ev.ts_ns});
      break;
    case EventType::kConnect:
    case EventType::kAccept:
      break;  // live until closed: counted from the kernel's live table
    case EventType::kClose:
      if (nat_lookup_ && s.established && FlowTable::EffectiveRole(s, is_server) == Role::kClient) {
        SockRecord translated = s;
        nat_lookup_(translated);
        flows_.AddClosed(translated, ev.ts_ns, is_server);
      } else {
        flows_.AddClosed(s, ev.ts_ns, is_server);
      }
      break;
  }
}

Collector::Result Collector::View(absl::Span<const SockRecord> live, uint64_t now_ns) {
  for (const SockRecord& s : live) {
    if (s.owner.process.pid != 0) processes_.Observe(s.owner);
    if (s.role == Role::kListener)
      listeners_.Add(Listener{s.netns, s.local_ip, s.local_port, s.owner, s.open_ns});
  }
  auto is_server = [this](const SockRecord& r) { return IsServer(r); };
  std::vector<SockRecord> translated;
  if (nat_lookup_) {
    translated.assign(live.begin(), live.end());
    for (SockRecord& s : translated)
      if (s.established && FlowTable::EffectiveRole(s, is_server) == Role::kClient) nat_lookup_(s);
    live = translated;
  }
  Result r{flows_.View(live, now_ns, is_server), listeners_.All()};
  // The next live read is newer than this one, and a socket closed before
  // this read was not in it: a close older than now, minus a margin for
  // event timestamps taken a little before the read, can never race again.
  // Without this a long-running agent keeps one id per closed socket.
  constexpr uint64_t kRaceMarginNs = 10'000'000'000;
  if (now_ns > kRaceMarginNs) flows_.ForgetClosedBefore(now_ns - kRaceMarginNs);
  return r;
}

}  // namespace svcmap::flow
