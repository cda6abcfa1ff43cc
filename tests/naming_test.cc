// Service naming from canned cgroup paths, pod lists and process facts.
#include "svcmap/identity/naming.h"

#include <chrono>

#include "gtest/gtest.h"

namespace svcmap::identity {
namespace {

const char kCid[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(CgroupPathTest, SystemdUnitsContainersAndPods) {
  EXPECT_EQ(ParseCgroupPath("/system.slice/nginx.service").systemd_unit, "nginx.service");
  EXPECT_EQ(ParseCgroupPath("/user.slice/user-1000.slice/session-3.scope").systemd_unit, "");
  EXPECT_EQ(
      ParseCgroupPath("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service")
          .systemd_unit,
      "foo.service");

  CgroupInfo docker = ParseCgroupPath(std::string("/system.slice/docker-") + kCid + ".scope");
  EXPECT_EQ(docker.container_id, kCid);
  EXPECT_EQ(ParseCgroupPath(std::string("/docker/") + kCid).container_id, kCid);

  // Kubernetes, systemd driver: the UID's dashes are escaped as underscores.
  CgroupInfo k8s = ParseCgroupPath(
      std::string("/kubepods.slice/kubepods-burstable.slice/"
                  "kubepods-burstable-pod6f0e1a2b_3c4d_4e5f_8a9b_0c1d2e3f4a5b.slice/"
                  "cri-containerd-") +
      kCid + ".scope");
  EXPECT_EQ(k8s.pod_uid, "6f0e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b");
  EXPECT_EQ(k8s.container_id, kCid);
  // cgroupfs driver.
  CgroupInfo fs = ParseCgroupPath(
      std::string("/kubepods/besteffort/pod6f0e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b/") + kCid);
  EXPECT_EQ(fs.pod_uid, "6f0e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b");
  EXPECT_EQ(fs.container_id, kCid);

  // Not ids: too short, not hex, no separator.
  EXPECT_EQ(ParseCgroupPath("/docker/0123").container_id, "");
  EXPECT_EQ(ParseCgroupPath(std::string("/x") + kCid).container_id, "");
  EXPECT_EQ(ParseCgroupPath("/kubepods/podnot-a-uid").pod_uid, "");
  EXPECT_EQ(ParseCgroupPath("").systemd_unit, "");
  EXPECT_EQ(ParseCgroupPath("////").container_id, "");
}

TEST(PodListTest, WorkloadFromLabelsOrOwnerName) {
  absl::StatusOr<PodIndex> pods = ParsePodList(R"({"kind": "PodList", "items": [
    {"metadata": {"uid": "u1", "name": "mysql-0", "namespace": "db"}},
    {"metadata": {"uid": "u2", "name": "app-7d9f8c6b5-x2x4z", "namespace": "web"}},
    {"metadata": {"uid": "u3", "name": "whatever-1a2b3", "namespace": "web",
                  "labels": {"app.kubernetes.io/name": "nginx", "app": "other"}}},
    {"metadata": {"uid": "u4", "name": "standalone", "labels": {"app": "redis"}}},
    {"metadata": {"name": "no-uid"}},
    "not an object"
  ]})");
  ASSERT_TRUE(pods.ok()) << pods.status();
  ASSERT_EQ(pods->size(), 4u);
  EXPECT_EQ(pods->at("u1").workload, "mysql");
  EXPECT_EQ(pods->at("u1").ns, "db");
  EXPECT_EQ(pods->at("u2").workload, "app");
  EXPECT_EQ(pods->at("u3").workload, "nginx");
  EXPECT_EQ(pods->at("u4").workload, "redis");
  EXPECT_FALSE(ParsePodList("{").ok());
  EXPECT_FALSE(ParsePodList(R"({"items": 3})").ok());
  EXPECT_FALSE(ParsePodList("[]").ok());
}

TEST(ServiceNamerTest, FirstMatchWinsInTheDocumentedOrder) {
  const std::string pod_cgroup =
      std::string("/kubepods/burstable/pod6f0e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b/") + kCid;
  PodIndex pods;
  pods["6f0e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"] = PodInfo{"mysql-0", "db", "mysql"};
  absl::StatusOr<ServiceNamer> n = ServiceNamer::Create(
      {{NamingRule::Field::kCmdline, "-jar (\\w+)\\.jar", "$1"},
       {NamingRule::Field::kCgroup, "special\\.service", "renamed"}},
      pods);
  ASSERT_TRUE(n.ok()) << n.status();

  auto name = [&](ProcessFacts f) { return n->Name(f); };
  ServiceName r = name({"java", "/usr/bin/java", "java -Xmx1g -jar billing.jar", pod_cgroup});
  EXPECT_EQ(r.name, "billing");
  EXPECT_EQ(r.source, "rule");
  r = name({"mysqld", "/usr/sbin/mysqld", "mysqld", pod_cgroup});
  EXPECT_EQ(r.name, "mysql");
  EXPECT_EQ(r.source, "pod");
  r = name({"redis", "/usr/bin/redis-server", "redis",
            "/kubepods/burstable/pod11111111-2222-3333-4444-555555555555/" + std::string(kCid)});
  EXPECT_EQ(r.name, "pod-11111111");  // no pod list entry: the UID, shortened
  r = name({"nginx", "/usr/sbin/nginx", "nginx: worker", "/system.slice/nginx.service"});
  EXPECT_EQ(r.name, "nginx");
  EXPECT_EQ(r.source, "systemd");
  r = name({"agetty", "/sbin/agetty", "", "/system.slice/system-getty.slice/getty@tty1.service"});
  EXPECT_EQ(r.name, "getty");
  r = name({"x", "/usr/bin/x", "", "/system.slice/special.service"});
  EXPECT_EQ(r.name, "renamed");
  r = name({"app", "/app", "", std::string("/system.slice/docker-") + kCid + ".scope"});
  EXPECT_EQ(r.name, "container-0123456789ab");
  EXPECT_EQ(r.source, "container");
  r = name({"python3", "/usr/bin/python3.11 (deleted)", "", "/user.slice/session-1.scope"});
  EXPECT_EQ(r.name, "python3.11");
  EXPECT_EQ(r.source, "exe");
  r = name({"kworker", "", "", ""});
  EXPECT_EQ(r.name, "kworker");
  EXPECT_EQ(r.source, "comm");
}

TEST(ServiceNamerTest, BadRulesNameTheRule) {
  absl::StatusOr<ServiceNamer> n =
      ServiceNamer::Create({{NamingRule::Field::kExe, "ok", "a"}, {NamingRule::Field::kExe, "(", "b"}});
  ASSERT_FALSE(n.ok());
  EXPECT_NE(std::string(n.status().message()).find("rules[1].match"), std::string::npos)
      << n.status();
  n = ServiceNamer::Create({{NamingRule::Field::kExe, "x", ""}});
  ASSERT_FALSE(n.ok());
  EXPECT_NE(std::string(n.status().message()).find("rules[0].name"), std::string::npos);
}

// RE2: time linear in the subject, whatever the pattern. std::regex takes
// exponential time on this one (measured: beyond a minute at 30 characters).
TEST(ServiceNamerTest, APathologicalRuleCannotStallNaming) {
  absl::StatusOr<ServiceNamer> n =
      ServiceNamer::Create({{NamingRule::Field::kCmdline, "(a*)*b", "never"},
                            {NamingRule::Field::kCmdline, "(x+x+)+y", "never"}});
  ASSERT_TRUE(n.ok()) << n.status();
  ProcessFacts f;
  f.cmdline = std::string(4096, 'a') + std::string(4096, 'x');
  f.comm = "busy";
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(n->Name(f).name, "busy");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
}

TEST(ServiceNamerTest, NamesExpandGroupsTheWholeMatchAndDollars) {
  absl::StatusOr<ServiceNamer> n = ServiceNamer::Create(
      {{NamingRule::Field::kCmdline, "--svc=(\\w+) --env=(\\w+)", "$2-$1"},
       {NamingRule::Field::kExe, "bin/(\\w+)", "$0|$&|$$|$9|$"}});
  ASSERT_TRUE(n.ok()) << n.status();
  ProcessFacts f;
  f.cmdline = "java --svc=orders --env=prod";
  EXPECT_EQ(n->Name(f).name, "prod-orders");
  f.cmdline.clear();
  f.exe = "/usr/bin/tool";
  EXPECT_EQ(n->Name(f).name, "bin/tool|bin/tool|$||$");
}

TEST(ServiceNamerTest, RuleFlags) {
  absl::StatusOr<NamingRule> r = ParseNamingRule("cmdline:--name (\\S+)=$1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->field, NamingRule::Field::kCmdline);
  EXPECT_EQ(r->pattern, "--name (\\S+)");
  EXPECT_EQ(r->name, "$1");
  r = ParseNamingRule("cgroup:a=b=c");  // the last '=' splits
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->pattern, "a=b");
  EXPECT_EQ(r->name, "c");
  for (const char* bad : {"", "exe", "exe:x", "pid:x=y", "exe:=y", "exe:x=", "=x:y"})
    EXPECT_FALSE(ParseNamingRule(bad).ok()) << bad;
}

}  // namespace
}  // namespace svcmap::identity
