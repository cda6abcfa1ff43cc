#ifndef SVCMAP_KERNEL_FEATURE_PROBE_H_
#define SVCMAP_KERNEL_FEATURE_PROBE_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace svcmap::kernel {

// Attach mechanisms, best (cheapest) first.
enum class Mechanism { kFentry, kKprobe, kTpBtf, kTracepoint };
std::string_view MechanismName(Mechanism m);

struct Attempt {
  Mechanism mechanism;
  std::string target;    // "tcp_connect", "sock/inet_sock_set_state", ...
  bool ok = false;       // loaded and attached
  bool implemented = true;  // this build has a backend that can use it
  std::string reason;    // why not, when !ok or !implemented
};

// One hook of the design card and what happened when each mechanism was
// really loaded and attached for it.
struct HookProbe {
  std::string hook;  // connect, accept, send, recv, close
  std::vector<Attempt> attempts;
  std::optional<Mechanism> chosen;
};

struct ProbeReport {
  std::string kernel_release;
  bool btf = false;
  bool tracefs = false;
  std::vector<HookProbe> hooks;
  std::string backend;         // "tracepoint", or empty when none is usable
  std::string backend_reason;  // why that backend (or why none)

  const HookProbe* Find(std::string_view hook) const;
  // The mechanism chosen for the tracepoint that serves `hook`.
  std::optional<Mechanism> Chosen(std::string_view hook) const;
};

inline constexpr char kBtfPath[] = "/sys/kernel/btf/vmlinux";

// Restricts the tracepoint backend to one form: kTpBtf or kTracepoint
// (classic). For exercising the fallback on a kernel that has both; a hook
// whose form did not attach is left without a mechanism.
void RestrictTracepointForm(ProbeReport& report, Mechanism form);

// Loads and attaches a trivial program for every (hook, mechanism) pair, one
// at a time, and picks per hook the best mechanism that worked. Needs root;
// never fails: what it could not do is written into the report.
ProbeReport RunFeatureProbe();

}  // namespace svcmap::kernel

#endif  // SVCMAP_KERNEL_FEATURE_PROBE_H_
