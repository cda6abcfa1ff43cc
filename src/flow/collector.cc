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

Collector::Result Collector::View(absl::Span<const SockRecord> live, uint64_t now_ns,
                                  bool collapse_src_ports) {
  absl::StatusOr<Result> r = ViewLive(
      [&](const std::function<void(const SockRecord&)>& fn) {
        for (const SockRecord& s : live) fn(s);
        return absl::OkStatus();
      },
      now_ns, collapse_src_ports);
  return *std::move(r);  // the source above never fails
}

absl::StatusOr<Collector::Result> Collector::ViewLive(const LiveSource& source, uint64_t now_ns,
                                                      bool collapse_src_ports) {
  auto is_server = [this](const SockRecord& r) { return IsServer(r); };
  FlowTable::ViewOptions options;
  options.collapse_src_ports = collapse_src_ports;
  options.nat = nat_lookup_;
  FlowView view = flows_.StartView(options);
  // A socket whose role the hooks did not see is a server if its port is a
  // listening one, and listeners may come later in the same read: those
  // few wait for the end.
  std::vector<SockRecord> unknown;
  absl::Status status = source([&](const SockRecord& s) {
    if (s.owner.process.pid != 0) processes_.Observe(s.owner);
    if (s.role == Role::kListener)
      listeners_.Add(Listener{s.netns, s.local_ip, s.local_port, s.owner, s.open_ns});
    if (s.role == Role::kUnknown)
      unknown.push_back(s);
    else
      flows_.AddLive(view, s, now_ns, is_server, options);
  });
  if (!status.ok()) return status;
  for (const SockRecord& s : unknown) flows_.AddLive(view, s, now_ns, is_server, options);
  Result r{std::move(view), listeners_.All()};
  // The next live read is newer than this one, and a socket closed before
  // this read was not in it: a close older than now, minus a margin for
  // event timestamps taken a little before the read, can never race again.
  // Without this a long-running agent keeps one id per closed socket.
  constexpr uint64_t kRaceMarginNs = 10'000'000'000;
  if (now_ns > kRaceMarginNs) flows_.ForgetClosedBefore(now_ns - kRaceMarginNs);
  return r;
}

}  // namespace svcmap::flow
