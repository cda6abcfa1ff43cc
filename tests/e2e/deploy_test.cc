// deploy/: the manifests parse and say what docs/deploy.md promises, the
// container's args pass `svcmap agent --check-config`, the unit passes
// `systemd-analyze verify`, and the agent works, exact bytes included,
// under exactly the unit's capability set (setpriv).
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fmt/format.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "nlohmann/json.hpp"

namespace svcmap::e2e {
namespace {

using Json = nlohmann::json;
using std::chrono::seconds;

const std::string kSvcmap = SVCMAP_BIN;
const std::string kPeer = SVCMAP_PEER_BIN;
const std::string kSource = SVCMAP_SOURCE_DIR;
const std::string kDeploy = SVCMAP_SOURCE_DIR "/deploy";

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The YAML documents as JSON, through Debian's python3-yaml.
Json Manifests() {
  RunResult r = RunCmd({"/usr/bin/python3", "-c",
                        "import json, sys, yaml; "
                        "print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
                        kDeploy + "/kubernetes/svcmap.yaml"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return Json::parse(r.out, nullptr, false);
}

const Json* Find(const Json& docs, const std::string& kind) {
  for (const Json& d : docs)
    if (d.is_object() && d.value("kind", "") == kind) return &d;
  return nullptr;
}

// CapabilityBoundingSet=CAP_X CAP_Y -> {"x", "y"}, setpriv's spelling.
std::set<std::string> UnitCapabilities() {
  std::smatch m;
  std::string unit = Slurp(kDeploy + "/systemd/svcmap-agent.service");
  std::set<std::string> caps;
  if (!std::regex_search(unit, m, std::regex("\nCapabilityBoundingSet=([^\n]*)"))) return caps;
  std::istringstream words(m[1].str());
  for (std::string w; words >> w;) {
    std::string name = w.substr(4);  // "CAP_"
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    caps.insert(name);
  }
  return caps;
}

TEST(DeployTest, TheManifestsParseAndHoldWhatTheDocsPromise) {
  Json docs = Manifests();
  ASSERT_TRUE(docs.is_array()) << "not YAML";
  const Json* sa = Find(docs, "ServiceAccount");
  ASSERT_NE(sa, nullptr);
  const Json* ds = Find(docs, "DaemonSet");
  ASSERT_NE(ds, nullptr);
  const Json& pod = (*ds)["spec"]["template"];
  EXPECT_EQ(pod["spec"]["serviceAccountName"], (*sa)["metadata"]["name"]);
  EXPECT_EQ(pod["spec"]["hostPID"], true);
  EXPECT_EQ(pod["metadata"]["annotations"]["prometheus.io/scrape"], "true");
  EXPECT_EQ(pod["metadata"]["annotations"]["prometheus.io/port"], "9464");
  const Json& c = pod["spec"]["containers"][0];
  EXPECT_EQ(c["livenessProbe"]["httpGet"]["path"], "/healthz");
  EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"], "/readyz");
  EXPECT_TRUE(c["resources"].contains("requests") && c["resources"].contains("limits"));
  std::set<std::string> mounts;
  for (const Json& m : c["volumeMounts"]) mounts.insert(m["mountPath"]);
  for (const char* want : {"/sys/kernel/btf", "/sys/fs/bpf", "/sys/kernel/tracing", "/sys/fs/cgroup"})
    EXPECT_TRUE(mounts.contains(want)) << want;
  // The container's capabilities are the unit's.
  std::set<std::string> added;
  for (const Json& cap : c["securityContext"]["capabilities"]["add"]) {
    std::string name = cap;
    for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    added.insert(name);
  }
  EXPECT_EQ(added, UnitCapabilities());
  EXPECT_EQ(c["securityContext"]["capabilities"]["drop"], Json::array({"ALL"}));
}

// The README's "## Quick start" section: its ```sh blocks, in order.
std::vector<std::string> QuickStartBlocks() {
  std::string readme = Slurp(kSource + "/README.md");
  size_t start = readme.find("\n## Quick start\n");
  if (start == std::string::npos) return {};
  size_t end = readme.find("\n## ", start + 1);
  std::string section = readme.substr(start, end - start);
  std::vector<std::string> blocks;
  std::regex fence("```sh\n([^`]*)```");
  for (std::sregex_iterator it(section.begin(), section.end(), fence), last; it != last; ++it) {
    std::string b = (*it)[1].str();
    while (!b.empty() && b.back() == '\n') b.pop_back();
    blocks.push_back(b);
  }
  return blocks;
}

// Debian's minimal images run a root shell with no sudo: each command the
// Quick start names must exist there, on root's default PATH or in the clone.
TEST(DeployTest, TheQuickStartRunsAsWrittenInARootShell) {
  std::vector<std::string> blocks = QuickStartBlocks();
  ASSERT_EQ(blocks.size(), 2u) << "want the run block and the test block";
  const std::vector<std::string> root_path = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                              "/usr/bin", "/sbin", "/bin"};
  for (const std::string& block : blocks) {
    EXPECT_EQ(block.find("sudo"), std::string::npos) << block;
    std::string commands = std::regex_replace(block, std::regex("&&|\n"), "\x1f");
    std::istringstream parts(commands);
    for (std::string cmd; std::getline(parts, cmd, '\x1f');) {
      std::istringstream words(cmd);
      std::string program;
      words >> program;
      if (program.empty()) continue;
      if (program == "./build/svcmap") continue;  // what the block builds
      if (program.rfind("./", 0) == 0) {
        EXPECT_EQ(access((kSource + program.substr(1)).c_str(), X_OK), 0) << program;
        continue;
      }
      bool found = false;
      for (const std::string& dir : root_path)
        found = found || access((dir + "/" + program).c_str(), X_OK) == 0;
      EXPECT_TRUE(found) << program << " is not on root's PATH";
    }
  }
  EXPECT_NE(Slurp(kSource + "/.ci/run").find("exec " + blocks[1] + "\n"), std::string::npos)
      << ".ci/run must run exactly the README's test command: " << blocks[1];
  // The first block's installer, as a root login shell would run it: the
  // packages are present by now, so it only checks them, without sudo.
  RunResult r = RunCmd({"/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "HOME=/root", "/bin/sh", "-c", "cd \"$0\" && ./scripts/install-deps", kSource},
                       std::chrono::seconds(120));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("packages present"), std::string::npos) << r.out << r.err;
}

// A fleet asks its agents what they run: the answer is the commit built.
TEST(DeployTest, VersionNamesTheCommitItWasBuiltFrom) {
  RunResult head = RunCmd({"/usr/bin/git", "-C", kSource, "rev-parse", "--short=12", "HEAD"});
  if (head.exit_code != 0) GTEST_SKIP() << "not a git checkout: " << head.err;
  head.out.pop_back();  // the newline
  RunResult r = RunCmd({kSvcmap, "--version"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("svcmap 0.", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("(revision " + head.out), std::string::npos) << r.out << " vs " << head.out;
}

TEST(DeployTest, TheContainersArgsPassCheckConfig) {
  Json docs = Manifests();
  const Json* ds = Find(docs, "DaemonSet");
  ASSERT_NE(ds, nullptr);
  std::vector<std::string> argv = {kSvcmap};
  for (const Json& a : (*ds)["spec"]["template"]["spec"]["containers"][0]["args"])
    argv.push_back(a);
  argv.push_back("--check-config");
  RunResult r = RunCmd(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("config ok"), std::string::npos) << r.out;
  // And a broken one is refused, naming what is wrong.
  argv.insert(argv.end() - 1, {"--name-rule", "nonsense"});
  r = RunCmd(argv);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("name rule"), std::string::npos) << r.err;
}

// Warnings go through the logger: "svcmap: warn: ..." at the default
// level and at warn, nothing at error. The warning used: a web config with
// basic auth and no TLS, which --check-config reads without privileges.
TEST(DeployTest, WarningsObeyTheLogLevel) {
  const std::string dir = TempDir("loglevel");
  WriteFile(dir + "/web.yml",
            "basic_auth_users:\n  scraper: $2y$10$abcdefghijklmnopqrstuuJ3m0pQOw1HVSeCw3fDf8GJcwT6Cj.Uq\n");
  const std::string warning = "svcmap: warn: --web.config.file " + dir +
                              "/web.yml: basic auth without TLS sends passwords in the clear";
  for (const char* level : {"", "debug", "info", "warn", "error"}) {
    std::vector<std::string> argv = {kSvcmap, "agent", "--web.config.file", dir + "/web.yml",
                                     "--check-config"};
    if (*level) argv.insert(argv.end(), {"--log-level", level});
    RunResult r = RunCmd(argv);
    EXPECT_EQ(r.exit_code, 0) << level << ": " << r.err;
    const bool shown = r.err.find(warning) != std::string::npos;
    EXPECT_EQ(shown, std::string(level) != "error") << "--log-level " << level << ": " << r.err;
    if (std::string(level) == "error") {
      EXPECT_EQ(r.err, "") << r.err;
    }
  }
  RunResult bad = RunCmd({kSvcmap, "agent", "--check-config", "--log-level", "loud"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--log-level"), std::string::npos) << bad.err;
  std::filesystem::remove_all(dir);
}

TEST(DeployTest, TheExampleConfigFilePassesCheckConfig) {
  RunResult r = RunCmd({kSvcmap, "--config", kDeploy + "/svcmap.toml", "agent", "--check-config"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("2 naming rules"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("listen 0.0.0.0:9464"), std::string::npos) << r.out;
}

TEST(DeployTest, TheUnitPassesSystemdAnalyzeVerify) {
  if (Which("systemd-analyze").empty()) GTEST_SKIP() << "no systemd-analyze";
  // The unit as shipped, with ExecStart pointing at this build's binary:
  // verify checks that the executable exists.
  const std::string dir = TempDir("unit");
  std::string unit = Slurp(kDeploy + "/systemd/svcmap-agent.service");
  unit = std::regex_replace(unit, std::regex("/usr/local/sbin/svcmap"), kSvcmap);
  std::ofstream(dir + "/svcmap-agent.service") << unit;
  RunResult r = RunCmd({"systemd-analyze", "verify", "--man=no", dir + "/svcmap-agent.service"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.err.find("svcmap-agent.service:"), std::string::npos) << "warnings: " << r.err;
}

TEST(DeployTest, TheAgentWorksUnderTheUnitsCapabilitiesAlone) {
  if (std::string why = PrivilegeProblem(); !why.empty()) GTEST_SKIP() << why;
  std::set<std::string> caps = UnitCapabilities();
  ASSERT_EQ(caps.size(), 5u);
  std::string bounding = "-all";
  for (const std::string& c : caps) bounding += ",+" + c;
  TwoHosts hosts;
  ASSERT_TRUE(hosts.ok()) << hosts.error();
  const std::string listen = fmt::format("127.0.0.1:{}", FreePort());
  Child agent({"setpriv", "--inh-caps=-all", "--bounding-set=" + bounding, "--", kSvcmap,
               "agent", "--listen", listen, "--netns", hosts.a_path, "--name-rule",
               "cmdline:--name (\\S+)=$1"});
  ASSERT_TRUE(agent.WaitForLine(true, "svcmap: agent on http://" + listen, seconds(60)))
      << agent.Wait(seconds(5)).err;
  // What the process really has.
  RunResult status = RunCmd({"grep", "CapEff", fmt::format("/proc/{}/status", agent.pid())});
  EXPECT_NE(status.out.find("000000c000081004"), std::string::npos) << status.out;
  const int port = 7301;
  Child server(TwoHosts::In(hosts.b, {kPeer, "serve", "--bind", hosts.b_ip4, "--port",
                                      std::to_string(port), "--reply", "4444", "--name",
                                      "cap-server"}));
  ASSERT_TRUE(server.WaitForLine(false, "ready", seconds(30)));
  RunResult client = RunCmd(TwoHosts::In(
      hosts.a, {kPeer, "connect", "--host", hosts.b_ip4, "--port", std::to_string(port),
                "--send", "33333", "--name", "cap-client"}));
  ASSERT_EQ(client.exit_code, 0) << client.err;
  ASSERT_EQ(server.Wait().exit_code, 0);
  const std::string want = fmt::format(
      R"(svcmap_connection_sent_bytes_total{{src_instance_id="cap-client@{0}",src_service_name="cap-client",dst_ip="{1}",dst_port="{2}"}} 33333)",
      hosts.a_ip4, hosts.b_ip4, port);
  std::string metrics;
  for (int i = 0; i < 50 && metrics.find(want) == std::string::npos; ++i) {
    metrics = RunCmd({"curl", "-sf", "http://" + listen + "/metrics"}).out;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_NE(metrics.find(want), std::string::npos) << metrics;
  // BPF, whichever mechanism this kernel gives, not the scanner.
  const size_t at = metrics.find("svcmap_backend_info{backend=\"");
  ASSERT_NE(at, std::string::npos) << metrics;
  const std::string backend = metrics.substr(at + 29, metrics.find('"', at + 29) - at - 29);
  EXPECT_TRUE(backend == "fentry" || backend == "kprobe" || backend == "tracepoint" ||
              backend == "mixed")
      << "the " << backend << " backend under these capabilities, not BPF";
  agent.Signal(SIGTERM);
  EXPECT_EQ(agent.Wait(seconds(30)).exit_code, 0);
}

}  // namespace
}  // namespace svcmap::e2e
