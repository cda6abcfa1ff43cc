#include "svcmap/node/session.h"

#include <malloc.h>
#include <time.h>

#include <algorithm>

#include "fmt/format.h"
#include "svcmap/base/clock.h"
#include "svcmap/base/log.h"
#include "svcmap/export/observations.h"

namespace svcmap::node {

Frame::Frame(absl::Time taken_at, uint64_t boot_ns, int64_t realtime_minus_boottime_ns,
             bool per_connection, exporter::InstanceInfo instance, flow::ServiceGraph graph,
             exporter::SnapshotStats stats, exporter::Completeness completeness,
             exporter::Metrics metrics, uint64_t events, uint64_t drops,
             absl::flat_hash_map<uint32_t, uint64_t> opened)
    : taken_at_(taken_at),
      boot_ns_(boot_ns),
      rt_minus_bt_(realtime_minus_boottime_ns),
      per_connection_(per_connection),
      instance_(std::move(instance)),
      graph_(std::move(graph)),
      stats_(stats),
      completeness_(completeness),
      metrics_(std::move(metrics)),
      events_(events),
      drops_(drops),
      opened_(std::move(opened)) {}

const std::string& Frame::MetricsText() const {
  std::call_once(metrics_once_, [this] { metrics_text_ = exporter::MetricsText(metrics_); });
  return metrics_text_;
}

const std::string& Frame::SnapshotText() const {
  std::call_once(snapshot_once_, [this] { snapshot_text_ = SnapshotText(-1); });
  return snapshot_text_;
}

std::string Frame::SnapshotText(int indent) const {
  return exporter::SnapshotText(instance_, graph_, stats_, completeness_,
                                exporter::Clock{rt_minus_bt_}, indent);
}

const topology::Observations& Frame::Observations() const {
  std::call_once(observations_once_,
                 [this] { observations_ = exporter::ToObservations(instance_, graph_); });
  return observations_;
}

Session::Session(Passkey, std::unique_ptr<kernel::Backend> backend, identity::ServiceNamer namer,
                 std::unique_ptr<NodeIo> io, SessionOptions options)
    : options_(std::move(options)),
      backend_(std::move(backend)),
      io_(std::move(io)),
      collector_(options_.collector),
      namer_(std::move(namer)) {}

absl::StatusOr<std::unique_ptr<Session>> Session::Start(std::unique_ptr<kernel::Backend> backend,
                                                        identity::ServiceNamer namer,
                                                        std::unique_ptr<NodeIo> io,
                                                        SessionOptions options) {
  options.collector.netns = options.netns;
  auto s = std::make_unique<Session>(Passkey{}, std::move(backend), std::move(namer), std::move(io),
                                     std::move(options));
  Session* self = s.get();
  self->collector_.set_nat([self](const flow::SockRecord& r) { return self->io_->PeekNat(r); });
  // The addresses of the namespaces there are now, before the first frame
  // files anything under the node's.
  self->WorkOnce(/*force_netns=*/true);
  absl::Status started = self->backend_->Start(
      [self](absl::Span<const flow::SockEvent> events) { self->OnEvents(events); });
  if (!started.ok()) return started;
  self->worker_ = std::thread([self] { self->WorkLoop(); });
  self->framer_ = std::thread([self] { self->FrameLoop(); });
  return s;
}

Session::~Session() { Stop(); }

void Session::OnEvents(absl::Span<const flow::SockEvent> events) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const flow::SockEvent& ev : events) collector_.OnEvent(ev);
    // A new process is read from /proc at once, while it still has one
    // (the kernel side wakes the drain for its first event): one wake-up
    // per batch of new processes, not per event.
    if (!naming_woken_ && collector_.naming_requested()) wake = naming_woken_ = true;
  }
  if (wake) WakeWorker();
}

void Session::StopThreads() {
  {
    std::lock_guard<std::mutex> lock(frame_mu_);
    stopping_ = true;
  }
  frame_cv_.notify_all();
  if (framer_.joinable()) framer_.join();
  {
    std::lock_guard<std::mutex> lock(work_mu_);
    work_stop_ = true;
  }
  work_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void Session::Stop() {
  StopThreads();
  if (backend_) backend_->Stop();
}

void Session::SetNamer(identity::ServiceNamer namer) {
  {
    std::lock_guard<std::mutex> lock(namer_mu_);
    namer_ = std::move(namer);
    renamed_ = true;
  }
  WakeWorker();
}

void Session::set_health_hook(std::function<void(exporter::AgentHealth&)> hook) {
  std::lock_guard<std::mutex> lock(frame_mu_);
  health_hook_ = std::move(hook);
}

void Session::WakeWorker() {
  {
    std::lock_guard<std::mutex> lock(work_mu_);
    work_wake_ = true;
  }
  work_cv_.notify_one();
}

void Session::WorkLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(work_mu_);
      // The drain thread wakes us for new processes only (see OnEvent); NAT
      // lookups and exits are polled (a futex wake per event would cost it
      // more than the work).
      work_cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.work_poll),
                        [this] { return work_wake_ || work_stop_; });
      if (work_stop_) return;
      work_wake_ = false;
    }
    WorkOnce(false);
  }
}

bool Session::WorkOnce(bool force_netns) {
  std::lock_guard<std::mutex> step(step_mu_);
  bool did = false;
  const uint64_t now = BoottimeNs();

  // New rules: every process named again (CPU only, no I/O).
  {
    std::lock_guard<std::mutex> nl(namer_mu_);
    if (renamed_) {
      renamed_ = false;
      std::lock_guard<std::mutex> lock(mu_);
      collector_.RenameAll(
          [this](const flow::ProcessInfo& info) {
            identity::ServiceName n = namer_.Name({info.comm, info.exe, info.cmdline, info.cgroup});
            return std::pair{std::move(n.name), std::move(n.source)};
          },
          now);
      did = true;
    }
  }

  // Processes first seen (or exec'd) since the last pass: their facts from
  // /proc, named by the rules, outside the collector's lock.
  std::vector<flow::ProcessTable::Request> ask;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ask = collector_.TakeNamingRequests();
    naming_woken_ = false;
  }
  if (!ask.empty()) {
    std::vector<std::pair<flow::ProcessKey, flow::ProcessInfo>> named;
    std::vector<flow::Owner> unknown;
    named.reserve(ask.size());
    for (const auto& [o, forked_from] : ask) {
      identity::ProcessFacts facts = io_->ReadFacts(o.process);
      const bool gone = facts.cmdline.empty() && facts.exe.empty();
      // Gone already (a short-lived child): it ran its parent's program,
      // with its parent's arguments, in its parent's cgroup.
      if (gone && forked_from) facts = io_->ReadFacts(*forked_from);
      // Gone, and whose child is not known yet: its fork record may still
      // be in the ring buffer; asked again at the next pass.
      if (gone && !forked_from) {
        unknown.push_back(o);
        continue;
      }
      facts.comm = o.comm;
      identity::ServiceName n;
      {
        std::lock_guard<std::mutex> nl(namer_mu_);
        n = namer_.Name(facts);
      }
      named.emplace_back(o.process, flow::ProcessInfo{o.comm, std::move(facts.exe),
                                                      std::move(n.name), std::move(n.source),
                                                      std::move(facts.cmdline),
                                                      std::move(facts.cgroup)});
    }
    std::vector<flow::Owner> by_comm;  // asked enough: named by their comm
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [key, info] : named) collector_.Describe(key, std::move(info), now);
      for (const flow::Owner& o : unknown)
        if (!collector_.RetryNaming(o, BoottimeNs())) by_comm.push_back(o);
      // Asked again at the next poll, not at the next event.
      naming_woken_ = collector_.naming_requested();
    }
    named.clear();
    for (const flow::Owner& o : by_comm) {
      identity::ProcessFacts facts;
      facts.comm = o.comm;
      identity::ServiceName n;
      {
        std::lock_guard<std::mutex> nl(namer_mu_);
        n = namer_.Name(facts);
      }
      named.emplace_back(o.process, flow::ProcessInfo{o.comm, "", std::move(n.name),
                                                      std::move(n.source), "", ""});
    }
    if (!named.empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [key, info] : named) collector_.Describe(key, std::move(info), now);
    }
    did = true;
  }

  // Closes that wait for their real destination.
  std::vector<flow::SockRecord> nat;
  {
    std::lock_guard<std::mutex> lock(mu_);
    nat = collector_.TakeNatRequests();
  }
  if (!nat.empty()) {
    std::vector<flow::NatAnswer> answers;
    answers.reserve(nat.size());
    for (const flow::SockRecord& s : nat) answers.push_back(io_->ResolveNat(s));
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < nat.size(); ++i) collector_.ResolveClose(nat[i].key(), answers[i]);
    did = true;
  }

  // Processes without sockets: still running?
  std::vector<flow::ProcessKey> checks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    checks.swap(exit_checks_);
  }
  if (!checks.empty()) {
    std::vector<flow::ProcessKey> dead;
    for (const flow::ProcessKey& p : checks)
      if (!io_->Alive(p)) dead.push_back(p);
    std::lock_guard<std::mutex> lock(mu_);
    for (const flow::ProcessKey& p : dead) collector_.MarkExited(p);
    did = true;
  }

  // Pods come and go: their addresses, and what was held for the gone.
  const absl::Time t = absl::Now();
  if (force_netns || t - netns_at_ >= options_.netns_refresh) {
    absl::flat_hash_map<uint32_t, std::string> ips = io_->NetnsAddresses();
    io_->Prune();
    netns_at_ = t;
    std::lock_guard<std::mutex> lock(mu_);
    netns_ips_ = std::move(ips);
  }
  return did;
}

void Session::WaitForNames(absl::Duration wait) {
  const absl::Time deadline = absl::Now() + wait;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (collector_.pending_names() == 0) return;
    }
    // Naming on this thread, if the worker is not at it already; a few ms
    // apart, for what waits on the ring buffer (ProcessTable::Retry).
    WorkOnce(false);
    if (absl::Now() >= deadline) return;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

bool Session::LiveRead(uint64_t now_ns) {
  // May deliver events (a scan): the sink takes mu_, so not under it.
  if (absl::Status s = backend_->RefreshLive(); !s.ok())
    Log(LogLevel::kWarn, "live sockets: {}", std::string(s.message()));
  {
    std::lock_guard<std::mutex> lock(mu_);
    collector_.BeginLive(now_ns);
  }
  std::vector<flow::SockRecord> chunk, need_nat;
  chunk.reserve(options_.live_chunk);
  // A chunk at a time under the lock, so that the drain thread waits for
  // one chunk at most, never for the whole table.
  auto flush = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    for (const flow::SockRecord& s : chunk) collector_.AddLive(s, need_nat);
    chunk.clear();
  };
  absl::Status read = backend_->ForEachLive([&](const flow::SockRecord& r) {
    chunk.push_back(r);
    if (chunk.size() >= options_.live_chunk) flush();
  });
  flush();
  if (!read.ok()) Log(LogLevel::kWarn, "live sockets: {}", std::string(read.message()));
  {
    std::lock_guard<std::mutex> lock(mu_);
    collector_.FinishLive(need_nat);
  }
  // New client sockets to destinations the NAT caches do not know: asked
  // here, on the frame thread, outside the lock.
  std::vector<flow::NatAnswer> answers;
  answers.reserve(need_nat.size());
  for (const flow::SockRecord& s : need_nat) answers.push_back(io_->ResolveNat(s));
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < need_nat.size(); ++i) collector_.AddLiveResolved(need_nat[i], answers[i]);
  collector_.EndLive(read.ok());
  return read.ok();
}

std::shared_ptr<const Frame> Session::BuildFrame(bool per_connection, bool live_read) {
  const absl::Time taken = absl::Now();
  const uint64_t now = BoottimeNs();
  if (live_read) LiveRead(now);
  // Processes seen first by this read or by the events before it are in
  // this frame, unless the describer is far behind.
  WaitForNames(options_.naming_wait);

  flow::ServiceGraph graph;
  flow::Housekeeping gone;
  flow::CollectorSizes sizes;
  flow::CollectorCounts counts;
  std::array<uint64_t, flow::kEventTypes> events{};
  absl::flat_hash_map<uint32_t, uint64_t> opened;
  bool checks = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    graph = collector_.Graph({options_.netns, options_.instance.instance_ip, netns_ips_},
                             per_connection);
    // After the graph, so that the ledgers see what went before it goes.
    gone = collector_.Housekeep(now, static_cast<uint64_t>(absl::ToInt64Nanoseconds(options_.idle_timeout)),
                                options_.retire);
    if (options_.retire) {
      std::vector<flow::ProcessKey> c = collector_.ExitCandidates(now);
      exit_checks_.insert(exit_checks_.end(), c.begin(), c.end());
      checks = !exit_checks_.empty();
    }
    sizes = collector_.Sizes();
    counts = collector_.Counts();
    events = collector_.event_counts();
    if (options_.collector.flows.count_opens) opened = collector_.Opened();
  }
  if (checks) WakeWorker();
  expired_flows_ += gone.expired_flows;
  exporter::Account(graph, gone, now, ledgers_);

  const kernel::BackendStats bs = backend_->Stats();
  exporter::AgentHealth h;
  h.backend = options_.instance.backend;
  uint64_t events_total = 0;
  for (size_t t = 0; t < events.size(); ++t) {
    h.events[std::string(flow::EventTypeName(static_cast<flow::EventType>(t)))] = events[t];
    events_total += events[t];
  }
  h.ringbuf_drops = bs.ringbuf_drops;
  h.socks_full = bs.socks_full;
  h.track_errors = bs.track_errors;
  h.recursion_misses = bs.recursion_misses;
  h.decode_errors = bs.decode_errors;
  h.scan_errors = bs.scan_errors;
  h.traffic_overflow = counts.traffic_overflow;
  h.flows = sizes.flows.flows;
  h.expired_flows = expired_flows_;
  h.accounting = {{"duplicate_close", counts.duplicate_closes},
                  {"lost_close", counts.lost_closes},
                  {"lost_listener", counts.lost_listeners},
                  {"named_overdue", counts.named_overdue},
                  {"renamed", counts.renamed},
                  {"retired", counts.retired},
                  {"evicted", counts.evicted},
                  {"nat_skipped", counts.nat_skipped},
                  {"connect_end_unseen", bs.connect_end_unseen},
                  {"established_unseen", bs.established_unseen}};
  h.tables = {{"processes", sizes.processes},
              {"processes_pending", sizes.pending_processes},
              {"process_tombstones", sizes.process_tombstones},
              {"process_forks", sizes.forks},
              {"listeners", sizes.listeners},
              {"live_sockets", sizes.flows.live_sockets},
              {"flows", sizes.flows.flows},
              {"closed_socket_ids", sizes.flows.closed_ids},
              {"traffic_rows", sizes.flows.traffic_rows},
              {"traffic_series", sizes.flows.traffic_series},
              {"parked_closes", sizes.parked_closes},
              {"connection_series", ledgers_.connections.series().size()},
              {"connection_contributors", ledgers_.connections.contributors()},
              {"accepted_series", ledgers_.accepted.series().size()},
              {"accepted_contributors", ledgers_.accepted.contributors()},
              {"traffic_contributors", ledgers_.traffic.contributors()}};
  for (auto& t : io_->TableSizes()) h.tables.push_back(std::move(t));
  std::function<void(exporter::AgentHealth&)> hook;
  {
    std::lock_guard<std::mutex> lock(frame_mu_);
    hook = health_hook_;
  }
  if (hook) hook(h);
  const int64_t rt = RealtimeMinusBoottimeNs();
  exporter::Metrics metrics =
      exporter::BuildMetrics(graph, ledgers_, options_.instance.instance_ip, h, options_.metrics, rt);

  exporter::SnapshotStats stats;
  stats.ringbuf_drops = bs.ringbuf_drops;
  stats.socks_full = bs.socks_full;
  stats.decode_errors = bs.decode_errors;
  stats.tcp_corrected = bs.tcp_corrected;
  stats.traffic_overflow = counts.traffic_overflow;
  stats.unowned_closes = bs.unowned_close;
  stats.track_errors = bs.track_errors;
  stats.recursion_misses = bs.recursion_misses;
  stats.connect_ends_unseen = bs.connect_end_unseen;
  stats.established_unseen = bs.established_unseen;
  stats.seeded_sockets = bs.seeded_sockets;
  stats.seeded_listeners = bs.seeded_listeners;
  stats.seed_unowned = bs.seed_unowned;
  stats.seed_rescued = bs.seed_rescued;
  stats.scans = bs.scans;
  stats.scan_errors = bs.scan_errors;
  exporter::InstanceInfo inst = options_.instance;
  inst.duration_s = absl::ToDoubleSeconds(taken - started_);
  auto frame = std::make_shared<const Frame>(taken, now, rt, per_connection, std::move(inst),
                                             std::move(graph), stats, exporter::Completeness{},
                                             std::move(metrics), events_total,
                                             bs.ringbuf_drops + bs.socks_full, std::move(opened));
  last_frame_unix_ns_.store(absl::GetCurrentTimeNanos(), std::memory_order_relaxed);
  return frame;
}

void Session::FrameLoop() {
  for (;;) {
    bool per_connection;
    {
      std::unique_lock<std::mutex> lock(frame_mu_);
      auto asked = [this] { return want_frame_ || stopping_; };
      if (options_.housekeeping == absl::InfiniteDuration())
        frame_cv_.wait(lock, asked);
      else
        frame_cv_.wait_for(lock, absl::ToChronoNanoseconds(options_.housekeeping), asked);
      if (stopping_) return;
      per_connection = want_per_connection_;
      want_frame_ = false;
      want_per_connection_ = false;
    }
    std::shared_ptr<const Frame> f = BuildFrame(per_connection, true);
    {
      std::lock_guard<std::mutex> lock(frame_mu_);
      latest_ = std::move(f);
    }
    frame_cv_.notify_all();
    // What building it took (a view of every socket) goes back to the
    // system, not into the arena's high-water mark.
    malloc_trim(0);
  }
}

std::shared_ptr<const Frame> Session::FrameAfter(absl::Time not_before, bool per_connection) {
  std::unique_lock<std::mutex> lock(frame_mu_);
  auto good = [&] {
    return latest_ && latest_->taken_at() >= not_before &&
           (!per_connection || latest_->per_connection());
  };
  while (!good() && !stopping_) {
    // Asked again after every frame that was not the one: the frame thread
    // takes the request flags when it starts a frame.
    want_frame_ = true;
    want_per_connection_ = want_per_connection_ || per_connection;
    frame_cv_.notify_all();
    frame_cv_.wait(lock);
  }
  return good() ? latest_ : nullptr;
}

std::shared_ptr<const Frame> Session::Latest() const {
  std::lock_guard<std::mutex> lock(frame_mu_);
  return latest_;
}

std::shared_ptr<const Frame> Session::Finish() {
  StopThreads();
  // Open sockets first, then the rest of the ring: a socket that closed in
  // between counts once, by its close.
  LiveRead(BoottimeNs());
  backend_->Stop();
  // Everything queued answered: names, NATs. A gone process whose parent
  // is unknown is named by its comm once its retry window has passed.
  const absl::Time deadline =
      absl::Now() + options_.naming_wait + absl::Nanoseconds(options_.collector.naming_retry_ns);
  for (;;) {
    WorkOnce(false);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (collector_.pending_names() == 0 && collector_.Sizes().parked_closes == 0) break;
    }
    if (absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  std::shared_ptr<const Frame> f = BuildFrame(true, false);
  std::lock_guard<std::mutex> lock(frame_mu_);
  latest_ = f;
  return f;
}

exporter::Completeness CompletenessOf(const absl::flat_hash_map<uint32_t, scan::TcpOpens>& before,
                                      const absl::flat_hash_map<uint32_t, scan::TcpOpens>& after,
                                      const absl::flat_hash_map<uint32_t, uint64_t>& seen,
                                      std::optional<uint32_t> netns) {
  exporter::Completeness c;
  for (const auto& [ino, a] : after) {
    if (netns && ino != *netns) continue;
    c.known = true;
    auto b = before.find(ino);
    const scan::TcpOpens from = b != before.end() ? b->second : scan::TcpOpens{};
    // Counters only grow; a smaller one is another namespace that reused
    // the inode, counted from zero.
    c.active_opens += a.active_opens >= from.active_opens ? a.active_opens - from.active_opens
                                                          : a.active_opens;
    c.passive_opens += a.passive_opens >= from.passive_opens ? a.passive_opens - from.passive_opens
                                                             : a.passive_opens;
    if (auto it = seen.find(ino); it != seen.end()) c.seen += it->second;
  }
  return c;
}

SessionHealth Session::Health() const {
  SessionHealth h;
  const absl::Time now = absl::Now();
  kernel::Backend::Progress p = backend_->DrainProgress();
  h.drain_running = p.running;
  h.since_drain = p.last == absl::InfinitePast() ? absl::InfiniteDuration() : now - p.last;
  int64_t f = last_frame_unix_ns_.load(std::memory_order_relaxed);
  h.since_frame = f == 0 ? absl::InfiniteDuration() : now - absl::FromUnixNanos(f);
  h.ready = Latest() != nullptr;
  return h;
}

}  // namespace svcmap::node
