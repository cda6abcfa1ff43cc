#include "svcmap/kernel/feature_probe.h"

#include <bpf/libbpf.h>
#include <sys/mount.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <map>
#include <set>
#include <memory>

#include "fmt/format.h"
#include "probe.skel.h"
#include "svcmap/kernel/libbpf_error.h"
#include "svcmap/kernel/links.h"

namespace svcmap::kernel {
namespace {

// accept4(2)'s exit: where the tracepoint backend learns the accepting
// process (accept(2)'s twin is attached beside it).
constexpr char kAcceptTracepoint[] = "syscalls/sys_exit_accept4";

struct ObjectDeleter {
  void operator()(bpf_object* o) const { bpf_object__close(o); }
};
using ObjectPtr = std::unique_ptr<bpf_object, ObjectDeleter>;

// What attached stays attached until the probe ends, then all of it is
// detached (DetachAll). Links go before the objects that hold their
// programs.
struct Held {
  std::vector<ObjectPtr> objects;
  std::vector<LinkPtr> links;
};

struct Candidate {
  Mechanism mechanism;  // ignored for an iterator
  const char* program;  // in bpf/probe.bpf.c
  const char* target;
};

constexpr char kStateTracepoint[] = "sock/inet_sock_set_state";

struct HookSpec {
  const char* hook;
  std::vector<Candidate> candidates;
};

const std::vector<HookSpec>& Hooks() {
  static const std::vector<HookSpec> kHooks = {
      {"connect",
       {{Mechanism::kFentry, "fentry_tcp_connect", "tcp_connect"},
        {Mechanism::kKprobe, "kprobe_tcp_connect", "tcp_connect"},
        {Mechanism::kTpBtf, "btf_set_state", "sock/inet_sock_set_state"},
        {Mechanism::kTracepoint, "tp_set_state", "sock/inet_sock_set_state"}}},
      {"accept",
       {{Mechanism::kFentry, "fexit_inet_csk_accept", "inet_csk_accept"},
        {Mechanism::kKprobe, "kretprobe_inet_csk_accept", "inet_csk_accept"},
        {Mechanism::kTracepoint, "tp_accept4", kAcceptTracepoint},
        {Mechanism::kTpBtf, "btf_set_state", "sock/inet_sock_set_state"},
        {Mechanism::kTracepoint, "tp_set_state", "sock/inet_sock_set_state"}}},
      {"send",
       {{Mechanism::kFentry, "fexit_tcp_sendmsg", "tcp_sendmsg"},
        {Mechanism::kKprobe, "kretprobe_tcp_sendmsg", "tcp_sendmsg"},
        {Mechanism::kTpBtf, "btf_send", "sock/sock_send_length"},
        {Mechanism::kTracepoint, "tp_send", "sock/sock_send_length"}}},
      {"recv",
       {{Mechanism::kFentry, "fexit_tcp_recvmsg", "tcp_recvmsg"},
        {Mechanism::kKprobe, "kretprobe_tcp_recvmsg", "tcp_recvmsg"},
        {Mechanism::kTpBtf, "btf_recv", "sock/sock_recv_length"},
        {Mechanism::kTracepoint, "tp_recv", "sock/sock_recv_length"}}},
      {"close",
       {{Mechanism::kFentry, "fentry_tcp_v4_destroy_sock", "tcp_v4_destroy_sock"},
        {Mechanism::kKprobe, "kprobe_tcp_v4_destroy_sock", "tcp_v4_destroy_sock"},
        {Mechanism::kTpBtf, "btf_destroy", "tcp/tcp_destroy_sock"},
        {Mechanism::kTracepoint, "tp_destroy", "tcp/tcp_destroy_sock"}}},
  };
  return kHooks;
}

bool PathExists(const char* path) { return access(path, F_OK) == 0; }

constexpr char kTracefsPath[] = "/sys/kernel/tracing";

bool TracefsMounted() {
  return PathExists("/sys/kernel/tracing/events") ||
         PathExists("/sys/kernel/debug/tracing/events");
}

// Adds what errno alone does not say. `m` is empty for an iterator.
std::string Explain(std::optional<Mechanism> m, const std::string& stage, int err) {
  err = std::abs(err);  // libbpf returns -errno, errno is positive
  std::string why = fmt::format("{}: {}", stage, ErrnoText(err));
  if (!m) {
    // libbpf finds no bpf_iter__<name> type in vmlinux BTF where the
  // iterator is missing (tcp: 5.9, task_file: 5.8).
    if (err == ESRCH || err == ENOENT) return why + "; this kernel lacks that iterator";
    return why;
  }
  if (m == Mechanism::kKprobe && !PathExists("/sys/bus/event_source/devices/kprobe") &&
      !PathExists("/sys/kernel/tracing/kprobe_events")) {
    return why + "; kprobes are not compiled in (no kprobe PMU, no kprobe_events)";
  }
  if (m == Mechanism::kFentry && (err == EPERM || err == EACCES)) {
    return why + "; the kernel refuses BPF trampolines here (lockdown, an LSM or a hypervisor policy)";
  }
  // libbpf finds no BTF type for a tp_btf target (ESRCH), or no tracefs id
  // for a classic one (ENOENT), when the kernel lacks the tracepoint:
  // sock_send_length and sock_recv_length arrived in 6.3.
  if ((m == Mechanism::kTpBtf && err == ESRCH) ||
      (m == Mechanism::kTracepoint && err == ENOENT && TracefsMounted())) {
    return why + "; this kernel has no such tracepoint";
  }
  if (m == Mechanism::kTracepoint && !TracefsMounted()) {
    return why + "; tracefs is not mounted at /sys/kernel/tracing";
  }
  if (m == Mechanism::kTpBtf && !PathExists(kBtfPath)) {
    return why + "; no kernel BTF";
  }
  return why;
}

// Loads `c.program` alone from a fresh copy of the probe object and
// attaches it with `attach`; what attached goes into `held`.
template <typename AttachFn>
Attempt TryProgram(const Candidate& c, bool iterator, Held& held, AttachFn attach) {
  std::optional<Mechanism> m;
  if (!iterator) m = c.mechanism;
  Attempt a{c.mechanism, c.target, false, ""};
  size_t size = 0;
  const void* elf = probe_bpf__elf_bytes(&size);
  LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = "svcmap_probe");
  ObjectPtr obj(bpf_object__open_mem(elf, size, &opts));
  if (!obj) {
    a.reason = Explain(m, "open", errno);
    return a;
  }
  bpf_program* prog = nullptr;
  bpf_program* it = nullptr;
  bpf_object__for_each_program(it, obj.get()) {
    bool mine = std::string_view(bpf_program__name(it)) == c.program;
    bpf_program__set_autoload(it, mine);
    if (mine) prog = it;
  }
  if (prog == nullptr) {
    a.reason = fmt::format("internal: no probe program {}", c.program);
    return a;
  }
  if (int err = bpf_object__load(obj.get()); err) {
    a.reason = Explain(m, "load", err);
    return a;
  }
  LinkPtr link(attach(prog));
  if (!link) {
    a.reason = Explain(m, "attach", errno);
    return a;
  }
  a.ok = true;
  held.links.push_back(std::move(link));
  held.objects.push_back(std::move(obj));
  return a;
}

Attempt Try(const Candidate& c, Held& held) {
  return TryProgram(c, false, held, [](bpf_program* p) { return bpf_program__attach(p); });
}

}  // namespace

std::string_view MechanismName(Mechanism m) {
  switch (m) {
    case Mechanism::kFentry: return "fentry";
    case Mechanism::kKprobe: return "kprobe";
    case Mechanism::kTpBtf: return "tp_btf";
    case Mechanism::kTracepoint: return "tracepoint";
  }
  return "?";
}

bool IsTracepoint(Mechanism m) { return m == Mechanism::kTpBtf || m == Mechanism::kTracepoint; }

const HookProbe* ProbeReport::Find(std::string_view hook) const {
  for (const HookProbe& h : hooks)
    if (h.hook == hook) return &h;
  return nullptr;
}

std::optional<Mechanism> ProbeReport::Chosen(std::string_view hook) const {
  const HookProbe* h = Find(hook);
  return h ? h->chosen : std::nullopt;
}

bool ProbeReport::Loads(std::string_view hook) const {
  const HookProbe* h = Find(hook);
  return h && h->chosen && h->needed;
}

bool ProbeReport::AcceptInProcess() const {
  const HookProbe* h = Find("accept");
  return h && h->chosen && h->chosen_target != kStateTracepoint;
}

ProbeReport RunFeatureProbe() {
  ProbeReport report;
  utsname u{};
  if (uname(&u) == 0) report.kernel_release = u.release;
  report.btf = PathExists(kBtfPath);
  report.tracefs = TracefsMounted();
  // Classic tracepoints are attached by the id tracefs gives, and the
  // tracepoint backend's accept hook (syscalls:sys_exit_accept4) has no
  // tp_btf form: without tracefs it falls back to a program per send and
  // receive. systemd mounts tracefs at boot; a node or container without it
  // gets it mounted here, as Cilium's agent mounts bpffs.
  if (!report.tracefs) {
    if (mount("nodev", kTracefsPath, "tracefs", 0, nullptr) == 0) {
      report.tracefs = TracefsMounted();
      report.tracefs_note = fmt::format("mounted by svcmap at {}", kTracefsPath);
    } else {
      const int err = errno;
      report.tracefs_note = fmt::format("mounting it at {} failed: {}{}", kTracefsPath,
                                        ErrnoText(err),
                                        err == EPERM ? "; that needs CAP_SYS_ADMIN" : "");
    }
  }

  // connect and accept share a tracepoint: probe each program once.
  Held held;
  std::map<std::string, Attempt> done;
  for (const HookSpec& spec : Hooks()) {
    HookProbe hook;
    hook.hook = spec.hook;
    for (const Candidate& c : spec.candidates) {
      auto it = done.find(c.program);
      if (it == done.end()) it = done.emplace(c.program, Try(c, held)).first;
      hook.attempts.push_back(it->second);
    }
    report.hooks.push_back(std::move(hook));
  }
  for (auto [program, into] : {std::pair{"iter_tcp", &report.iter_tcp},
                                std::pair{"iter_task_file", &report.iter_task_file}}) {
    Attempt it = TryProgram({Mechanism::kTpBtf, program, program}, true, held,
                            [](bpf_program* p) { return bpf_program__attach_iter(p, nullptr); });
    into->ok = it.ok;
    into->reason = it.reason;
  }

  DetachAll(held.links);
  held.objects.clear();

  (void)SelectBackend(report, "auto", std::nullopt);
  return report;
}

namespace {

bool Allowed(Mechanism m, std::string_view backend, std::optional<Mechanism> tp_form) {
  if (IsTracepoint(m) && tp_form && m != *tp_form) return false;
  if (backend == "auto") return true;
  if (backend == "tracepoint") return IsTracepoint(m);
  return MechanismName(m) == backend;
}

std::string Class(Mechanism m) {
  return IsTracepoint(m) ? "tracepoint" : std::string(MechanismName(m));
}

}  // namespace

absl::Status SelectBackend(ProbeReport& report, std::string_view backend,
                           std::optional<Mechanism> tp_form) {
  report.backend.clear();
  report.state_form.reset();
  if (!report.btf) {
    report.backend_reason =
        fmt::format("no kernel BTF at {}: CO-RE programs cannot load", kBtfPath);
    return absl::FailedPreconditionError(report.backend_reason);
  }
  // The state tracepoint (listen, SYN_RECV, ESTABLISHED, FIN) runs under
  // every backend; it is the tracepoint attempt of the connect hook.
  std::vector<std::string> state_why;
  for (const Attempt& a : report.Find("connect")->attempts) {
    if (!IsTracepoint(a.mechanism) || (tp_form && a.mechanism != *tp_form)) continue;
    if (a.ok) {
      report.state_form = a.mechanism;
      break;
    }
    state_why.push_back(fmt::format("{}: {}", MechanismName(a.mechanism), a.reason));
  }
  if (!report.state_form) {
    report.backend_reason = fmt::format("sock/inet_sock_set_state did not attach ({})",
                                        fmt::join(state_why, "; "));
    return absl::FailedPreconditionError(report.backend_reason);
  }

  std::set<std::string> classes;
  std::vector<std::string> missing;
  for (HookProbe& h : report.hooks) {
    h.chosen.reset();
    h.chosen_target.clear();
    h.needed = true;
    std::vector<std::string> why;
    for (const Attempt& a : h.attempts) {
      if (!Allowed(a.mechanism, backend, tp_form)) continue;
      // connect and accept through the state tracepoint ride on the state
      // hook, in its form.
      bool ok = a.ok && (a.target != kStateTracepoint || a.mechanism == *report.state_form);
      if (ok) {
        h.chosen = a.mechanism;
        h.chosen_target = a.target;
        classes.insert(Class(a.mechanism));
        break;
      }
      why.push_back(fmt::format("{}: {}", MechanismName(a.mechanism), a.reason));
    }
    if (h.chosen) continue;
    if (backend == "fentry" || backend == "kprobe") {
      report.backend_reason = fmt::format("backend {} unavailable: hook {}: {}", backend, h.hook,
                                          fmt::join(why, "; "));
      return absl::FailedPreconditionError(report.backend_reason);
    }
    missing.push_back(h.hook);
  }
  // An accept seen in process context names the owner of an accepted
  // socket once per connection, and TCP's own counters give its bytes: no
  // program needs to run per send or receive.
  std::string io_note;
  if (report.AcceptInProcess()) {
    for (HookProbe& h : report.hooks)
      if (h.hook == "send" || h.hook == "recv") h.needed = false;
    std::erase_if(missing, [](const std::string& m) { return m == "send" || m == "recv"; });
    io_note = "; send and recv not needed: bytes from TCP's own counters";
  }
  if (!report.Chosen("close")) {
    report.backend_reason = "no mechanism attached for the close hook";
    return absl::FailedPreconditionError(report.backend_reason);
  }
  report.backend = backend != "auto" ? std::string(backend)
                   : classes.size() == 1 ? *classes.begin()
                                         : "mixed";
  report.backend_reason =
      missing.empty()
          ? fmt::format("every hook attached ({}){}", fmt::join(classes, ", "), io_note)
          : fmt::format("degraded: no usable mechanism for {}{}", fmt::join(missing, ", "),
                        io_note);
  return absl::OkStatus();
}

}  // namespace svcmap::kernel
