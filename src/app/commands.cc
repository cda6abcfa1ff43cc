#include "svcmap/app/commands.h"

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"
#include "svcmap/app/host_info.h"
#include "svcmap/app/session_setup.h"
#include "svcmap/app/trace_format.h"
#include "svcmap/base/clock.h"
#include "svcmap/base/log.h"
#include "svcmap/export/snapshot_json.h"
#include "svcmap/kernel/feature_probe.h"
#include "svcmap/kernel/libbpf_error.h"
#include "svcmap/scan/proc_parse.h"
#include "svcmap/scan/sock_diag.h"
#include "svcmap/scan/tracker.h"
#include "svcmap/topology/graph.h"
#include "svcmap/topology/sources.h"
#include "svcmap/ui/top_view.h"

namespace svcmap::app {
namespace {

// Whether `a` is the attempt whose program the backend loads for `h`.
bool Used(const kernel::HookProbe& h, const kernel::Attempt& a) {
  return h.needed && a.ok && h.chosen == a.mechanism && h.chosen_target == a.target;
}

nlohmann::ordered_json ProbeJson(const kernel::ProbeReport& r) {
  nlohmann::ordered_json hooks = nlohmann::ordered_json::array();
  for (const kernel::HookProbe& h : r.hooks) {
    nlohmann::ordered_json attempts = nlohmann::ordered_json::array();
    for (const kernel::Attempt& a : h.attempts) {
      attempts.push_back({{"mechanism", kernel::MechanismName(a.mechanism)},
                          {"target", a.target},
                          {"ok", a.ok},
                          {"used", Used(h, a)},
                          {"reason", a.reason}});
    }
    hooks.push_back({{"hook", h.hook},
                     {"chosen", h.chosen ? std::string(kernel::MechanismName(*h.chosen)) : ""},
                     {"needed", h.needed},
                     {"attempts", std::move(attempts)}});
  }
  return {{"kernel", r.kernel_release},
          {"btf", r.btf},
          {"tracefs", r.tracefs},
          {"tracefs_note", r.tracefs_note},
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
  if (d.ok())
    return "sock_diag with tcp_info (bytes, RTT, min RTT and retransmits per socket; no connect "
           "outcome, reset or connect latency)";
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
  std::string tracefs = r.tracefs ? "mounted" : "not mounted";
  if (!r.tracefs_note.empty())
    tracefs = r.tracefs ? r.tracefs_note : tracefs + ": " + r.tracefs_note;
  fmt::print("kernel   {}\nBTF      {}\ntracefs  {}\n", r.kernel_release, r.btf ? "yes" : "no",
             tracefs);
  for (const kernel::HookProbe& h : r.hooks) {
    fmt::print("\nhook {:<8} -> {}\n", h.hook,
               !h.needed ? "not needed (bytes from TCP's counters, owner from accept)"
               : h.chosen ? kernel::MechanismName(*h.chosen)
                          : "UNAVAILABLE");
    for (const kernel::Attempt& a : h.attempts) {
      fmt::print("  {:<10} {:<26} {}\n", kernel::MechanismName(a.mechanism), a.target,
                 Used(h, a)                 ? "used"
                 : a.ok && a.reason.empty() ? "ok"
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

// A warning when anything was lost, so --log-level error silences the
// summary and never hides a loss behind an info line.
void ReportStats(const kernel::BackendStats& s) {
  const bool lost = s.ringbuf_drops > 0 || s.socks_full > 0 || s.decode_errors > 0;
  Log(lost ? LogLevel::kWarn : LogLevel::kInfo,
      "{} events, {} ring-buffer drops, {} sockets untracked (map full), {} decode errors",
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
  absl::Status started = backend->Start([&](absl::Span<const flow::SockEvent> events) {
    line.clear();
    for (const flow::SockEvent& ev : events) {
      if (ev.type == flow::EventType::kFork) continue;  // processes, not connections
      if (o.pid && ev.sock.owner.process.pid != *o.pid) continue;
      if (o.json)
        AppendTraceJson(line, ev, clock);
      else
        line += TraceLine(ev, clock);
      line.push_back('\n');
    }
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

// `svcmap snapshot`: trace for --duration, then print what was seen. Every
// process is kept for the whole window (a short-lived client is listed with
// its own pid), and the kernel's open counters say what was missed.
absl::Status RunSnapshot(const Options& o) {
  absl::StatusOr<Scope> scope = ResolveScope(o);
  if (!scope.ok()) return scope.status();
  absl::StatusOr<identity::ServiceNamer> namer = MakeNamer(o);
  if (!namer.ok()) return namer.status();
  // Before anything attaches: a connection opened from here on that the
  // backend does not report is a miss.
  if (absl::Status s = CheckRoot(); !s.ok()) return s;
  absl::flat_hash_map<uint32_t, scan::TcpOpens> opens_before = scan::ReadOpensByNetns();
  absl::StatusOr<std::unique_ptr<node::Session>> session =
      StartSession(o, *scope, *std::move(namer), RunKind::kOneShot);
  if (!session.ok()) return session.status();
  fmt::print(stderr, "svcmap: tracing for {} via {}\n", absl::FormatDuration(*o.duration),
             fmt::join((*session)->attached(), ", "));

  absl::Time start = absl::Now();
  WaitForSignal(*o.duration);
  double elapsed = absl::ToDoubleSeconds(absl::Now() - start);

  absl::flat_hash_map<uint32_t, scan::TcpOpens> opens_after = scan::ReadOpensByNetns();
  std::shared_ptr<const node::Frame> frame = (*session)->Finish();
  const kernel::BackendStats bs = (*session)->backend().Stats();

  const exporter::Completeness completeness =
      node::CompletenessOf(opens_before, opens_after, frame->opened(), scope->netns);
  exporter::InstanceInfo inst = frame->instance();
  inst.duration_s = elapsed;
  const exporter::Clock clock{frame->realtime_minus_boottime_ns()};
  if (o.json)
    fmt::print("{}\n", exporter::SnapshotText(inst, frame->graph(), frame->stats(), completeness,
                                             clock, 2));
  else
    PrintSnapshotText(
        exporter::SnapshotJson(inst, frame->graph(), frame->stats(), completeness, clock));
  if (bs.ringbuf_drops > 0 || bs.socks_full > 0) ReportStats(bs);
  return absl::OkStatus();
}

// `svcmap top`: samples for the UI, from the kernel here (as the agent
// does), from agents, or from a store.
absl::Status RunTop(const Options& o) {
  ui::TopOptions to;
  to.interval = o.interval;
  to.batch = o.batch;
  to.frames = o.frames;
  if (o.width) to.width = static_cast<size_t>(*o.width);
  to.duration = o.duration;
  to.mode = o.view == "services"    ? ui::Mode::kServices
            : o.view == "processes" ? ui::Mode::kProcesses
                                    : ui::Mode::kEdges;
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
            absl::StatusOr<topology::Observations> one = topology::FetchAgent(url, o.agents_http);
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
              topology::QueryTsdb(o.tsdb_url, {start_ms, s.time_ms}, o.tsdb_http);
          if (!obs.ok() && !absl::IsNotFound(obs.status())) return obs.status();
          if (obs.ok()) s.graph = topology::Join(*obs);
          return s;
        },
        to);
  }

  if (absl::Status s = CheckRoot(); !s.ok()) return s;
  absl::StatusOr<Scope> scope = ResolveScope(o);
  if (!scope.ok()) return scope.status();
  absl::StatusOr<identity::ServiceNamer> namer = MakeNamer(o);
  if (!namer.ok()) return namer.status();
  absl::StatusOr<std::unique_ptr<node::Session>> session =
      StartSession(o, *scope, *std::move(namer), RunKind::kLongLived);
  if (!session.ok()) return session.status();
  node::Session* node = session->get();
  absl::Status ui_status = ui::RunTopUi(
      [&]() -> absl::StatusOr<ui::Sample> {
        std::shared_ptr<const node::Frame> f = node->FrameAfter(absl::Now());
        if (f == nullptr) return absl::CancelledError("stopped");
        ui::Sample s;
        s.host = f->instance().machine;
        s.backend = f->instance().backend;
        s.time_ms = f->wall_ms();
        s.events = f->events();
        s.drops = f->drops();
        // The same join as `svcmap topology`, on this node's own graph.
        s.graph = topology::Join(f->Observations());
        s.processes = f->Observations().processes;
        return s;
      },
      to);
  node->Stop();
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
