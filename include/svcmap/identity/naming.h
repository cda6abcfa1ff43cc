#ifndef SVCMAP_IDENTITY_NAMING_H_
#define SVCMAP_IDENTITY_NAMING_H_

// What an operator would call a process: a user rule, its Kubernetes pod, its
// systemd unit, its container, its executable, or its comm, first match wins.
// Pure: facts in, name out; the facts are read from /proc elsewhere.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace svcmap::identity {

// What a cgroup v2 path says about a process. Handles systemd units
// ("/system.slice/nginx.service"), Docker and containerd/CRI-O scopes under
// either cgroup driver, and Kubernetes pods (".../kubepods-burstable-pod<uid>.slice/
// cri-containerd-<id>.scope" or "/kubepods/burstable/pod<uid>/<id>").
struct CgroupInfo {
  std::string systemd_unit;  // "nginx.service"; empty if none
  std::string container_id;  // 64 hex digits; empty if none
  std::string pod_uid;       // "6f0e...-..."; empty if none
};
CgroupInfo ParseCgroupPath(std::string_view path);

// One pod from the node's pod list (kubelet /pods, or `kubectl get pods -o
// json`): what a pod UID stands for.
struct PodInfo {
  std::string name;
  std::string ns;        // namespace
  std::string workload;  // app.kubernetes.io/name or app label, else the owner's name
};
using PodIndex = absl::flat_hash_map<std::string, PodInfo>;  // by UID
absl::StatusOr<PodIndex> ParsePodList(std::string_view json);

struct ProcessFacts {
  std::string comm;
  std::string exe;      // /proc/<pid>/exe target; empty if unreadable
  std::string cmdline;  // arguments joined by spaces
  std::string cgroup;   // the cgroup v2 path ("0::" line)
};

// A user rule: when `field` matches `pattern` (RE2 syntax, searched), the
// name is `name`, in which $1..$9 stand for the pattern's groups, $0 (or
// $&) for the whole match and $$ for a dollar sign. RE2 runs in time linear
// in the subject, whatever the pattern: an operator's rule cannot stall
// the agent (std::regex backtracks, exponentially on patterns like (a*)*b).
struct NamingRule {
  enum class Field { kExe, kCmdline, kCgroup };
  Field field = Field::kExe;
  std::string pattern;
  std::string name;
};

// "exe:REGEX=NAME", "cmdline:REGEX=NAME" or "cgroup:REGEX=NAME" (the last
// '=' separates the name), as --name-rule takes it.
absl::StatusOr<NamingRule> ParseNamingRule(std::string_view text);

struct ServiceName {
  std::string name;
  std::string source;  // "rule", "pod", "systemd", "container", "exe", "comm"
};

class ServiceNamer {
 public:
  ServiceNamer();
  ~ServiceNamer();
  ServiceNamer(ServiceNamer&&) noexcept;
  ServiceNamer& operator=(ServiceNamer&&) noexcept;

  // Compiles the rules; InvalidArgument names the rule that does not.
  static absl::StatusOr<ServiceNamer> Create(std::vector<NamingRule> rules, PodIndex pods = {});
  ServiceName Name(const ProcessFacts& facts) const;

 private:
  struct Compiled;
  std::vector<std::unique_ptr<Compiled>> rules_;
  PodIndex pods_;
};

}  // namespace svcmap::identity

#endif  // SVCMAP_IDENTITY_NAMING_H_
