// The seed's picture, for real: three netns machines, real servers from
// Debian (nginx on C proxying to the app on A, which uses redis-server and
// PostgreSQL on B), one agent per machine pushing to VictoriaMetrics, and
// `svcmap topology` joining it all, from the store, from the agents and
// from snapshot files, with bytes equal to what the app itself moved. A
// fourth machine plays the users and has no agent. Then a DNAT variant
// (nftables on A) and the agent's live map in headless Chromium.
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <thread>

#include "fmt/format.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "nlohmann/json.hpp"

namespace svcmap::e2e {
namespace {

using Json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kSvcmap = SVCMAP_BIN;
const std::string kApp = SVCMAP_APP_BIN;
constexpr int kRequests = 20;
enum { kA = 0, kB = 1, kC = 2, kUsers = 3 };

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class TopologyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!PrivilegeProblem().empty() || !MissingTool().empty()) return;
    hosts_ = std::make_unique<Hosts>(std::vector<std::string>{"a", "b", "c", "u"}, 232);
    if (!hosts_->ok()) return;
    dir_ = TempDir("topo");
    chmod(dir_.c_str(), 0755);
    store_ = std::make_unique<Store>(Store::Kind::kVictoriaMetrics);
    StartAgents();
    StartServers();
  }
  static void TearDownTestSuite() {
    // The servers stop cleanly (postgres through runuser would outlive a
    // SIGKILL of its parent), then whatever is left is killed.
    for (auto& server : servers_) server->Signal(SIGTERM);
    for (auto& server : servers_) server->Wait(seconds(20));
    servers_.clear();
    agents_.clear();
    store_.reset();
    hosts_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  static std::string MissingTool() {
    for (const char* tool : {"victoria-metrics", "curl", "nginx", "redis-server", "runuser",
                             "nft", "chromium"})
      if (Which(tool).empty()) return tool;
    if (PgBin().empty()) return "postgresql (initdb)";
    return "";
  }
  static std::string PgBin() {
    for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql",
                                                             std::filesystem::directory_options::skip_permission_denied))
      if (std::filesystem::exists(e.path() / "bin/initdb")) return (e.path() / "bin").string();
    return "";
  }

  void SetUp() override {
    if (std::string why = PrivilegeProblem(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_EQ(MissingTool(), "") << " is not installed (scripts/install-deps)";
    ASSERT_TRUE(hosts_->ok()) << hosts_->error();
    ASSERT_TRUE(store_->ready()) << "victoria-metrics did not start";
    ASSERT_TRUE(servers_ok_) << setup_error_;
  }

  static const Hosts::Host& H(int i) { return (*hosts_)[i]; }

  // One agent per machine, each naming the seed's services; A's live map
  // also shows what B and C see.
  static void StartAgents() {
    std::vector<std::string> listens;
    for (int m = 0; m < 3; ++m) {
      listens.push_back(fmt::format("127.0.0.1:{}", FreePort()));
      agent_urls_.push_back("http://" + listens.back());
    }
    for (int m : {kA, kB, kC}) {
      std::vector<std::string> argv = {
          kSvcmap, "agent", "--listen", listens[m], "--netns", H(m).path, "--remote-write",
          store_->write_url(), "--push-interval", "1s",
          // First match wins: the DNAT test's app has a name of its own.
          "--name-rule", "cmdline::8081=app-nat", "--name-rule", "exe:svcmap-e2e-app$=app",
          // Debian's redis-server is a link to redis-check-rdb: by its
          // command line (redis rewrites it to "redis-server ip:port").
          "--name-rule", "cmdline:^redis-server=redis", "--name-rule",
          "exe:/postgres$=postgresql"};
      if (m == kA) argv.insert(argv.end(), {"--map-agents", agent_urls_[kB] + "," + agent_urls_[kC]});
      agents_.push_back(std::make_unique<Child>(argv));
      if (!agents_.back()->WaitForLine(true, "svcmap: agent on http://" + listens[m], seconds(60)))
        Fail("agent did not start");
    }
  }

  static void Fail(const std::string& why) {
    if (setup_error_.empty()) setup_error_ = why;
    servers_ok_ = false;
  }

  static void StartServers() {
    servers_ok_ = true;
    const std::string& b = H(kB).ip;
    // redis-server on B.
    auto redis = std::make_unique<Child>(TwoHosts::In(
        H(kB).name, {"redis-server", "--bind", b, "--port", "6379", "--save", "",
                     "--appendonly", "no", "--dir", dir_, "--protected-mode", "no"}));
    if (!redis->WaitForLine(false, "Ready to accept connections", seconds(30)))
      return Fail("redis-server did not start: " + redis->Wait(seconds(5)).out);
    servers_.push_back(std::move(redis));

    // PostgreSQL on B: a fresh cluster that trusts its callers, run as the
    // postgres user (it refuses root).
    const std::string pg = PgBin();
    const std::string data = dir_ + "/pg";
    passwd* pw = getpwnam("postgres");
    if (pw == nullptr) return Fail("no postgres user");
    std::filesystem::create_directory(data);
    chown(data.c_str(), pw->pw_uid, pw->pw_gid);
    RunResult init = RunCmd({"runuser", "-u", "postgres", "--", pg + "/initdb", "-D", data,
                             "--auth=trust", "-U", "postgres", "--no-sync"},
                            seconds(120));
    if (init.exit_code != 0) return Fail("initdb: " + init.err);
    // initdb trusts loopback only; the app calls from machine A.
    std::ofstream(data + "/pg_hba.conf", std::ios::app) << "host all all 10.0.0.0/8 trust\n";
    auto postgres = std::make_unique<Child>(TwoHosts::In(
        H(kB).name, {"runuser", "-u", "postgres", "--", pg + "/postgres", "-D", data, "-c",
                     "listen_addresses=" + b, "-c", "unix_socket_directories=" + data, "-c",
                     "fsync=off"}));
    if (!postgres->WaitForLine(true, "ready to accept connections", seconds(60)))
      return Fail("postgres did not start: " + postgres->Wait(seconds(5)).err);
    servers_.push_back(std::move(postgres));

    // The app on A.
    auto app = std::make_unique<Child>(TwoHosts::In(
        H(kA).name, {kApp, "--listen", H(kA).ip + ":8080", "--redis", b + ":6379", "--pg",
                     b + ":5432", "--requests", std::to_string(kRequests)}));
    if (!app->WaitForLine(false, "ready", seconds(30)))
      return Fail("the app did not start: " + app->Wait(seconds(5)).err);
    app_ = app.get();
    servers_.push_back(std::move(app));

    // nginx on C, proxying to the app.
    const std::string conf = dir_ + "/nginx.conf";
    std::ofstream(conf) << fmt::format(
        // One process: the master's SIGKILL at tear-down must take the
        // worker with it (an orphaned worker kept its netns alive).
        "daemon off; master_process off; user root;\n"
        "pid {0}/nginx.pid; error_log {0}/nginx.err warn;\n"
        "events {{ worker_connections 64; }}\n"
        "http {{ access_log off; client_body_temp_path {0}/b; proxy_temp_path {0}/p;\n"
        "  fastcgi_temp_path {0}/f; uwsgi_temp_path {0}/u; scgi_temp_path {0}/s;\n"
        "  server {{ listen {1}:80; location / {{ proxy_pass http://{2}:8080; }} }} }}\n",
        dir_, H(kC).ip, H(kA).ip);
    auto nginx = std::make_unique<Child>(
        TwoHosts::In(H(kC).name, {"nginx", "-c", conf, "-p", dir_}));
    servers_.push_back(std::move(nginx));
    if (!WaitListening(H(kC).name, 80)) return Fail("nginx did not listen: " + Slurp(dir_ + "/nginx.err"));

    // The users, on a machine without an agent.
    for (int i = 0; i < kRequests; ++i) {
      RunResult r = RunCmd(TwoHosts::In(H(kUsers).name,
                                        {"curl", "-sf", "http://" + H(kC).ip + "/"}),
                           seconds(30));
      if (r.exit_code != 0 || r.out != "hello world\n")
        return Fail(fmt::format("request through nginx: curl exit {}, {:?}; nginx says: {}",
                                r.exit_code, r.out, Slurp(dir_ + "/nginx.err")));
    }
    if (!app_->WaitForLine(false, "\"pg\"", seconds(30))) return Fail("the app did not report");
    const std::string& out = app_->out();
    app_report_ = Json::parse(out.substr(out.rfind("{\"pid\"")), nullptr, false);
    if (app_report_.is_discarded()) return Fail("the app's report: " + out);
  }

  // Not by connecting: a request through nginx would reach the app and
  // count in its figures.
  static bool WaitListening(const std::string& ns, int port) {
    for (int i = 0; i < 100; ++i) {
      RunResult r = RunCmd(TwoHosts::In(ns, {"ss", "-Hltn", fmt::format("sport = :{}", port)}));
      if (r.exit_code == 0 && !r.out.empty()) return true;
      std::this_thread::sleep_for(milliseconds(100));
    }
    return false;
  }

  static RunResult Topology(std::vector<std::string> args) {
    std::vector<std::string> argv = {kSvcmap, "topology"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCmd(argv, seconds(60));
  }

  static std::map<std::string, Json> EdgesByPair(const Json& graph) {
    std::map<std::string, Json> out;
    for (const Json& e : graph["edges"])
      out[e["src"].get<std::string>() + " -> " + e["dst"].get<std::string>()] = e;
    return out;
  }

  // The three edges of the seed, exactly, with the app's own byte counts.
  void ExpectSeedEdges(const Json& graph, const Json& app) {
    std::map<std::string, Json> edges = EdgesByPair(graph);
    const std::string nginx = "nginx@" + H(kC).ip, appid = "app@" + H(kA).ip,
                      redis = "redis@" + H(kB).ip, pg = "postgresql@" + H(kB).ip;
    std::set<std::string> want = {nginx + " -> " + appid, appid + " -> " + redis,
                                  appid + " -> " + pg};
    std::set<std::string> got;
    for (const auto& [k, e] : edges)
      if (e["src_service"] != "app-nat") got.insert(k);
    ASSERT_EQ(got, want) << graph.dump(2);
    const Json& front = edges[nginx + " -> " + appid];
    EXPECT_EQ(front["dst_ip"], H(kA).ip);
    EXPECT_EQ(front["dst_port"], 8080);
    EXPECT_EQ(front["bytes_sent"], app["http"]["received"]) << front.dump();
    EXPECT_EQ(front["bytes_received"], app["http"]["sent"]) << front.dump();
    EXPECT_EQ(front["connections"], kRequests);
    const Json& cache = edges[appid + " -> " + redis];
    EXPECT_EQ(cache["dst_port"], 6379);
    EXPECT_EQ(cache["bytes_sent"], app["redis"]["sent"]) << cache.dump();
    EXPECT_EQ(cache["bytes_received"], app["redis"]["received"]) << cache.dump();
    EXPECT_EQ(cache["connections"], 1);
    const Json& sql = edges[appid + " -> " + pg];
    EXPECT_EQ(sql["dst_port"], 5432);
    EXPECT_EQ(sql["bytes_sent"], app["pg"]["sent"]) << sql.dump();
    EXPECT_EQ(sql["bytes_received"], app["pg"]["received"]) << sql.dump();
    EXPECT_EQ(sql["connections"], 1);
    // The machines' addresses on the nodes.
    std::map<std::string, std::string> ip_of;
    for (const Json& n : graph["nodes"]) ip_of[n["id"]] = n["instance_ip"];
    EXPECT_EQ(ip_of[nginx], H(kC).ip);
    EXPECT_EQ(ip_of[appid], H(kA).ip);
    EXPECT_EQ(ip_of[redis], H(kB).ip);
    EXPECT_EQ(ip_of[pg], H(kB).ip);
  }

  // Polls `topology` until its edges carry `app`'s figures (the agents push
  // every second), then checks them once more, exactly.
  Json GraphWhenSettled(const std::vector<std::string>& args, const Json& app) {
    Json graph;
    for (int i = 0; i < 60; ++i) {
      RunResult r = Topology(args);
      graph = Json::parse(r.out, nullptr, false);
      if (r.exit_code == 0 && !graph.is_discarded()) {
        std::map<std::string, Json> edges = EdgesByPair(graph);
        auto it = edges.find("app@" + H(kA).ip + " -> postgresql@" + H(kB).ip);
        auto front = edges.find("nginx@" + H(kC).ip + " -> app@" + H(kA).ip);
        if (it != edges.end() && it->second["bytes_sent"] == app["pg"]["sent"] &&
            front != edges.end() && front->second["connections"] == kRequests)
          break;
      }
      std::this_thread::sleep_for(milliseconds(500));
    }
    return graph;
  }

  static inline std::unique_ptr<Hosts> hosts_;
  static inline std::unique_ptr<Store> store_;
  static inline std::vector<std::unique_ptr<Child>> agents_, servers_;
  static inline std::vector<std::string> agent_urls_;
  static inline Child* app_ = nullptr;
  static inline Json app_report_;
  static inline std::string dir_, setup_error_;
  static inline bool servers_ok_ = false;
};

TEST_F(TopologyTest, FromTheStoreTheSeedsPictureWithExactBytes) {
  Json graph = GraphWhenSettled({"--tsdb", store_->base(), "--window", "10m"}, app_report_);
  ExpectSeedEdges(graph, app_report_);
  // The users' machine has no agent: its traffic into nginx is listed as
  // such, never drawn as an edge from nowhere.
  bool listed = false;
  for (const Json& u : graph["unmatched"])
    if (u["src_instance_id"] == H(kUsers).ip && u["dst_port"] == 80)
      listed = u["reason"] == "caller not observed";
  EXPECT_TRUE(listed) << graph["unmatched"].dump(2);
}

TEST_F(TopologyTest, TheAgentsAndTheirSnapshotsGiveTheSameGraph) {
  Json from_store = GraphWhenSettled({"--tsdb", store_->base(), "--window", "10m"}, app_report_);
  Json from_agents = GraphWhenSettled(
      {"--agents", agent_urls_[kA] + "," + agent_urls_[kB] + "," + agent_urls_[kC]}, app_report_);
  ExpectSeedEdges(from_agents, app_report_);
  std::vector<std::string> args = {"--snapshot"};
  for (int m : {kA, kB, kC}) {
    std::string path = fmt::format("{}/snap-{}.json", dir_, m);
    ASSERT_EQ(RunCmd({"curl", "-sf", "-o", path, agent_urls_[m] + "/api/snapshot"}).exit_code, 0);
    args.push_back(path);
  }
  RunResult r = Topology(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json from_files = Json::parse(r.out);
  ExpectSeedEdges(from_files, app_report_);
  EXPECT_EQ(EdgesByPair(from_files), EdgesByPair(from_agents));
  std::map<std::string, Json> a = EdgesByPair(from_store), b = EdgesByPair(from_agents);
  bool some_rtt = false;
  for (auto& [k, e] : a) {
    ASSERT_TRUE(b.contains(k)) << k;
    // A minimum is not a counter: the store has no series for it.
    EXPECT_TRUE(e["rtt_min_us"].is_null()) << k;
    some_rtt |= !e["rtt_us"].is_null();
    e["rtt_min_us"] = b[k]["rtt_min_us"];
    EXPECT_EQ(e, b[k]) << k;
  }
  // nginx's 20 upstream connections closed: their RTT is on the edge.
  EXPECT_TRUE(some_rtt);
}

TEST_F(TopologyTest, EveryFormatAndGrouping) {
  const std::vector<std::string> from = {"--agents", agent_urls_[kA] + "," + agent_urls_[kB] +
                                                         "," + agent_urls_[kC]};
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = from;
    args.insert(args.end(), extra.begin(), extra.end());
    RunResult r = Topology(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  std::string mermaid = run({"--format", "mermaid"});
  EXPECT_NE(mermaid.find("flowchart LR"), std::string::npos);
  EXPECT_NE(mermaid.find("-->|\"HTTP "), std::string::npos) << mermaid;
  EXPECT_NE(mermaid.find("-->|\"PostgreSQL "), std::string::npos) << mermaid;
  EXPECT_NE(mermaid.find("-->|\"Redis "), std::string::npos) << mermaid;
  EXPECT_NE(mermaid.find(H(kB).ip), std::string::npos) << "a subgraph per machine with its address";
  std::string dot = run({"--format", "dot"});
  EXPECT_NE(dot.find("digraph"), std::string::npos);
  std::string svg = run({"--format", "svg"});
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find(">postgresql"), std::string::npos);
  std::string path = dir_ + "/topology.html";
  run({"--format", "html", "-o", path});
  std::string html = Slurp(path);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("nginx@" + H(kC).ip), std::string::npos);
  Json by_service = Json::parse(run({"--group-by", "service"}));
  std::set<std::string> pairs;
  for (const Json& e : by_service["edges"]) pairs.insert(e["src"].get<std::string>() + ">" + e["dst"].get<std::string>());
  EXPECT_TRUE(pairs.contains("nginx>app") && pairs.contains("app>redis") &&
              pairs.contains("app>postgresql"))
      << by_service.dump(2);
  Json by_machine = Json::parse(run({"--group-by", "machine"}));
  EXPECT_FALSE(by_machine["edges"].empty());
}

TEST_F(TopologyTest, DiffSaysWhichEdgesAppeared) {
  // Nothing was there an hour ago: every edge of the last minutes appeared.
  RunResult r = Topology({"--tsdb", store_->base(), "--diff", "now-2h..now-1h", "now-10m..now"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json d = Json::parse(r.out);
  std::set<std::string> appeared;
  for (const Json& e : d["appeared"]) appeared.insert(e["src"].get<std::string>() + " -> " + e["dst"].get<std::string>());
  EXPECT_TRUE(appeared.contains("nginx@" + H(kC).ip + " -> app@" + H(kA).ip)) << r.out;
  EXPECT_TRUE(appeared.contains("app@" + H(kA).ip + " -> redis@" + H(kB).ip)) << r.out;
  EXPECT_TRUE(d["disappeared"].empty()) << r.out;
  // And the other way round.
  r = Topology({"--tsdb", store_->base(), "--diff", "now-10m..now", "now-2h..now-1h"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  d = Json::parse(r.out);
  EXPECT_TRUE(d["appeared"].empty());
  EXPECT_GE(d["disappeared"].size(), 3u);
}

// svcmap top over the whole cluster: the agents' graph, in batch frames.
TEST_F(TopologyTest, TopShowsTheClusterFromTheAgents) {
  RunResult r = RunCmd({kSvcmap, "top", "--batch", "--frames", "2", "--interval", "500ms",
                        "--agents", agent_urls_[kA] + "," + agent_urls_[kB] + "," + agent_urls_[kC]},
                       seconds(60));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("backend agents"), std::string::npos) << r.out;
  for (const std::string& row : {std::string("nginx +app +8080"), std::string("app +redis +6379"),
                                 std::string("app +postgresql +5432")})
    EXPECT_TRUE(std::regex_search(r.out, std::regex(row))) << row << " in\n" << r.out;
}

// The app reaches redis through a virtual address on A that nftables
// DNATs to B: the edge still lands on redis, by conntrack.
TEST_F(TopologyTest, ADnatDestinationLandsOnTheRealBackend) {
  const std::string vip = "10.96.0.10";
  const std::string& a = H(kA).name;
  ASSERT_EQ(RunCmd(TwoHosts::In(a, {"ip", "route", "add", "10.96.0.0/16", "dev", H(kA).iface}))
                .exit_code,
            0);
  std::string rules = fmt::format(
      "table ip svcmap_e2e {{\n  chain out {{\n    type nat hook output priority -100;\n"
      "    ip daddr {} tcp dport 6379 dnat to {}:6379\n  }}\n}}\n",
      vip, H(kB).ip);
  std::string rules_path = dir_ + "/dnat.nft";
  std::ofstream(rules_path) << rules;
  RunResult nft = RunCmd(TwoHosts::In(a, {"nft", "-f", rules_path}));
  ASSERT_EQ(nft.exit_code, 0) << nft.err;
  Child app(TwoHosts::In(a, {kApp, "--listen", H(kA).ip + ":8081", "--redis", vip + ":6379",
                             "--pg", H(kB).ip + ":5432", "--requests", "3"}));
  ASSERT_TRUE(app.WaitForLine(false, "ready", seconds(30)));
  for (int i = 0; i < 3; ++i) {
    RunResult r = RunCmd(TwoHosts::In(H(kUsers).name, {"curl", "-sf", "http://" + H(kA).ip + ":8081/"}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  ASSERT_TRUE(app.WaitForLine(false, "\"pg\"", seconds(30)));
  Json report = Json::parse(app.out().substr(app.out().rfind("{\"pid\"")));
  const std::string key = "app-nat@" + H(kA).ip + " -> redis@" + H(kB).ip;
  for (const std::vector<std::string>& source :
       {std::vector<std::string>{"--agents", agent_urls_[kA] + "," + agent_urls_[kB]},
        std::vector<std::string>{"--tsdb", store_->base(), "--window", "10m"}}) {
    Json graph;
    for (int i = 0; i < 60; ++i) {
      graph = Json::parse(Topology(source).out, nullptr, false);
      if (!graph.is_discarded() && EdgesByPair(graph).contains(key) &&
          EdgesByPair(graph)[key]["bytes_sent"] == report["redis"]["sent"])
        break;
      std::this_thread::sleep_for(milliseconds(500));
    }
    std::map<std::string, Json> edges = EdgesByPair(graph);
    ASSERT_TRUE(edges.contains(key)) << source[0] << ": " << graph.dump(2);
    EXPECT_EQ(edges[key]["dst_ip"], vip) << "the edge says what was dialled";
    EXPECT_EQ(edges[key]["bytes_sent"], report["redis"]["sent"]);
    EXPECT_EQ(edges[key]["bytes_received"], report["redis"]["received"]);
    for (const Json& n : graph["nodes"])
      EXPECT_NE(n["id"], vip + ":6379") << source[0] << ": no external node for the virtual address\n" << graph.dump(2);
  }
  app.Signal(SIGTERM);
}

// deploy/prometheus/svcmap-rules.yml evaluated by vmalert (Debian's
// victoria-metrics package) against the store the agents push to, its
// results written back: the recorded edges are svcmap topology's, bytes
// included, DNAT'd one too.
TEST_F(TopologyTest, VmalertsRecordedEdgesAreTopologysWithTheirBytes) {
  ASSERT_FALSE(Which("vmalert").empty()) << "vmalert is not installed (scripts/install-deps)";
  Json graph = GraphWhenSettled({"--tsdb", store_->base(), "--window", "10m"}, app_report_);
  std::map<std::string, long long> want;
  for (const Json& e : graph["edges"])
    want[fmt::format("{} -> {} :{}", e["src"].get<std::string>(), e["dst"].get<std::string>(),
                     e["dst_port"].get<int>())] = e["bytes_sent"].get<long long>();
  ASSERT_GE(want.size(), 3u) << graph.dump(2);

  Child vmalert({"vmalert", "-rule", SVCMAP_SOURCE_DIR "/deploy/prometheus/svcmap-rules.yml",
                 "-datasource.url", store_->base(), "-remoteWrite.url", store_->base(),
                 "-remoteWrite.flushInterval", "1s", "-evaluationInterval", "2s",
                 "-httpListenAddr", fmt::format("127.0.0.1:{}", FreePort()), "-loggerLevel",
                 "ERROR"});
  // What vmalert wrote, read back from the store as any dashboard would.
  auto recorded = [&](const std::string& promql) {
    std::map<std::string, double> got;
    Json doc = Json::parse(store_->QueryText(promql), nullptr, false);
    if (doc.is_discarded() || doc["status"] != "success") return got;
    for (const Json& r : doc["data"]["result"]) {
      const Json& m = r["metric"];
      got[fmt::format("{} -> {} :{}", m.value("src_instance_id", "?"),
                      m.value("dst_instance_id", "?"), m.value("dst_port", "?"))] =
          std::stod(r["value"][1].get<std::string>());
    }
    return got;
  };
  std::map<std::string, long long> sums;
  for (int i = 0; i < 60 && sums != want; ++i) {
    std::this_thread::sleep_for(milliseconds(500));
    sums.clear();
    for (const auto& [k, v] :
         recorded("svcmap:edge_sent_bytes_total:sum{match=~\"unique|external\"}"))
      sums[k] = static_cast<long long>(v);
  }
  EXPECT_EQ(sums, want) << graph.dump(2);
  // The rates cover the same edges; none is ambiguous in this picture.
  std::map<std::string, double> rates = recorded("svcmap:edge_sent_bytes:rate5m");
  for (const auto& [k, v] : want) EXPECT_TRUE(rates.contains(k)) << k;
  EXPECT_EQ(recorded("svcmap:edge_sent_bytes_total:sum{match=\"ambiguous\"}").size(), 0u);

  // deploy/grafana/svcmap.json over what vmalert recorded: every query
  // answers, and the Node Graph panel's frames follow Grafana's contract
  // and show the seed's services and edges.
  RunResult dash = RunCmd({"python3", SVCMAP_SOURCE_DIR "/tests/grafana/check_dashboard.py",
                           "--url", store_->base(), "--dashboard",
                           SVCMAP_SOURCE_DIR "/deploy/grafana/svcmap.json",
                           "--expect-services", "nginx,app,redis,postgresql",
                           "--expect-edges", "nginx>app,app>redis,app>postgresql",
                           // Every destination here is some agent's service.
                           "--may-be-empty", "Ambiguous and external destinations"},
                          seconds(60));
  EXPECT_EQ(dash.exit_code, 0) << dash.out << dash.err;
  vmalert.Signal(SIGTERM);
  vmalert.Wait(seconds(30));
}

// The same agents scraped instead of pushing: Debian's Prometheus, and
// vmagent into a second VictoriaMetrics, each scraping /metrics (the
// DaemonSet's prometheus.io/path) every second. svcmap topology over what
// each stored is the graph over the remote-written store, edge for edge and
// byte for byte.
TEST_F(TopologyTest, PrometheusAndVmagentScrapingGiveTheRemoteWrittenGraph) {
  ASSERT_FALSE(Which("vmagent").empty()) << "vmagent is not installed (scripts/install-deps)";
  Json pushed = GraphWhenSettled({"--tsdb", store_->base(), "--window", "10m"}, app_report_);
  ExpectSeedEdges(pushed, app_report_);
  std::string targets;
  for (const std::string& url : agent_urls_)
    targets += fmt::format("{}'{}'", targets.empty() ? "" : ", ", url.substr(url.find("//") + 2));
  const std::string config = dir_ + "/scrape.yml";
  std::ofstream(config) << fmt::format(
      "global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: svcmap\n"
      "  metrics_path: /metrics\n  static_configs:\n  - targets: [{}]\n",
      targets);
  const int prom_port = FreePort();
  const std::string prom = fmt::format("http://127.0.0.1:{}", prom_port);
  Child prometheus({"prometheus", "--config.file", config, "--storage.tsdb.path",
                    dir_ + "/scraped-prom", "--web.listen-address",
                    fmt::format("127.0.0.1:{}", prom_port), "--log.level", "error"});
  Store scraped(Store::Kind::kVictoriaMetrics);
  ASSERT_TRUE(scraped.ready());
  Child vmagent({"vmagent", "-promscrape.config", config, "-remoteWrite.url",
                 scraped.write_url(), "-remoteWrite.tmpDataPath", dir_ + "/vmagent",
                 "-remoteWrite.flushInterval", "1s", "-httpListenAddr",
                 fmt::format("127.0.0.1:{}", FreePort()), "-loggerLevel", "ERROR"});
  for (const std::string& base : {prom, scraped.base()}) {
    Json graph = GraphWhenSettled({"--tsdb", base, "--window", "10m"}, app_report_);
    ExpectSeedEdges(graph, app_report_);
    std::map<std::string, Json> got = EdgesByPair(graph), want = EdgesByPair(pushed);
    std::set<std::string> got_keys, want_keys;
    for (const auto& [k, e] : got) got_keys.insert(k);
    for (const auto& [k, e] : want) want_keys.insert(k);
    EXPECT_EQ(got_keys, want_keys) << base;
    for (const auto& [k, e] : want) {
      if (!got.contains(k)) continue;
      for (const char* field : {"bytes_sent", "bytes_received", "connections"})
        EXPECT_EQ(got[k][field], e[field]) << base << " " << k << " " << field;
    }
  }
  vmagent.Signal(SIGTERM);
  prometheus.Signal(SIGTERM);
  vmagent.Wait(seconds(30));
  prometheus.Wait(seconds(30));
}

TEST_F(TopologyTest, TheLiveMapRendersInHeadlessChromium) {
  // Chromium needs a profile directory and no network of its own.
  const std::string profile = TempDir("chromium");
  const std::string shot = std::getenv("SVCMAP_SCREENSHOT")
                               ? std::getenv("SVCMAP_SCREENSHOT")
                               : dir_ + "/map.png";
  std::vector<std::string> base = {"chromium", "--headless", "--no-sandbox", "--disable-gpu",
                                   "--disable-quic", "--no-first-run",
                                   "--disable-background-networking", "--disable-component-update",
                                   "--disable-sync", "--user-data-dir=" + profile,
                                   // Two refreshes: the second one has rates.
                                   "--virtual-time-budget=7000", "--window-size=1280,900"};
  std::vector<std::string> dump = base;
  dump.insert(dump.end(), {"--dump-dom", agent_urls_[kA] + "/map"});
  RunResult dom = RunCmd(dump, seconds(120));
  ASSERT_EQ(dom.exit_code, 0) << dom.err;
  for (std::string name : {"nginx", "app", "redis", "postgresql"})
    EXPECT_NE(dom.out.find(">" + name), std::string::npos) << name << " not drawn:\n" << dom.out;
  EXPECT_NE(dom.out.find("<svg"), std::string::npos);
  size_t rows = 0;
  for (size_t at = 0; (at = dom.out.find("<tr class=\"edge\"", at)) != std::string::npos; ++at) ++rows;
  EXPECT_GE(rows, 3u) << dom.out;
  EXPECT_NE(dom.out.find("/s</td>"), std::string::npos) << "byte rates in the table";
  std::vector<std::string> pic = base;
  pic.insert(pic.end(), {"--screenshot=" + shot, agent_urls_[kA] + "/map"});
  RunResult r = RunCmd(pic, seconds(120));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(shot) && std::filesystem::file_size(shot) > 10000) << shot;
  std::error_code ec;
  std::filesystem::remove_all(profile, ec);
}

TEST_F(TopologyTest, BadSourcesAreOneClearErrorEach) {
  // Unreachable store.
  RunResult r = Topology({"--tsdb", fmt::format("http://127.0.0.1:{}", FreePort())});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--tsdb"), std::string::npos) << r.err;
  // A "store" that answers garbage, then one that answers an error.
  const std::string fake = TempDir("fake");
  std::filesystem::create_directories(fake + "/api/v1");
  for (const auto& [body, want] : std::vector<std::pair<std::string, std::string>>{
           {"this is not json", "not JSON"},
           {R"({"status":"error","errorType":"bad_data","error":"unknown function"})",
            "unknown function"}}) {
    std::ofstream(fake + "/api/v1/query") << body;
    const int port = FreePort();
    Child server({"python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", fake,
                  std::to_string(port)});
    ASSERT_TRUE(WaitHttp(fmt::format("http://127.0.0.1:{}/api/v1/query", port), seconds(20)));
    r = Topology({"--tsdb", fmt::format("http://127.0.0.1:{}", port)});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find(want), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  // An empty window.
  r = Topology({"--tsdb", store_->base(), "--window", "now-30d..now-29d"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no svcmap series in the window"), std::string::npos) << r.err;
  r = Topology({"--tsdb", store_->base(), "--window", "now-720h..now-696h"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no svcmap series in the window"), std::string::npos) << r.err;
  // A snapshot of another schema version, and one that is not JSON.
  std::ofstream(fake + "/v9.json") << R"({"schema_version": 9, "instance": {}, "services": [], "connections": []})";
  r = Topology({"--snapshot", fake + "/v9.json"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("schema_version 9"), std::string::npos) << r.err;
  std::ofstream(fake + "/junk.json") << "{\"schema";
  r = Topology({"--snapshot", fake + "/junk.json"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("junk.json"), std::string::npos) << r.err;
  // Two sources at once, and an unreachable agent.
  r = Topology({"--tsdb", store_->base(), "--snapshot", fake + "/v9.json"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = Topology({"--agents", fmt::format("http://127.0.0.1:{}", FreePort())});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--agents"), std::string::npos) << r.err;
  std::error_code ec;
  std::filesystem::remove_all(fake, ec);
}

}  // namespace
}  // namespace svcmap::e2e
