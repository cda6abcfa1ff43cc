#include "svcmap/identity/naming.h"

#include <algorithm>

#include "fmt/format.h"
#include "nlohmann/json.hpp"
#include "re2/re2.h"

namespace svcmap::identity {
namespace {

bool IsHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

// A 64-hex-digit container id at the end of `seg`, after an optional
// runtime prefix ("docker-", "cri-containerd-", "crio-", "libpod-") and
// before an optional ".scope".
std::string ContainerIdOf(std::string_view seg) {
  if (seg.size() > 6 && seg.substr(seg.size() - 6) == ".scope") seg.remove_suffix(6);
  if (seg.size() < 64) return {};
  std::string_view id = seg.substr(seg.size() - 64);
  if (!IsHex(id)) return {};
  std::string_view prefix = seg.substr(0, seg.size() - 64);
  if (!prefix.empty() && prefix.back() != '-' && prefix.back() != ':') return {};
  return std::string(id);
}

// "kubepods-burstable-pod6f0e1a2b_3c4d_....slice" or "pod6f0e1a2b-3c4d-...".
std::string PodUidOf(std::string_view seg) {
  if (seg.size() > 6 && seg.substr(seg.size() - 6) == ".slice") seg.remove_suffix(6);
  size_t at = seg.rfind("pod");
  if (at == std::string_view::npos || (at != 0 && seg[at - 1] != '-')) return {};
  std::string uid(seg.substr(at + 3));
  std::replace(uid.begin(), uid.end(), '_', '-');  // the systemd driver's escaping
  if (uid.size() != 36 || uid[8] != '-' || uid[13] != '-' || uid[18] != '-' || uid[23] != '-')
    return {};
  return uid;
}

// "mysql-7d9f8c6b5-x2x4z" (a Deployment's pod) -> "mysql"; "web-0" -> "web".
std::string StripGeneratedSuffix(std::string name) {
  auto tail_alnum = [](std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    });
  };
  size_t dash = name.rfind('-');
  if (dash == std::string::npos) return name;
  std::string_view last = std::string_view(name).substr(dash + 1);
  bool ordinal = std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (ordinal && !last.empty()) return name.substr(0, dash);  // StatefulSet
  if (last.size() == 5 && tail_alnum(last)) {
    name.resize(dash);
    size_t d2 = name.rfind('-');
    // A ReplicaSet's pod-template hash: 6 to 10 characters.
    if (d2 != std::string::npos && name.size() - d2 - 1 >= 6 && name.size() - d2 - 1 <= 10 &&
        tail_alnum(std::string_view(name).substr(d2 + 1)))
      name.resize(d2);
    return name;
  }
  return name;
}

std::string Basename(std::string_view path) {
  // "/usr/sbin/nginx (deleted)": an upgraded binary still running.
  constexpr std::string_view kDeleted = " (deleted)";
  if (path.size() > kDeleted.size() && path.substr(path.size() - kDeleted.size()) == kDeleted)
    path.remove_suffix(kDeleted.size());
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

}  // namespace

CgroupInfo ParseCgroupPath(std::string_view path) {
  CgroupInfo out;
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view seg = path.substr(0, slash);
    path.remove_prefix(slash == std::string_view::npos ? path.size() : slash + 1);
    if (seg.empty()) continue;
    if (std::string id = ContainerIdOf(seg); !id.empty()) {
      out.container_id = std::move(id);
      continue;
    }
    if (std::string uid = PodUidOf(seg); !uid.empty()) {
      out.pod_uid = std::move(uid);
      continue;
    }
    // The innermost service wins: "/system.slice/containerd.service" names
    // containerd itself, but a container below it is named by its id.
    if (seg.size() > 8 && seg.substr(seg.size() - 8) == ".service") out.systemd_unit = seg;
  }
  return out;
}

absl::StatusOr<PodIndex> ParsePodList(std::string_view json) {
  nlohmann::json doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError("pod list: not JSON");
  if (!doc.is_object() || !doc.contains("items") || !doc["items"].is_array())
    return absl::InvalidArgumentError("pod list: no \"items\" array (want a PodList)");
  PodIndex out;
  for (const nlohmann::json& item : doc["items"]) {
    if (!item.is_object() || !item.contains("metadata") || !item["metadata"].is_object())
      continue;
    const nlohmann::json& md = item["metadata"];
    auto str = [](const nlohmann::json& o, const char* k) -> std::string {
      return o.contains(k) && o[k].is_string() ? o[k].get<std::string>() : std::string();
    };
    std::string uid = str(md, "uid");
    if (uid.empty()) continue;
    PodInfo p;
    p.name = str(md, "name");
    p.ns = str(md, "namespace");
    if (md.contains("labels") && md["labels"].is_object()) {
      p.workload = str(md["labels"], "app.kubernetes.io/name");
      if (p.workload.empty()) p.workload = str(md["labels"], "app");
    }
    if (p.workload.empty() && !p.name.empty()) p.workload = StripGeneratedSuffix(p.name);
    out.insert_or_assign(std::move(uid), std::move(p));
  }
  return out;
}

absl::StatusOr<NamingRule> ParseNamingRule(std::string_view text) {
  size_t colon = text.find(':');
  size_t eq = text.rfind('=');
  if (colon == std::string_view::npos || eq == std::string_view::npos || eq < colon)
    return absl::InvalidArgumentError(
        fmt::format("invalid name rule '{}': want FIELD:REGEX=NAME, FIELD one of exe, cmdline, "
                    "cgroup",
                    text));
  NamingRule r;
  std::string_view field = text.substr(0, colon);
  if (field == "exe")
    r.field = NamingRule::Field::kExe;
  else if (field == "cmdline")
    r.field = NamingRule::Field::kCmdline;
  else if (field == "cgroup")
    r.field = NamingRule::Field::kCgroup;
  else
    return absl::InvalidArgumentError(fmt::format(
        "invalid name rule '{}': field '{}' is not exe, cmdline or cgroup", text, field));
  r.pattern = std::string(text.substr(colon + 1, eq - colon - 1));
  r.name = std::string(text.substr(eq + 1));
  if (r.pattern.empty() || r.name.empty())
    return absl::InvalidArgumentError(
        fmt::format("invalid name rule '{}': empty regex or name", text));
  return r;
}

struct ServiceNamer::Compiled {
  NamingRule rule;
  std::unique_ptr<re2::RE2> re;
};

ServiceNamer::ServiceNamer() = default;
ServiceNamer::~ServiceNamer() = default;
ServiceNamer::ServiceNamer(ServiceNamer&&) noexcept = default;
ServiceNamer& ServiceNamer::operator=(ServiceNamer&&) noexcept = default;

namespace {

// `tmpl` with $N replaced by group N of the match (empty if it did not
// take part), $& by the whole match and $$ by '$'.
std::string Expand(std::string_view tmpl, const re2::StringPiece* groups, int ngroups) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    const char c = tmpl[i];
    if (c != '$' || i + 1 == tmpl.size()) {
      out.push_back(c);
      continue;
    }
    const char next = tmpl[i + 1];
    if (next == '$') {
      out.push_back('$');
      ++i;
    } else if (next == '&' || (next >= '0' && next <= '9')) {
      const int g = next == '&' ? 0 : next - '0';
      if (g < ngroups && groups[g].data() != nullptr) out.append(groups[g].data(), groups[g].size());
      ++i;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<ServiceNamer> ServiceNamer::Create(std::vector<NamingRule> rules, PodIndex pods) {
  ServiceNamer n;
  for (size_t i = 0; i < rules.size(); ++i) {
    if (rules[i].name.empty())
      return absl::InvalidArgumentError(fmt::format("rules[{}].name: empty", i));
    re2::RE2::Options opts;
    opts.set_log_errors(false);
    auto re = std::make_unique<re2::RE2>(rules[i].pattern, opts);
    if (!re->ok())
      return absl::InvalidArgumentError(fmt::format("rules[{}].match: invalid regex '{}': {}", i,
                                                    rules[i].pattern, re->error()));
    n.rules_.push_back(
        std::make_unique<Compiled>(Compiled{std::move(rules[i]), std::move(re)}));
  }
  n.pods_ = std::move(pods);
  return n;
}

ServiceName ServiceNamer::Name(const ProcessFacts& f) const {
  for (const std::unique_ptr<Compiled>& c : rules_) {
    const std::string& subject = c->rule.field == NamingRule::Field::kExe       ? f.exe
                                 : c->rule.field == NamingRule::Field::kCmdline ? f.cmdline
                                                                                : f.cgroup;
    // $0..$9: at most ten groups are ever needed.
    const int ngroups = std::min(c->re->NumberOfCapturingGroups() + 1, 10);
    re2::StringPiece groups[10];
    if (c->re->Match(subject, 0, subject.size(), re2::RE2::UNANCHORED, groups, ngroups)) {
      std::string name = Expand(c->rule.name, groups, ngroups);
      if (!name.empty()) return {std::move(name), "rule"};
    }
  }
  CgroupInfo cg = ParseCgroupPath(f.cgroup);
  if (!cg.pod_uid.empty()) {
    if (auto it = pods_.find(cg.pod_uid); it != pods_.end() && !it->second.workload.empty())
      return {it->second.workload, "pod"};
    return {"pod-" + cg.pod_uid.substr(0, 8), "pod"};
  }
  if (!cg.systemd_unit.empty() && cg.container_id.empty()) {
    std::string unit = cg.systemd_unit.substr(0, cg.systemd_unit.size() - 8);
    // Template instances ("getty@tty1") keep the template's name.
    if (size_t at = unit.find('@'); at != std::string::npos && at > 0) unit.resize(at);
    return {unit, "systemd"};
  }
  if (!cg.container_id.empty()) return {"container-" + cg.container_id.substr(0, 12), "container"};
  if (std::string base = Basename(f.exe); !base.empty()) return {base, "exe"};
  return {f.comm.empty() ? "unknown" : f.comm, "comm"};
}

}  // namespace svcmap::identity
