#include "svcmap/app/session_setup.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fmt/format.h"
#include "svcmap/app/host_info.h"
#include "svcmap/app/node_io.h"
#include "svcmap/base/log.h"
#include "svcmap/kernel/bpf_backend.h"
#include "svcmap/kernel/procfs_backend.h"

namespace svcmap::app {
namespace {

absl::StatusOr<Opened> OpenProcfs(const Options& o, std::string_view why) {
  if (!why.empty())
    Log(LogLevel::kWarn, "no usable BPF ({}); using the /proc + sock_diag scanner", why);
  kernel::ProcfsOptions po;
  po.interval = o.scan_interval;
  po.use_sock_diag = o.scan_source != "proc";
  po.require_sock_diag = o.scan_source == "sock_diag";
  absl::StatusOr<std::unique_ptr<kernel::ProcfsBackend>> b = kernel::ProcfsBackend::Create(po);
  if (!b.ok()) return b.status();
  return Opened{*std::move(b), "procfs"};
}

}  // namespace

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

absl::Status CheckRoot() {
  if (geteuid() != 0)
    return absl::PermissionDeniedError(
        "must run as root: BPF needs CAP_BPF and CAP_PERFMON, and the scanner reads every "
        "process's /proc/<pid>/fd (try sudo)");
  return absl::OkStatus();
}

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
  bo.tcp_health = o.tcp_health;
  // Only trace prints connects and accepts; the collector files a
  // connection from its close and from the live table.
  bo.lifecycle_events = o.command == Command::kTrace;
  absl::StatusOr<std::unique_ptr<kernel::BpfBackend>> b = kernel::BpfBackend::Create(report, bo);
  if (!b.ok()) {
    if (automatic) return OpenProcfs(o, std::string(b.status().message()));
    return b.status();
  }
  // Said once a BPF backend runs: without one, tracefs does not matter.
  if (!report.tracefs_note.empty())
    Log(report.tracefs ? LogLevel::kInfo : LogLevel::kWarn, "tracefs was not mounted: {}{}",
        report.tracefs_note,
        report.AcceptInProcess() ? "" : "; a program runs per TCP send and receive instead");
  if (!(*b)->seed_error().empty())
    Log(LogLevel::kWarn,
        "sockets opened before svcmap are only seen from their next I/O on: start-up seed "
        "failed: {}",
        (*b)->seed_error());
  return Opened{*std::move(b), report.backend};
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

absl::StatusOr<std::unique_ptr<node::Session>> StartSession(const Options& o, const Scope& scope,
                                                            identity::ServiceNamer namer,
                                                            RunKind kind) {
  kernel::ProbeReport report;
  absl::StatusOr<Opened> opened = OpenBackend(o, report);
  if (!opened.ok()) return opened.status();
  node::SessionOptions so;
  so.instance = {Hostname(), scope.instance_ip, o.netns_path.empty() ? "all" : o.netns_path,
                 scope.netns.value_or(0), opened->name, 0, MachineName(o.netns_path)};
  so.netns = scope.netns;
  so.metrics = {o.max_series, so.instance.machine};
  if (kind == RunKind::kOneShot) {
    so.retire = false;
    so.idle_timeout = absl::ZeroDuration();
    so.collector.flows.count_opens = true;
    so.collector.keep_closed_listeners = true;
    // Nothing to evict or expire: the one frame is the last (Finish).
    so.housekeeping = absl::InfiniteDuration();
  } else {
    so.idle_timeout = o.flow_idle_timeout;
  }
  return node::Session::Start(std::move(opened->backend), std::move(namer),
                              RealNodeIo(o.conntrack), std::move(so));
}

}  // namespace svcmap::app
