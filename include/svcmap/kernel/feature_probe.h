#ifndef SVCMAP_KERNEL_FEATURE_PROBE_H_
#define SVCMAP_KERNEL_FEATURE_PROBE_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace svcmap::kernel {

// Attach mechanisms, best (cheapest) first.
enum class Mechanism { kFentry, kKprobe, kTpBtf, kTracepoint };
std::string_view MechanismName(Mechanism m);
// tp_btf and classic tracepoints: the two forms of the tracepoint backend.
bool IsTracepoint(Mechanism m);

struct Attempt {
  Mechanism mechanism;
  std::string target;    // "tcp_connect", "sock/inet_sock_set_state", ...
  bool ok = false;       // loaded and attached
  std::string reason;    // why not, when !ok
};

// One hook of the design card and what happened when each mechanism was
// really loaded and attached for it.
struct HookProbe {
  std::string hook;  // connect, accept, send, recv, close
  std::vector<Attempt> attempts;
  std::optional<Mechanism> chosen;
  std::string chosen_target;  // the chosen attempt's target
  // False for send and recv when accept is seen in process context: bytes
  // then come from TCP's own counters and nothing runs per send or receive.
  bool needed = true;
};

struct ProbeReport {
  std::string kernel_release;
  bool btf = false;
  bool tracefs = false;
  // Set when tracefs was not mounted: "mounted by svcmap", or why the
  // mount failed (then the accept hook's syscall tracepoint cannot attach).
  std::string tracefs_note;
  std::vector<HookProbe> hooks;
  // Set by SelectBackend: "fentry", "kprobe", "tracepoint", "mixed" (auto
  // picked different classes per hook), or empty when none is usable.
  std::string backend;
  std::string backend_reason;  // why that backend (or why none)
  // The form of the state tracepoint, which every backend runs.
  std::optional<Mechanism> state_form;
  // BPF iterators, loaded and attached like the hooks: iter/tcp (5.9) for
  // the start-up seed, iter/task_file (5.8) for the seed's second walk and
  // the live refresh of TCP's own byte counts.
  struct Iterator {
    bool ok = false;
    std::string reason;  // why not
  };
  Iterator iter_tcp, iter_task_file;

  const HookProbe* Find(std::string_view hook) const;
  // The mechanism chosen for the tracepoint that serves `hook`.
  std::optional<Mechanism> Chosen(std::string_view hook) const;
  // Whether `hook` is chosen and needed (send and recv are not once
  // accept runs in process context).
  bool Loads(std::string_view hook) const;
  // Whether the chosen accept hook runs in the accepting process
  // (fexit/kretprobe inet_csk_accept, or the accept syscalls' exit), not
  // in softirq on the state tracepoint.
  bool AcceptInProcess() const;
};

inline constexpr char kBtfPath[] = "/sys/kernel/btf/vmlinux";

// Chooses per hook the first mechanism that attached, best first, among
// those `backend` allows: "auto" (all), "fentry", "kprobe" or "tracepoint";
// `tp_form` restricts tracepoints to tp_btf or classic (to exercise the
// fallback). Forcing fentry or kprobe where a hook refused it is an error
// naming the hook and the reason; in auto mode a hook with no mechanism
// only degrades the backend. Fills backend, backend_reason, state_form.
absl::Status SelectBackend(ProbeReport& report, std::string_view backend,
                           std::optional<Mechanism> tp_form);

// Loads and attaches a trivial program for every (hook, mechanism) pair, one
// at a time, then SelectBackend(auto). Needs root; never fails: what it
// could not do is written into the report.
ProbeReport RunFeatureProbe();

}  // namespace svcmap::kernel

#endif  // SVCMAP_KERNEL_FEATURE_PROBE_H_
