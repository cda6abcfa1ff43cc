#include "svcmap/app/commands.h"

#include <malloc.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <ctime>
#include <memory>
#include <map>
#include <mutex>
#include <thread>

#include "fmt/format.h"
#include "nlohmann/json.hpp"
#include "svcmap/app/host_info.h"
#include "svcmap/app/log.h"
#include "svcmap/export/remote_write.h"
#include "svcmap/app/trace_format.h"
#include "httplib.h"
#include "svcmap/export/metrics.h"
#include "svcmap/export/snapshot_json.h"
#include "svcmap/flow/collector.h"
#include "svcmap/flow/service_view.h"
#include "svcmap/kernel/feature_probe.h"
#include "svcmap/kernel/libbpf_error.h"
#include "svcmap/scan/process_facts.h"
#include "svcmap/kernel/bpf_backend.h"
#include "svcmap/kernel/procfs_backend.h"
#include "svcmap/scan/sock_diag.h"
#include "svcmap/nat/conntrack.h"
#include "svcmap/topology/graph.h"
#include "svcmap/topology/sources.h"
#include "svcmap/topology/writers.h"
#include "svcmap/app/map_page.h"
#include "svcmap/ui/top_view.h"
#include "absl/container/flat_hash_map.h"

namespace svcmap::app {
namespace {

using kernel::BpfBackend;

uint64_t BoottimeNs() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + ts.tv_nsec;
}

// Waits for SIGINT/SIGTERM (blocked by main) or for `d`. True if signalled.
bool WaitForSignal(absl::Duration d) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  absl::Time deadline = absl::Now() + d;
  for (;;) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    timespec ts = absl::ToTimespec(left);
    int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig == SIGINT || sig == SIGTERM) return true;
    if (sig < 0 && errno != EINTR && errno != EAGAIN) return false;
  }
}

// Like WaitForSignal, for the agent, which also takes SIGHUP: the signal
// that came, or 0 when `deadline` passed first.
int WaitForAgentSignal(absl::Time deadline) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  for (;;) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return 0;
    timespec ts = absl::ToTimespec(left);
    int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig > 0) return sig;
    if (errno != EINTR && errno != EAGAIN) return 0;
  }
}

int64_t RealtimeMs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

absl::Status CheckRoot() {
  if (geteuid() != 0)
    return absl::PermissionDeniedError(
        "must run as root: BPF needs CAP_BPF and CAP_PERFMON, and the scanner reads every "
        "process's /proc/<pid>/fd (try sudo)");
  return absl::OkStatus();
}

struct Opened {
  std::unique_ptr<kernel::Backend> backend;
  std::string name;  // "fentry", "tracepoint", "mixed", "procfs"
};

absl::StatusOr<Opened> OpenProcfs(const Options& o, std::string_view why) {
  if (!why.empty())
    fmt::print(stderr, "svcmap: no usable BPF ({}); using the /proc + sock_diag scanner\n", why);
  kernel::ProcfsOptions po;
  po.interval = o.scan_interval;
  po.use_sock_diag = o.scan_source != "proc";
  po.require_sock_diag = o.scan_source == "sock_diag";
  absl::StatusOr<std::unique_ptr<kernel::ProcfsBackend>> b = kernel::ProcfsBackend::Create(po);
  if (!b.ok()) return b.status();
  return Opened{*std::move(b), "procfs"};
}

// The backend --backend asks for. In auto mode, anything that keeps BPF
// from working (no BTF, the bpf syscall refused, no hook attached) falls
// back to the scanner; a forced BPF backend fails with the reason instead.
absl::StatusOr<Opened> OpenBackend(const Options& o, kernel::ProbeReport& report) {
  if (absl::Status s = CheckRoot(); !s.ok()) return s;
  const bool automatic = o.backend == "auto";
  if (o.backend == "procfs") return OpenProcfs(o, "");
  if (access(kernel::kBtfPath, R_OK) != 0) {
    std::string why = fmt::format("no kernel BTF at {}", kernel::kBtfPath);
    if (automatic) return OpenProcfs(o, why);
    return absl::FailedPreconditionError(fmt::format(
        "{}: the {} backend needs a kernel built with CONFIG_DEBUG_INFO_BTF=y", why, o.backend));
  }
  report = kernel::RunFeatureProbe();
  std::optional<kernel::Mechanism> form;
  if (o.tracepoint_form == "classic") form = kernel::Mechanism::kTracepoint;
  if (o.tracepoint_form == "tp_btf") form = kernel::Mechanism::kTpBtf;
  if (absl::Status s = kernel::SelectBackend(report, o.backend, form); !s.ok()) {
    if (automatic) return OpenProcfs(o, std::string(s.message()));
    return s;
  }
  kernel::BackendOptions bo;
  bo.max_sockets = o.max_sockets;
  bo.ringbuf_bytes = o.ringbuf_mib << 20;
  bo.wakeup_bytes = std::min<uint32_t>(bo.ringbuf_bytes / 16, 256u << 10);
  absl::StatusOr<std::unique_ptr<BpfBackend>> b = BpfBackend::Create(report, bo);
  if (!b.ok()) {
    if (automatic) return OpenProcfs(o, std::string(b.status().message()));
    return b.status();
  }
  if (!(*b)->seed_error().empty())
    fmt::print(stderr,
               "svcmap: warning: sockets opened before svcmap are only seen from their next "
               "I/O on: start-up seed failed: {}\n",
               (*b)->seed_error());
  return Opened{*std::move(b), report.backend};
}

nlohmann::ordered_json ProbeJson(const kernel::ProbeReport& r) {
  nlohmann::ordered_json hooks = nlohmann::ordered_json::array();
  for (const kernel::HookProbe& h : r.hooks) {
    nlohmann::ordered_json attempts = nlohmann::ordered_json::array();
    for (const kernel::Attempt& a : h.attempts) {
      attempts.push_back({{"mechanism", kernel::MechanismName(a.mechanism)},
                          {"target", a.target},
                          {"ok", a.ok},
                          {"used", h.chosen == a.mechanism},
                          {"reason", a.reason}});
    }
    hooks.push_back({{"hook", h.hook},
                     {"chosen", h.chosen ? std::string(kernel::MechanismName(*h.chosen)) : ""},
                     {"attempts", std::move(attempts)}});
  }
  return {{"kernel", r.kernel_release},
          {"btf", r.btf},
          {"tracefs", r.tracefs},
          {"backend", r.backend},
          {"backend_reason", r.backend_reason},
          {"hooks", std::move(hooks)},
          {"iterators",
           {{"tcp", {{"ok", r.iter_tcp.ok}, {"reason", r.iter_tcp.reason}}},
            {"task_file", {{"ok", r.iter_task_file.ok}, {"reason", r.iter_task_file.reason}}}}}};
}

// What the scanner would read here.
std::string ProcfsSource() {
  absl::StatusOr<std::vector<scan::DiagSock>> d = scan::DumpTcpSockets(1u << 10);
  if (d.ok()) return "sock_diag with tcp_info (bytes per socket)";
  return fmt::format("/proc/net/tcp only, no byte counts (sock_diag: {})",
                     std::string(d.status().message()));
}

absl::Status RunProbe(const Options& o) {
  if (geteuid() != 0)
    return absl::PermissionDeniedError(
        "must run as root: the probe loads BPF programs (try sudo)");
  kernel::ProbeReport r = kernel::RunFeatureProbe();
  if (o.json) {
    nlohmann::ordered_json doc = ProbeJson(r);
    doc["procfs"] = ProcfsSource();
    fmt::print("{}\n", doc.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    return absl::OkStatus();
  }
  fmt::print("kernel   {}\nBTF      {}\ntracefs  {}\n", r.kernel_release,
             r.btf ? "yes" : "no", r.tracefs ? "mounted" : "not mounted");
  for (const kernel::HookProbe& h : r.hooks) {
    fmt::print("\nhook {:<8} -> {}\n", h.hook,
               h.chosen ? kernel::MechanismName(*h.chosen) : "UNAVAILABLE");
    for (const kernel::Attempt& a : h.attempts) {
      fmt::print("  {:<10} {:<26} {}\n", kernel::MechanismName(a.mechanism), a.target,
                 a.ok && h.chosen == a.mechanism ? "used"
                 : a.ok && a.reason.empty()      ? "ok"
                                                 : a.reason);
    }
  }
  fmt::print("\nbackend  {} ({})\n", r.backend.empty() ? "procfs" : r.backend,
             r.backend.empty() ? "no BPF backend; auto falls back to the scanner: " + r.backend_reason
                               : r.backend_reason);
  fmt::print("\niter/tcp        {}\n",
             r.iter_tcp.ok ? "ok: start-up seed of the sockets older than svcmap"
                           : r.iter_tcp.reason + "; the seed relies on the file walk alone");
  fmt::print("iter/task_file  {}\n",
             r.iter_task_file.ok
                 ? "ok: seed of process-held sockets, live totals from TCP's own counters"
                 : r.iter_task_file.reason + "; live totals only from the send/receive hooks");
  fmt::print("procfs   {}\n", ProcfsSource());
  return absl::OkStatus();
}

void ReportStats(const kernel::BackendStats& s) {
  fmt::print(stderr,
             "svcmap: {} events, {} ring-buffer drops, {} sockets untracked (map full), "
             "{} decode errors\n",
             s.events, s.ringbuf_drops, s.socks_full, s.decode_errors);
}

absl::Status RunTrace(const Options& o) {
  kernel::ProbeReport report;
  absl::StatusOr<Opened> opened = OpenBackend(o, report);
  if (!opened.ok()) return opened.status();
  kernel::Backend* backend = opened->backend.get();

  exporter::Clock clock{RealtimeMinusBoottimeNs()};
  // Full buffering, flushed by the main thread below: one write(2) per
  // event would make the tracer's own cost show up in the traced load.
  static char buf[1 << 16];
  setvbuf(stdout, buf, _IOFBF, sizeof(buf));
  std::mutex out_mu;
  if (!o.json) fmt::print("{}\n", TraceHeader());
  std::string line;  // reused: the drain thread is the only writer
  absl::Status started = backend->Start([&](const flow::SockEvent& ev) {
    if (o.pid && ev.sock.owner.process.pid != *o.pid) return;
    line.clear();
    if (o.json)
      AppendTraceJson(line, ev, clock);
    else
      line = TraceLine(ev, clock);
    line.push_back('\n');
    std::lock_guard<std::mutex> lock(out_mu);
    std::fwrite(line.data(), 1, line.size(), stdout);
  });
  if (!started.ok()) return started;
  fmt::print(stderr, "svcmap: tracing via {}; Ctrl-C to stop\n",
             fmt::join(backend->attached(), ", "));

  absl::Time end = o.duration ? absl::Now() + *o.duration : absl::InfiniteFuture();
  for (;;) {
    absl::Duration slice = std::min(absl::Milliseconds(200), end - absl::Now());
    bool signalled = slice > absl::ZeroDuration() && WaitForSignal(slice);
    {
      std::lock_guard<std::mutex> lock(out_mu);
      std::fflush(stdout);
    }
    if (signalled || absl::Now() >= end) break;
  }
  backend->Stop();
  std::fflush(stdout);
  ReportStats(backend->Stats());
  return absl::OkStatus();
}

void PrintSnapshotText(const nlohmann::ordered_json& doc) {
  const auto& inst = doc["instance"];
  fmt::print("{} ({}), netns {}, backend {}, {:.1f}s\n\n",
             inst["hostname"].get<std::string>(), inst["instance_ip"].get<std::string>(),
             inst["netns"].get<std::string>(), inst["backend"].get<std::string>(),
             inst["duration_s"].get<double>());
  fmt::print("{:<20} {:<24} {:>8}  {}\n", "SERVICE", "INSTANCE", "PID", "LISTEN");
  for (const auto& s : doc["services"]) {
    std::vector<int> ports = s["listen_ports"].get<std::vector<int>>();
    fmt::print("{:<20.20} {:<24.24} {:>8}  {}\n", s["name"].get<std::string>(),
               s["instance_id"].get<std::string>(), s["pid"].get<uint32_t>(),
               fmt::join(ports, ","));
  }
  fmt::print("\n{:<20} {:>8} {:<28} {:>12} {:>12} {:>6}\n", "FROM", "PID", "TO", "SENT",
             "RECEIVED", "CONNS");
  for (const auto& c : doc["connections"]) {
    fmt::print("{:<20.20} {:>8} {:<28} {:>12} {:>12} {:>6}\n",
               c["src_service_name"].get<std::string>(), c["src_pid"].get<uint32_t>(),
               fmt::format("{}:{}", c["dst_ip"].get<std::string>(), c["dst_port"].get<int>()),
               c["bytes_sent"].get<uint64_t>(), c["bytes_received"].get<uint64_t>(),
               c["connections"].get<uint64_t>());
  }
}

absl::StatusOr<identity::ServiceNamer> MakeNamer(const Options& o) {
  identity::PodIndex pods;
  if (!o.pod_list_path.empty()) {
    std::ifstream in(o.pod_list_path);
    if (!in)
      return absl::InvalidArgumentError(
          fmt::format("--pod-list {}: {}", o.pod_list_path, std::strerror(errno)));
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<identity::PodIndex> parsed = identity::ParsePodList(text.str());
    if (!parsed.ok())
      return absl::InvalidArgumentError(fmt::format("--pod-list {}: {}", o.pod_list_path,
                                                    std::string(parsed.status().message())));
    pods = *std::move(parsed);
  }
  absl::StatusOr<identity::ServiceNamer> namer =
      identity::ServiceNamer::Create(o.name_rules, std::move(pods));
  if (!namer.ok())
    return absl::InvalidArgumentError(
        fmt::format("--name-rule: {}", std::string(namer.status().message())));
  return namer;
}

// Which namespace a snapshot or agent covers, and the address it reports.
struct Scope {
  std::optional<uint32_t> netns;
  std::string instance_ip;
};
absl::StatusOr<Scope> ResolveScope(const Options& o) {
  Scope scope;
  if (!o.netns_path.empty()) {
    absl::StatusOr<uint32_t> ino = NetnsInode(o.netns_path);
    if (!ino.ok()) return ino.status();
    scope.netns = *ino;
  }
  scope.instance_ip = o.instance_ip;
  if (scope.instance_ip.empty()) {
    absl::StatusOr<std::string> ip = FirstAddress(o.netns_path);
    scope.instance_ip = ip.ok() ? *ip : "127.0.0.1";
  }
  return scope;
}

// Names each process once, from /proc, when the collector first sees it.
flow::ProcessTable::Describer Describer(const identity::ServiceNamer& namer) {
  return [&namer](const flow::Owner& owner) {
    identity::ProcessFacts facts = scan::ReadProcessFacts(owner.process);
    facts.comm = owner.comm;
    identity::ServiceName n = namer.Name(facts);
    return flow::ProcessInfo{owner.comm,          facts.exe,    std::move(n.name),
                             std::move(n.source), facts.cmdline, facts.cgroup};
  };
}

// Fills a client socket's real destination from conntrack, if translated.
flow::Collector::NatLookup NatLookup(nat::ConntrackResolver& resolver) {
  return [&resolver](flow::SockRecord& s) {
    if (std::optional<nat::Endpoint> e = resolver.Resolve(s)) {
      s.nat_ip = e->ip;
      s.nat_port = e->port;
    }
  };
}

// The backend the flags ask for, started, its events going into a
// collector under `mu`, its processes named by the flags' rules: what
// snapshot, agent and top all run on. The backend stops first on
// destruction, before what its thread writes into.
struct Tracing {
  explicit Tracing(identity::ServiceNamer n) : namer(std::move(n)), collector(Describer(namer)) {}
  ~Tracing() {
    if (opened.backend) opened.backend->Stop();
  }
  Opened opened;
  std::mutex mu;                  // the collector and the namer (SIGHUP)
  identity::ServiceNamer namer;   // before the collector, whose describer uses it
  flow::Collector collector;
  nat::ConntrackResolver resolver;
};

absl::StatusOr<std::unique_ptr<Tracing>> StartTracing(const Options& o,
                                                      identity::ServiceNamer namer) {
  kernel::ProbeReport report;
  absl::StatusOr<Opened> opened = OpenBackend(o, report);
  if (!opened.ok()) return opened.status();
  auto t = std::make_unique<Tracing>(std::move(namer));
  t->opened = *std::move(opened);
  if (o.conntrack) t->collector.set_nat_lookup(NatLookup(t->resolver));
  Tracing* self = t.get();
  absl::Status started = t->opened.backend->Start([self](const flow::SockEvent& ev) {
    std::lock_guard<std::mutex> lock(self->mu);
    self->collector.OnEvent(ev);
  });
  if (!started.ok()) return started;
  return t;
}

// The agent makes its namer itself, before it takes its port.
absl::StatusOr<std::unique_ptr<Tracing>> StartTracing(const Options& o) {
  absl::StatusOr<identity::ServiceNamer> namer = MakeNamer(o);
  if (!namer.ok()) return namer.status();
  return StartTracing(o, *std::move(namer));
}

// New rules for the processes already named, from the facts kept.
void RenameAll(flow::ProcessTable& processes, const identity::ServiceNamer& namer) {
  processes.RenameAll([&namer](flow::ProcessInfo& info) {
    identity::ServiceName n = namer.Name({info.comm, info.exe, info.cmdline, info.cgroup});
    info.name = n.name.empty() ? info.comm : std::move(n.name);
    info.name_source = n.name.empty() ? "comm" : std::move(n.source);
  });
}

// SIGHUP: the naming rules and pod list again, from the same flags and
// config file; on any error the old ones stay.
void ReloadNaming(const Options& o, std::mutex& mu, identity::ServiceNamer& namer,
                  flow::Collector& collector) {
  absl::StatusOr<ParseResult> again = ParseOptions(o.args);
  if (!again.ok()) {
    Log(LogLevel::kError, "SIGHUP: keeping the old naming rules: {}", std::string(again.status().message()));
    return;
  }
  absl::StatusOr<identity::ServiceNamer> fresh = MakeNamer(again->options);
  if (!fresh.ok()) {
    Log(LogLevel::kError, "SIGHUP: keeping the old naming rules: {}", std::string(fresh.status().message()));
    return;
  }
  std::lock_guard<std::mutex> lock(mu);
  namer = *std::move(fresh);
  RenameAll(collector.mutable_processes(), namer);
  Log(LogLevel::kInfo, "SIGHUP: {} naming rules loaded, {} processes renamed",
      again->options.name_rules.size(), collector.processes().size());
}

exporter::SnapshotStats StatsOf(const kernel::BackendStats& bs, const flow::FlowView& flows) {
  exporter::SnapshotStats stats;
  stats.ringbuf_drops = bs.ringbuf_drops;
  stats.socks_full = bs.socks_full;
  stats.decode_errors = bs.decode_errors;
  stats.tcp_corrected = bs.tcp_corrected;
  stats.traffic_overflow = flows.traffic_overflow;
  stats.unowned_closes = bs.unowned_close;
  stats.seeded_sockets = bs.seeded_sockets;
  stats.seeded_listeners = bs.seeded_listeners;
  stats.seed_unowned = bs.seed_unowned;
  stats.seed_rescued = bs.seed_rescued;
  stats.scans = bs.scans;
  stats.scan_errors = bs.scan_errors;
  return stats;
}

absl::Status RunSnapshot(const Options& o) {
  absl::StatusOr<Scope> scope = ResolveScope(o);
  if (!scope.ok()) return scope.status();
  const std::optional<uint32_t> netns = scope->netns;
  const std::string instance_ip = scope->instance_ip;

  // Before anything attaches: a connection opened from here on that the
  // backend does not report is a miss.
  if (absl::Status s = CheckRoot(); !s.ok()) return s;
  absl::flat_hash_map<uint32_t, scan::TcpOpens> opens_before = scan::ReadOpensByNetns();
  absl::StatusOr<std::unique_ptr<Tracing>> tracing = StartTracing(o);
  if (!tracing.ok()) return tracing.status();
  const Opened* opened = &(*tracing)->opened;
  kernel::Backend* backend = opened->backend.get();
  std::mutex& mu = (*tracing)->mu;
  flow::Collector& collector = (*tracing)->collector;
  fmt::print(stderr, "svcmap: tracing for {} via {}\n", absl::FormatDuration(*o.duration),
             fmt::join(backend->attached(), ", "));

  absl::Time start = absl::Now();
  WaitForSignal(*o.duration);
  double elapsed = absl::ToDoubleSeconds(absl::Now() - start);

  // Live sockets first, then drain: a socket that closes in between is in
  // both, and the collector counts it once (by its close).
  absl::flat_hash_map<uint32_t, scan::TcpOpens> opens_after = scan::ReadOpensByNetns();
  uint64_t now = BoottimeNs();
  absl::StatusOr<std::vector<flow::SockRecord>> live = backend->ReadLive();
  if (!live.ok()) return live.status();
  backend->Stop();
  kernel::BackendStats bs = backend->Stats();

  flow::ServiceViewOptions view_options{netns, instance_ip, {}};
  if (!netns) view_options.netns_ips = NetnsAddresses();
  std::lock_guard<std::mutex> lock(mu);
  flow::Collector::Result view = collector.View(*live, now);
  flow::ServiceGraph graph =
      flow::BuildServiceView(view.flows, view.listeners, collector.processes(), view_options);
  exporter::InstanceInfo inst{Hostname(), instance_ip,
                              o.netns_path.empty() ? "all" : o.netns_path,
                              netns.value_or(0), opened->name, elapsed,
                              MachineName(o.netns_path)};
  exporter::SnapshotStats stats = StatsOf(bs, view.flows);
  exporter::Completeness completeness;
  for (const auto& [ino, after] : opens_after) {
    if (netns && ino != *netns) continue;
    completeness.known = true;
    // A namespace created while we watched started from zero.
    scan::TcpOpens before = opens_before.contains(ino) ? opens_before[ino] : scan::TcpOpens{};
    completeness.active_opens += after.active_opens - std::min(after.active_opens, before.active_opens);
    completeness.passive_opens +=
        after.passive_opens - std::min(after.passive_opens, before.passive_opens);
    if (auto it = view.flows.opened.find(ino); it != view.flows.opened.end())
      completeness.seen += it->second;
  }
  const exporter::Clock clock{RealtimeMinusBoottimeNs()};
  if (o.json)
    fmt::print("{}\n", exporter::SnapshotText(inst, graph, stats, completeness, clock, 2));
  else
    PrintSnapshotText(exporter::SnapshotJson(inst, graph, stats, completeness, clock));
  if (bs.ringbuf_drops > 0 || bs.socks_full > 0) ReportStats(bs);
  return absl::OkStatus();
}


// One daemon per node: the backend runs until SIGTERM/SIGINT, every HTTP
// request computes the view from the events so far plus the live sockets of
// that moment, and every --push-interval the same metrics go to the store.
// --check-config: everything the agent would refuse at start, without root
// and without loading anything (a manifest's args, a unit's flags).
absl::Status CheckAgentConfig(const Options& o) {
  absl::StatusOr<identity::ServiceNamer> namer = MakeNamer(o);
  if (!namer.ok()) return namer.status();
  if (!o.netns_path.empty())
    if (absl::StatusOr<uint32_t> ino = NetnsInode(o.netns_path); !ino.ok()) return ino.status();
  for (const std::string& url : o.map_agents)
    if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
      return absl::InvalidArgumentError(fmt::format("--map-agents {:?}: want http://host:port", url));
  fmt::print("svcmap: config ok: listen {}, {} naming rules, remote write {}, push every {}\n",
             o.listen, o.name_rules.size(), o.remote_write_url.empty() ? "off" : o.remote_write_url,
             absl::FormatDuration(o.push_interval));
  return absl::OkStatus();
}

absl::Status RunAgent(const Options& o) {
  if (o.check_config) return CheckAgentConfig(o);
  if (absl::Status s = CheckRoot(); !s.ok()) return s;
  // Each HTTP worker thread would get a malloc arena of its own and keep
  // the peak of the views it built: measured, RSS grew by ~20 MB per
  // scrape with 65,536 connections. Two arenas, and memory given back
  // after every view (see `view` below).
  mallopt(M_ARENA_MAX, 2);
  absl::StatusOr<Scope> scope = ResolveScope(o);
  if (!scope.ok()) return scope.status();
  const std::optional<uint32_t> netns = scope->netns;
  const std::string instance_ip = scope->instance_ip;
  absl::StatusOr<std::pair<std::string, int>> addr = SplitHostPort(o.listen);
  if (!addr.ok()) return addr.status();
  // Bad naming rules are refused before the port is taken.
  absl::StatusOr<identity::ServiceNamer> namer = MakeNamer(o);
  if (!namer.ok()) return namer.status();

  // Bind before loading anything: a taken port is the commonest mistake.
  // httplib's default options add SO_REUSEPORT, with which a second agent
  // would share the port silently; SO_REUSEADDR alone only allows a restart.
  httplib::Server http;
  http.set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  if (!http.bind_to_port(addr->first, addr->second))
    return absl::UnavailableError(fmt::format("cannot listen on {}: {}", o.listen,
                                              std::strerror(errno ? errno : EADDRINUSE)));

  // bench/ingestbench.cc measures exactly the sink StartTracing installs.
  absl::StatusOr<std::unique_ptr<Tracing>> tracing = StartTracing(o, *std::move(namer));
  if (!tracing.ok()) return tracing.status();
  const Opened* opened = &(*tracing)->opened;
  kernel::Backend* backend = opened->backend.get();
  std::mutex& mu = (*tracing)->mu;  // the collector and the namer
  flow::Collector& collector = (*tracing)->collector;

  std::unique_ptr<exporter::RemoteWriter> writer;
  if (!o.remote_write_url.empty()) {
    exporter::RemoteWriteOptions rw;
    rw.endpoint = *exporter::ParseEndpoint(o.remote_write_url);  // checked by ParseOptions
    rw.max_pending_samples = o.remote_write_buffer;
    writer = std::make_unique<exporter::RemoteWriter>(rw);
  }

  uint64_t expired_flows = 0;
  const std::string machine = MachineName(o.netns_path);

  const absl::Time start = absl::Now();
  std::mutex view_mu;  // one view at a time: each reads the kernel's live table
  // Pods come and go: their addresses are looked up again at most this often.
  flow::ServiceViewOptions view_options{netns, instance_ip, {}};
  absl::Time netns_ips_at = absl::InfinitePast();
  // `per_connection`: NETWORK_TRAFFIC keeps each connection's source port
  // (the snapshot); the metrics drop it, and so need far less memory.
  auto view = [&](bool per_connection, auto&& use) {
    std::lock_guard<std::mutex> serial(view_mu);
    if (!netns && absl::Now() - netns_ips_at > absl::Seconds(30)) {
      view_options.netns_ips = NetnsAddresses();
      netns_ips_at = absl::Now();
    }
    uint64_t now = BoottimeNs();
    if (absl::Status s = backend->RefreshLive(); !s.ok())
      Log(LogLevel::kWarn, "live sockets: {}", std::string(s.message()));
    // The live table goes straight into the view, a socket at a time; the
    // drain thread waits meanwhile (the ring buffer holds its events).
    std::lock_guard<std::mutex> lock(mu);
    if (o.flow_idle_timeout > absl::ZeroDuration()) {
      const uint64_t idle_ns = absl::ToInt64Nanoseconds(o.flow_idle_timeout);
      if (now > static_cast<uint64_t>(idle_ns)) expired_flows += collector.ExpireIdle(now - idle_ns);
    }
    absl::StatusOr<flow::Collector::Result> r = collector.ViewLive(
        [&](const kernel::Backend::LiveFn& fn) { return backend->ForEachLive(fn); }, now,
        !per_connection);
    if (!r.ok()) {
      Log(LogLevel::kWarn, "live sockets: {}", std::string(r.status().message()));
      r = collector.View(std::vector<flow::SockRecord>{}, now, !per_connection);
    }
    {
      flow::ServiceGraph graph =
          flow::BuildServiceView(r->flows, r->listeners, collector.processes(), view_options);
      use(graph, *r);
    }
    r = absl::StatusOr<flow::Collector::Result>();
    malloc_trim(0);
  };
  auto metrics = [&] {
    exporter::Metrics m;
    view(false, [&](const flow::ServiceGraph& graph, const flow::Collector::Result& r) {
      kernel::BackendStats bs = backend->Stats();
      exporter::AgentHealth h;
      h.backend = opened->name;
      for (size_t t = 0; t < collector.event_counts().size(); ++t)
        h.events[std::string(flow::EventTypeName(static_cast<flow::EventType>(t)))] =
            collector.event_counts()[t];
      h.ringbuf_drops = bs.ringbuf_drops;
      h.socks_full = bs.socks_full;
      h.decode_errors = bs.decode_errors;
      h.scan_errors = bs.scan_errors;
      h.traffic_overflow = r.flows.traffic_overflow;
      h.flows = r.flows.flows.size();
      h.expired_flows = expired_flows;
      if (writer) {
        exporter::RemoteWriteStats w = writer->Stats();
        h.remote_write = true;
        h.rw_sent_samples = w.sent_samples;
        h.rw_dropped_samples = w.dropped_samples;
        h.rw_rejected_samples = w.rejected_samples;
        h.rw_failed_requests = w.failed_requests;
        h.rw_pending_samples = w.pending_samples;
      }
      m = exporter::BuildMetrics(graph, instance_ip, h, {o.max_series, machine});
    });
    return m;
  };
  // Bodies are moved in, not copied (httplib 0.11's set_content copies).
  auto reply = [](httplib::Response& res, std::string body, const char* type) {
    res.body = std::move(body);
    res.set_header("Content-Type", type);
  };
  http.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    reply(res, exporter::MetricsText(metrics()), "text/plain; version=0.0.4; charset=utf-8");
  });
  auto snapshot_text = [&] {
    std::string text;
    view(true, [&](const flow::ServiceGraph& graph, const flow::Collector::Result& r) {
      kernel::BackendStats bs = backend->Stats();
      exporter::InstanceInfo inst{Hostname(), instance_ip,
                                  o.netns_path.empty() ? "all" : o.netns_path, netns.value_or(0),
                                  opened->name, absl::ToDoubleSeconds(absl::Now() - start),
                                  machine};
      text = exporter::SnapshotText(inst, graph, StatsOf(bs, r.flows), {},
                                    exporter::Clock{RealtimeMinusBoottimeNs()}, -1);
    });
    return text;
  };
  http.Get("/api/snapshot", [&](const httplib::Request&, httplib::Response& res) {
    reply(res, snapshot_text(), "application/json");
  });
  // The live map: this agent's snapshot joined with those of --map-agents,
  // exactly as `svcmap topology --agents` would.
  auto graph_now = [&]() -> absl::StatusOr<topology::Graph> {
    absl::StatusOr<topology::Observations> own = topology::ParseSnapshot(snapshot_text(), "self");
    if (!own.ok()) return own.status();
    for (const std::string& url : o.map_agents) {
      absl::StatusOr<topology::Observations> peer = topology::FetchAgent(url);
      if (!peer.ok()) {
        Log(LogLevel::kWarn, "map: {}", std::string(peer.status().message()));
        continue;  // the map shows what it can reach
      }
      topology::Merge(*own, *std::move(peer));
    }
    return topology::Join(*own);
  };
  http.Get("/api/graph", [&](const httplib::Request&, httplib::Response& res) {
    absl::StatusOr<topology::Graph> g = graph_now();
    if (!g.ok()) {
      res.status = 500;
      res.set_content(std::string(g.status().message()), "text/plain");
      return;
    }
    res.set_content(topology::GraphJson(*g).dump(), "application/json");
  });
  http.Get("/api/map", [&](const httplib::Request&, httplib::Response& res) {
    absl::StatusOr<topology::Graph> g = graph_now();
    absl::StatusOr<std::string> svg = g.ok() ? topology::GraphSvg(*g) : g.status();
    if (!svg.ok()) {
      res.status = 500;
      res.set_content(std::string(svg.status().message()), "text/plain");
      return;
    }
    nlohmann::ordered_json doc = {{"graph", topology::GraphJson(*g)}, {"svg", *svg}};
    res.set_content(doc.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace),
                    "application/json");
  });
  http.Get("/map", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(MapPage(machine), "text/html; charset=utf-8");
  });
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  std::thread server([&] { http.listen_after_bind(); });
  fmt::print(stderr, "svcmap: agent on http://{}/metrics via {}\n", o.listen,
             fmt::join(backend->attached(), ", "));
  if (writer)
    Log(LogLevel::kInfo, "remote write to {} every {}", o.remote_write_url,
        absl::FormatDuration(o.push_interval));

  // The series a store files the samples under: which agent sent them.
  const exporter::LabelPairs push_labels = {{"job", "svcmap"}, {"instance", instance_ip}};
  auto push = [&] {
    writer->Enqueue(exporter::EncodeWriteRequest(metrics().families, push_labels, RealtimeMs()));
  };
  // Pushes on a fixed schedule from the start, so a slow view does not
  // make the samples drift apart.
  absl::Time next_push = start + o.push_interval;
  std::string last_error;
  for (;;) {
    int sig = WaitForAgentSignal(writer ? next_push : absl::Now() + absl::Hours(24));
    if (sig == SIGINT || sig == SIGTERM) break;
    if (sig == SIGHUP) {
      ReloadNaming(o, mu, (*tracing)->namer, collector);
      continue;
    }
    if (!writer) continue;
    push();
    while (next_push <= absl::Now()) next_push += o.push_interval;
    exporter::RemoteWriteStats w = writer->Stats();
    if (w.last_error != last_error && !w.last_error.empty())
      Log(LogLevel::kWarn, "remote write: {} ({} samples waiting, {} dropped so far)",
          w.last_error, w.pending_samples, w.dropped_samples);
    else if (w.last_error.empty() && !last_error.empty())
      Log(LogLevel::kInfo, "remote write: the store takes samples again");
    last_error = w.last_error;
  }
  fmt::print(stderr, "svcmap: stopping\n");
  if (writer) {
    // The latest totals, and a bounded wait for the store to take them.
    push();
    writer->Shutdown(absl::Seconds(5));
    exporter::RemoteWriteStats w = writer->Stats();
    Log(w.dropped_samples + w.rejected_samples > 0 ? LogLevel::kWarn : LogLevel::kInfo,
        "remote write: {} samples sent, {} dropped, {} rejected", w.sent_samples,
        w.dropped_samples, w.rejected_samples);
  }
  http.stop();
  server.join();
  backend->Stop();
  return absl::OkStatus();
}

// `svcmap top`: samples for the UI, from the kernel here (as the agent
// does), from agents, or from a store.
absl::Status RunTop(const Options& o) {
  ui::TopOptions to;
  to.interval = o.interval;
  to.batch = o.batch;
  to.frames = o.frames;
  to.duration = o.duration;
  to.mode = o.view == "services"    ? ui::Mode::kServices
            : o.view == "processes" ? ui::Mode::kProcesses
                                    : ui::Mode::kEdges;
  const std::string host = Hostname();
  auto now_ms = [] { return absl::ToUnixMillis(absl::Now()); };

  if (!o.agent_urls.empty()) {
    return ui::RunTopUi(
        [&]() -> absl::StatusOr<ui::Sample> {
          ui::Sample s;
          s.time_ms = now_ms();
          s.host = fmt::format("{} agents", o.agent_urls.size());
          s.backend = "agents";
          topology::Observations all;
          for (const std::string& url : o.agent_urls) {
            absl::StatusOr<topology::Observations> one = topology::FetchAgent(url);
            if (!one.ok()) return one.status();
            topology::Merge(all, *std::move(one));
          }
          s.graph = topology::Join(all);
          s.processes = std::move(all.processes);
          return s;
        },
        to);
  }
  if (!o.tsdb_url.empty()) {
    // Counters from top's start on, so that two samples subtract.
    const int64_t start_ms = now_ms() - 1000;
    return ui::RunTopUi(
        [&]() -> absl::StatusOr<ui::Sample> {
          ui::Sample s;
          s.time_ms = now_ms();
          s.host = o.tsdb_url;
          s.backend = "tsdb";
          s.has_processes = false;
          absl::StatusOr<topology::Observations> obs =
              topology::QueryTsdb(o.tsdb_url, {start_ms, s.time_ms});
          if (!obs.ok() && !absl::IsNotFound(obs.status())) return obs.status();
          if (obs.ok()) s.graph = topology::Join(*obs);
          return s;
        },
        to);
  }

  if (absl::Status s = CheckRoot(); !s.ok()) return s;
  absl::StatusOr<Scope> scope = ResolveScope(o);
  if (!scope.ok()) return scope.status();
  absl::StatusOr<std::unique_ptr<Tracing>> tracing = StartTracing(o);
  if (!tracing.ok()) return tracing.status();
  const Opened* opened = &(*tracing)->opened;
  kernel::Backend* backend = opened->backend.get();
  std::mutex& mu = (*tracing)->mu;
  flow::Collector& collector = (*tracing)->collector;
  flow::ServiceViewOptions view_options{scope->netns, scope->instance_ip, {}};
  if (!scope->netns) view_options.netns_ips = NetnsAddresses();
  const std::string machine = MachineName(o.netns_path);
  absl::Status ui_status = ui::RunTopUi(
      [&]() -> absl::StatusOr<ui::Sample> {
        ui::Sample s;
        s.host = machine;
        s.backend = opened->name;
        (void)backend->RefreshLive();
        std::string text;
        {
          std::lock_guard<std::mutex> lock(mu);
          const uint64_t now = BoottimeNs();
          s.time_ms = now_ms();
          absl::StatusOr<flow::Collector::Result> r = collector.ViewLive(
              [&](const kernel::Backend::LiveFn& fn) { return backend->ForEachLive(fn); }, now);
          if (!r.ok()) return r.status();
          flow::ServiceGraph graph = flow::BuildServiceView(r->flows, r->listeners,
                                                            collector.processes(), view_options);
          kernel::BackendStats bs = backend->Stats();
          exporter::InstanceInfo inst{host, scope->instance_ip, "all", 0, opened->name, 0, machine};
          text = exporter::SnapshotText(inst, graph, StatsOf(bs, r->flows), {},
                                        exporter::Clock{RealtimeMinusBoottimeNs()}, -1);
          for (uint64_t n : collector.event_counts()) s.events += n;
          s.drops = bs.ringbuf_drops + bs.socks_full;
        }
        // The same join as `svcmap topology`, on this node's own snapshot.
        absl::StatusOr<topology::Observations> obs = topology::ParseSnapshot(text, "self");
        if (!obs.ok()) return obs.status();
        s.graph = topology::Join(*obs);
        s.processes = std::move(obs->processes);
        return s;
      },
      to);
  backend->Stop();
  return ui_status;
}

}  // namespace

absl::Status RunCommand(const Options& options) {
  kernel::SetLibbpfVerbose(options.verbose);
  SetLogLevel(ParseLogLevel(options.log_level).value_or(LogLevel::kInfo));
  switch (options.command) {
    case Command::kProbe: return RunProbe(options);
    case Command::kTrace: return RunTrace(options);
    case Command::kSnapshot: return RunSnapshot(options);
    case Command::kAgent: return RunAgent(options);
    case Command::kTopology: return RunTopology(options);
    case Command::kTop: return RunTop(options);
  }
  return absl::InternalError("unknown command");
}

}  // namespace svcmap::app
