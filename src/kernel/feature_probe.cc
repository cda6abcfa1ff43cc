#include "svcmap/kernel/feature_probe.h"

#include <bpf/libbpf.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <memory>

#include "fmt/format.h"
#include "probe.skel.h"
#include "svcmap/kernel/libbpf_error.h"

namespace svcmap::kernel {
namespace {

struct ObjectDeleter {
  void operator()(bpf_object* o) const { bpf_object__close(o); }
};
struct LinkDeleter {
  void operator()(bpf_link* l) const { bpf_link__destroy(l); }
};
using ObjectPtr = std::unique_ptr<bpf_object, ObjectDeleter>;
using LinkPtr = std::unique_ptr<bpf_link, LinkDeleter>;

struct Candidate {
  Mechanism mechanism;
  const char* program;  // in bpf/probe.bpf.c
  const char* target;
};

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
       {{Mechanism::kFentry, "fentry_tcp_close", "tcp_close"},
        {Mechanism::kKprobe, "kprobe_tcp_close", "tcp_close"},
        {Mechanism::kTpBtf, "btf_destroy", "tcp/tcp_destroy_sock"},
        {Mechanism::kTracepoint, "tp_destroy", "tcp/tcp_destroy_sock"}}},
  };
  return kHooks;
}

bool PathExists(const char* path) { return access(path, F_OK) == 0; }

bool TracefsMounted() {
  return PathExists("/sys/kernel/tracing/events") ||
         PathExists("/sys/kernel/debug/tracing/events");
}

// Adds what errno alone does not say.
std::string Explain(Mechanism m, const std::string& stage, int err) {
  std::string why = fmt::format("{}: {}", stage, ErrnoText(err));
  if (m == Mechanism::kKprobe && !PathExists("/sys/bus/event_source/devices/kprobe") &&
      !PathExists("/sys/kernel/tracing/kprobe_events")) {
    return why + "; kprobes are not compiled in (no kprobe PMU, no kprobe_events)";
  }
  if (m == Mechanism::kFentry && (err == EPERM || err == EACCES)) {
    return why + "; the kernel refuses BPF trampolines here (lockdown, an LSM or a hypervisor policy)";
  }
  if (m == Mechanism::kTracepoint && !TracefsMounted()) {
    return why + "; tracefs is not mounted at /sys/kernel/tracing";
  }
  if (m == Mechanism::kTpBtf && !PathExists(kBtfPath)) {
    return why + "; no kernel BTF";
  }
  return why;
}

// Loads `program` alone from a fresh copy of the probe object, attaches it,
// and detaches at once.
Attempt Try(const Candidate& c) {
  Attempt a{c.mechanism, c.target};
  size_t size = 0;
  const void* elf = probe_bpf__elf_bytes(&size);
  LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = "svcmap_probe");
  ObjectPtr obj(bpf_object__open_mem(elf, size, &opts));
  if (!obj) {
    a.reason = Explain(c.mechanism, "open", errno);
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
    a.reason = Explain(c.mechanism, "load", err);
    return a;
  }
  LinkPtr link(bpf_program__attach(prog));
  if (!link) {
    a.reason = Explain(c.mechanism, "attach", errno);
    return a;
  }
  a.ok = true;
  return a;
}

}  // namespace

static void ChooseBackend(ProbeReport& report);

std::string_view MechanismName(Mechanism m) {
  switch (m) {
    case Mechanism::kFentry: return "fentry";
    case Mechanism::kKprobe: return "kprobe";
    case Mechanism::kTpBtf: return "tp_btf";
    case Mechanism::kTracepoint: return "tracepoint";
  }
  return "?";
}

const HookProbe* ProbeReport::Find(std::string_view hook) const {
  for (const HookProbe& h : hooks)
    if (h.hook == hook) return &h;
  return nullptr;
}

std::optional<Mechanism> ProbeReport::Chosen(std::string_view hook) const {
  const HookProbe* h = Find(hook);
  return h ? h->chosen : std::nullopt;
}

void RestrictTracepointForm(ProbeReport& report, Mechanism form) {
  for (HookProbe& h : report.hooks) {
    h.chosen.reset();
    for (const Attempt& a : h.attempts)
      if (a.mechanism == form && a.ok) h.chosen = form;
  }
  ChooseBackend(report);
}

ProbeReport RunFeatureProbe() {
  ProbeReport report;
  utsname u{};
  if (uname(&u) == 0) report.kernel_release = u.release;
  report.btf = PathExists(kBtfPath);
  report.tracefs = TracefsMounted();

  // connect and accept share a tracepoint: probe each program once.
  std::map<std::string, Attempt> done;
  for (const HookSpec& spec : Hooks()) {
    HookProbe hook{spec.hook};
    for (const Candidate& c : spec.candidates) {
      auto it = done.find(c.program);
      if (it == done.end()) it = done.emplace(c.program, Try(c)).first;
      Attempt a = it->second;
      if (c.mechanism == Mechanism::kFentry || c.mechanism == Mechanism::kKprobe) {
        // This build's only backend is the tracepoint one; say so rather
        // than pretend a working fentry was used.
        a.implemented = false;
        if (a.ok) a.reason = "attached in the probe, but this build has no backend for it";
      }
      if (a.ok && a.implemented && !hook.chosen) hook.chosen = a.mechanism;
      hook.attempts.push_back(std::move(a));
    }
    report.hooks.push_back(std::move(hook));
  }

  ChooseBackend(report);
  return report;
}

void ChooseBackend(ProbeReport& report) {
  report.backend.clear();
  // The tracepoint backend cannot see connections without the state hook;
  // the byte hooks are optional (a kernel before 6.3 lacks them).
  if (!report.btf) {
    report.backend_reason = fmt::format("no kernel BTF at {}: CO-RE programs cannot load", kBtfPath);
  } else if (!report.Chosen("connect") || !report.Chosen("close")) {
    report.backend_reason =
        "neither tp_btf nor a classic tracepoint attached to sock/inet_sock_set_state "
        "and tcp/tcp_destroy_sock";
  } else {
    report.backend = "tracepoint";
    std::vector<std::string> missing;
    for (const HookProbe& h : report.hooks)
      if (!h.chosen) missing.push_back(h.hook);
    report.backend_reason =
        missing.empty()
            ? "every hook attached through a tracepoint"
            : fmt::format("degraded: no usable mechanism for {}", fmt::join(missing, ", "));
  }
}

}  // namespace svcmap::kernel
