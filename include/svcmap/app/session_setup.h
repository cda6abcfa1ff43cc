#ifndef SVCMAP_APP_SESSION_SETUP_H_
#define SVCMAP_APP_SESSION_SETUP_H_

// From validated Options to a running node::Session: the backend the flags
// ask for, the naming rules, the namespace and address the run covers. What
// snapshot, agent and top have in common.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "svcmap/app/options.h"
#include "svcmap/identity/naming.h"
#include "svcmap/kernel/backend.h"
#include "svcmap/kernel/feature_probe.h"
#include "svcmap/node/session.h"

namespace svcmap::app {

absl::Status CheckRoot();

struct Opened {
  std::unique_ptr<kernel::Backend> backend;
  std::string name;  // "fentry", "tracepoint", "mixed", "procfs"
};
// The backend --backend asks for. In auto mode, anything that keeps BPF
// from working (no BTF, the bpf syscall refused, no hook attached) falls
// back to the scanner; a forced BPF backend fails with the reason instead.
absl::StatusOr<Opened> OpenBackend(const Options& o, kernel::ProbeReport& report);

// --name-rule and --pod-list, compiled.
absl::StatusOr<identity::ServiceNamer> MakeNamer(const Options& o);

// Which namespace a run covers, and the address it reports.
struct Scope {
  std::optional<uint32_t> netns;
  std::string instance_ip;
};
absl::StatusOr<Scope> ResolveScope(const Options& o);

enum class RunKind {
  kOneShot,    // snapshot: every process kept for the whole window
  kLongLived,  // agent, top: exited processes folded away, idle flows expire
};
absl::StatusOr<std::unique_ptr<node::Session>> StartSession(const Options& o, const Scope& scope,
                                                            identity::ServiceNamer namer,
                                                            RunKind kind);

// Waits for SIGINT/SIGTERM (blocked by main) or for `d`. True if signalled.
bool WaitForSignal(absl::Duration d);

}  // namespace svcmap::app

#endif  // SVCMAP_APP_SESSION_SETUP_H_
