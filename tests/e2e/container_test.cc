// deploy/Dockerfile, built and run for real with Debian's podman: a debian:12
// base made here by mmdebstrap (no registry is reachable), the image built
// from this tree, and its agent run with the DaemonSet's settings (hostPID,
// host network, the five capabilities, read-only root, its mounts and
// limits), each read from deploy/kubernetes/svcmap.yaml, counting a
// workload's bytes exactly and remote-writing them to a store.
//
// podman keeps its images in a storage root of the test's own, removed at
// the end: the machine's images are neither used nor touched.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <regex>
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
using std::chrono::minutes;
using std::chrono::seconds;

const std::string kSvcmap = SVCMAP_BIN;
const std::string kPeer = SVCMAP_PEER_BIN;
const std::string kSource = SVCMAP_SOURCE_DIR;

// The DaemonSet's pod spec, as JSON through Debian's python3-yaml.
Json PodSpec() {
  RunResult r = RunCmd({"/usr/bin/python3", "-c",
                        "import json, sys, yaml\n"
                        "for d in yaml.safe_load_all(open(sys.argv[1])):\n"
                        "  if d and d.get('kind') == 'DaemonSet':\n"
                        "    print(json.dumps(d['spec']['template']['spec']))\n",
                        kSource + "/deploy/kubernetes/svcmap.yaml"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return Json::parse(r.out, nullptr, false);
}

// `podman run` flags for what the pod spec asks of the container runtime.
// Anything in securityContext this does not translate fails the test, so a
// new setting in the manifest cannot go untested here.
std::vector<std::string> RunFlags(const Json& pod, std::string* error) {
  std::vector<std::string> flags;
  const Json& c = pod["containers"][0];
  if (pod.value("hostPID", false)) flags.push_back("--pid=host");
  if (pod.value("hostNetwork", false)) flags.push_back("--network=host");
  for (const auto& [key, value] : c["securityContext"].items()) {
    if (key == "runAsUser") {
      flags.push_back(fmt::format("--user={}", value.get<int>()));
    } else if (key == "privileged") {
      if (value.get<bool>()) flags.push_back("--privileged");
    } else if (key == "allowPrivilegeEscalation") {
      if (!value.get<bool>()) flags.push_back("--security-opt=no-new-privileges");
    } else if (key == "readOnlyRootFilesystem") {
      if (value.get<bool>()) flags.push_back("--read-only");
    } else if (key == "capabilities") {
      for (const Json& cap : value.value("drop", Json::array()))
        flags.push_back("--cap-drop=" + cap.get<std::string>());
      for (const Json& cap : value.value("add", Json::array()))
        flags.push_back("--cap-add=" + cap.get<std::string>());
    } else if (key == "seccompProfile") {
      if (value.value("type", "") != "Unconfined") {
        *error = "seccompProfile " + value.dump() + " has no podman equivalent here";
        return {};
      }
      flags.push_back("--security-opt=seccomp=unconfined");
    } else {
      *error = "securityContext." + key + " is not translated to podman";
      return {};
    }
  }
  const Json& limits = c["resources"]["limits"];
  if (limits.contains("memory")) {
    std::string m = limits["memory"];  // "256Mi"
    if (m.size() < 3 || m.substr(m.size() - 2) != "Mi") {
      *error = "memory limit " + m + " is not in Mi";
      return {};
    }
    flags.push_back("--memory=" + m.substr(0, m.size() - 2) + "m");
  }
  if (limits.contains("cpu")) {
    std::string cpu = limits["cpu"];  // "500m"
    flags.push_back(fmt::format("--cpus={}", cpu.back() == 'm'
                                                 ? std::stod(cpu.substr(0, cpu.size() - 1)) / 1000
                                                 : std::stod(cpu)));
  }
  for (const Json& mount : c["volumeMounts"]) {
    std::string host;
    for (const Json& v : pod["volumes"])
      if (v["name"] == mount["name"]) host = v["hostPath"]["path"];
    if (host.empty()) {
      *error = "volume " + mount["name"].get<std::string>() + " is not a hostPath";
      return {};
    }
    std::string opts = mount.value("readOnly", false) ? "ro" : "rw";
    if (mount.value("mountPropagation", "") == "HostToContainer") opts += ",rslave";
    flags.push_back(fmt::format("--volume={}:{}:{}", host, mount["mountPath"].get<std::string>(),
                                opts));
  }
  return flags;
}

// The value after `flag` in the container's args, replaced by `value`.
void SetArg(std::vector<std::string>& args, const std::string& flag, const std::string& value) {
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == flag) {
      args[i + 1] = value;
      return;
    }
  ADD_FAILURE() << "the DaemonSet's args have no " << flag;
}

class Podman {
 public:
  explicit Podman(std::string dir) : dir_(std::move(dir)) {}
  ~Podman() {
    // Containers first (their overlay mounts), then the whole storage root.
    RunCmd(Cmd({"rm", "--all", "--force", "--time=5"}), seconds(60));
    RunCmd(Cmd({"system", "reset", "--force"}), seconds(120));
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  // runc: crun cannot start containers in some sandboxes (it fails on
  // cgroups there); the ulimits keep podman's defaults (a million open
  // files) under hard limits a sandbox may impose.
  std::vector<std::string> Cmd(std::vector<std::string> args) const {
    std::vector<std::string> argv = {"podman", "--root", dir_ + "/storage", "--runroot",
                                     dir_ + "/run", "--runtime", "runc"};
    argv.insert(argv.end(), args.begin(), args.end());
    if (args[0] == "build" || args[0] == "run") {
      argv.insert(argv.begin() + 8, {"--ulimit=nofile=1024:1024", "--ulimit=nproc=4096:4096"});
    }
    return argv;
  }
  RunResult Run(std::vector<std::string> args, std::chrono::milliseconds timeout = minutes(2)) {
    return RunCmd(Cmd(std::move(args)), timeout);
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

// mmdebstrap's apt options: the host's own proxy and validity settings, so
// the base reaches the mirror the way the host's apt does.
std::vector<std::string> HostAptOptions() {
  std::vector<std::string> opts;
  RunResult dump = RunCmd({"apt-config", "dump"});
  std::regex keep(R"(^Acquire::(https?::Proxy|Check-Valid-Until|Check-Date) .*;$)");
  std::istringstream lines(dump.out);
  for (std::string line; std::getline(lines, line);)
    if (std::regex_match(line, keep)) opts.push_back("--aptopt=" + line);
  return opts;
}

TEST(ContainerTest, TheImageBuildsAndItsAgentCountsExactBytesWithTheDaemonSetsSettings) {
  if (std::string why = PrivilegeProblem(); !why.empty()) GTEST_SKIP() << why;
  for (const char* tool : {"podman", "mmdebstrap", "runc"})
    if (Which(tool).empty()) GTEST_SKIP() << "no " << tool << " (scripts/install-deps installs it)";

  // The node's tracefs, which the DaemonSet mounts from the host.
  HostTracefs tracefs;
  ASSERT_TRUE(tracefs.ok());
  Podman podman(TempDir("container"));
  ASSERT_FALSE(podman.dir().empty());

  // The base: Debian 12 from the mirror, as both tags the Dockerfile names.
  std::vector<std::string> strap = {"mmdebstrap", "--variant=minbase", "--format=tar", "--quiet"};
  for (const std::string& o : HostAptOptions()) strap.push_back(o);
  strap.insert(strap.end(), {"bookworm", podman.dir() + "/debian12.tar"});
  RunResult r = RunCmd(strap, minutes(5));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  r = podman.Run({"import", podman.dir() + "/debian12.tar", "localhost/debian:12"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(podman.Run({"tag", "localhost/debian:12", "localhost/debian:12-slim"}).exit_code, 0);

  // The image, carrying the revision this build names (with -dirty for an
  // uncommitted tree: the context is the working tree).
  RunResult version = RunCmd({kSvcmap, "--version"});
  std::smatch m;
  ASSERT_TRUE(std::regex_search(version.out, m, std::regex(R"(\(revision ([^)]+)\))")))
      << version.out;
  const std::string image = "localhost/svcmap:container-test";
  r = podman.Run({"build", "--network=host", "--build-arg=SVCMAP_REVISION=" + m[1].str(),
                  "--file=" + kSource + "/deploy/Dockerfile", "--tag=" + image, kSource},
                 minutes(20));
  ASSERT_EQ(r.exit_code, 0) << r.out.substr(r.out.size() > 4000 ? r.out.size() - 4000 : 0)
                            << r.err;

  // What the manifest relies on: the entrypoint, root, the metrics port, and
  // the version the DaemonSet's image tag names.
  r = podman.Run({"image", "inspect", "--format={{json .Config}}", image});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json config = Json::parse(r.out, nullptr, false);
  EXPECT_EQ(config["Entrypoint"], Json::array({"/usr/sbin/svcmap"})) << r.out;
  EXPECT_EQ(config.value("User", ""), "0") << r.out;
  EXPECT_TRUE(config["ExposedPorts"].contains("9464/tcp")) << r.out;
  r = podman.Run({"run", "--rm", image, "--version"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, version.out) << "the image's svcmap is not this tree's";
  Json pod = PodSpec();
  ASSERT_TRUE(pod.is_object());
  const std::string tag = pod["containers"][0]["image"];  // svcmap:0.1.0
  EXPECT_EQ(version.out.rfind("svcmap " + tag.substr(tag.find(':') + 1) + " ", 0), 0u)
      << "the DaemonSet runs " << tag << ", this tree is " << version.out;

  // The DaemonSet's container, on this machine: its args with the listen
  // address and the store pointed at this test's, names from the workload's
  // --name, and a push every second.
  std::string error;
  std::vector<std::string> flags = RunFlags(pod, &error);
  ASSERT_TRUE(error.empty()) << error;
  std::vector<std::string> args = pod["containers"][0]["args"];
  Store store(Store::Kind::kVictoriaMetrics);
  ASSERT_TRUE(store.ready());
  const std::string listen = fmt::format("127.0.0.1:{}", FreePort());
  SetArg(args, "--listen", listen);
  SetArg(args, "--remote-write", store.write_url());
  SetArg(args, "--push-interval", "1s");
  args.insert(args.end(), {"--name-rule", "cmdline:--name (\\S+)=$1"});

  std::vector<std::string> check = {"run", "--rm"};
  check.insert(check.end(), flags.begin(), flags.end());
  check.push_back(image);
  check.insert(check.end(), args.begin(), args.end());
  check.push_back("--check-config");
  r = podman.Run(check);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("config ok"), std::string::npos) << r.out;

  // The probe under the same settings: the accept hook is seen in process
  // context, so nothing runs per send or receive. Under tracepoints that
  // needs the host's tracefs, which the DaemonSet mounts.
  std::vector<std::string> probe = {"run", "--rm"};
  probe.insert(probe.end(), flags.begin(), flags.end());
  probe.insert(probe.end(), {image, "probe", "--json"});
  r = podman.Run(probe);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json report = Json::parse(r.out, nullptr, false);
  ASSERT_TRUE(report.is_object()) << r.out;
  EXPECT_EQ(report["tracefs"], true) << r.out;
  EXPECT_EQ(report["tracefs_note"], "") << r.out;
  for (const Json& h : report["hooks"]) {
    if (h["hook"] == "send" || h["hook"] == "recv") {
      EXPECT_EQ(h["needed"], false) << h.dump();
    }
  }

  std::vector<std::string> run = {"run", "--detach", "--name=svcmap-agent"};
  run.insert(run.end(), flags.begin(), flags.end());
  run.push_back(image);
  run.insert(run.end(), args.begin(), args.end());
  r = podman.Run(run);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const bool up = WaitHttp("http://" + listen + "/readyz", seconds(90));
  RunResult logs = podman.Run({"logs", "svcmap-agent"});
  ASSERT_TRUE(up) << logs.out << logs.err;
  EXPECT_NE(logs.err.find("svcmap: agent on http://" + listen), std::string::npos) << logs.err;

  const int port = FreePort();
  Child server({kPeer, "serve", "--bind", "127.0.0.1", "--port", std::to_string(port), "--reply",
                "4444", "--name", "ctr-server"});
  ASSERT_TRUE(server.WaitForLine(false, "ready", seconds(30)));
  RunResult client = RunCmd({kPeer, "connect", "--host", "127.0.0.1", "--port",
                             std::to_string(port), "--send", "33333", "--name", "ctr-client"});
  ASSERT_EQ(client.exit_code, 0) << client.err;
  ASSERT_EQ(server.Wait().exit_code, 0);

  const std::regex sent(fmt::format(
      R"(svcmap_connection_sent_bytes_total\{{src_instance_id="ctr-client@[^"]+",src_service_name="ctr-client",dst_ip="127.0.0.1",dst_port="{}"\}} (\d+))",
      port));
  const std::regex received(fmt::format(
      R"(svcmap_connection_received_bytes_total\{{src_instance_id="ctr-client@[^"]+",src_service_name="ctr-client",dst_ip="127.0.0.1",dst_port="{}"\}} (\d+))",
      port));
  std::string metrics;
  std::smatch s, v;
  for (int i = 0; i < 100; ++i) {
    metrics = RunCmd({"curl", "-sf", "http://" + listen + "/metrics"}).out;
    if (std::regex_search(metrics, s, sent) && std::regex_search(metrics, v, received)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(std::regex_search(metrics, s, sent)) << metrics;
  ASSERT_TRUE(std::regex_search(metrics, v, received)) << metrics;
  EXPECT_EQ(s[1].str(), "33333");
  EXPECT_EQ(v[1].str(), "4444");
  // BPF, whichever mechanism this kernel gives, not the scanner.
  const std::regex bpf(R"re(svcmap_backend_info\{backend="(fentry|kprobe|tracepoint|mixed)")re");
  EXPECT_TRUE(std::regex_search(metrics, bpf)) << metrics;

  // The same bytes in the store, remote-written from inside the container.
  const std::string q = fmt::format(
      R"(sum(svcmap_connection_sent_bytes_total{{src_service_name="ctr-client",dst_port="{}"}}))",
      port);
  std::string stored;
  for (int i = 0; i < 60 && stored.find("\"33333\"") == std::string::npos; ++i) {
    stored = store.QueryText(q);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  EXPECT_NE(stored.find("\"33333\""), std::string::npos) << stored;

  // The DaemonSet's grace period is enough for a clean stop.
  const int grace = pod.value("terminationGracePeriodSeconds", 30);
  r = podman.Run({"stop", fmt::format("--time={}", grace), "svcmap-agent"}, minutes(1));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = podman.Run({"inspect", "--format={{.State.ExitCode}}", "svcmap-agent"});
  EXPECT_EQ(r.out, "0\n") << "the agent's exit code after SIGTERM; "
                          << podman.Run({"logs", "svcmap-agent"}).err;
}

}  // namespace
}  // namespace svcmap::e2e
