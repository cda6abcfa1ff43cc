// Remote write into real stores, started here: VictoriaMetrics (Debian's
// victoria-metrics) and Prometheus with its receiver on. Two agents watch
// two netns machines and push; the PromQL join of docs/metrics.md must give
// exactly the caller -> callee pairs with the bytes the peers moved.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "fmt/format.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "nlohmann/json.hpp"
#include "two_hosts_suite.h"

namespace svcmap::e2e {
namespace {

using Json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kSvcmap = SVCMAP_BIN;
const std::string kPeer = SVCMAP_PEER_BIN;
const char kNameRule[] = "cmdline:--name (\\S+)=$1";

// The join from docs/metrics.md, on the raw counters (the totals, so the
// test can compare exact bytes; the docs rate() them).
const char kJoin[] =
    "sum by (src_service_name, name, dst_ip, dst_port) ("
    "  svcmap_connection_sent_bytes_total"
    "  * on (dst_ip, dst_port) group_left (name)"
    "    label_replace(label_replace(svcmap_service_listen_port_info,"
    "        \"dst_ip\", \"$1\", \"instance_ip\", \"(.*)\"),"
    "        \"dst_port\", \"$1\", \"port\", \"(.*)\"))";

// An instant query's result vector, or null on any error.
Json Query(const Store& store, const std::string& promql) {
  Json doc = Json::parse(store.QueryText(promql), nullptr, false);
  if (doc.is_discarded() || doc["status"] != "success") return nullptr;
  return doc["data"]["result"];
}

class StoreTest : public TwoHostsSuite {
 protected:
  void SetUp() override {
    TwoHostsSuite::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    for (const char* tool : {"victoria-metrics", "prometheus", "promtool", "curl"})
      ASSERT_FALSE(Which(tool).empty()) << tool << " is not installed (scripts/install-deps)";
  }

  // One agent per machine, pushing every second.
  std::vector<std::unique_ptr<Child>> StartAgents(const Store& store,
                                                  std::vector<std::string> extra = {}) {
    return StartAgentsTo(store.write_url(), {extra, extra});
  }

  // The same, pushing to `write_url`, each agent with flags of its own.
  std::vector<std::unique_ptr<Child>> StartAgentsTo(
      const std::string& write_url, const std::vector<std::vector<std::string>>& extra) {
    std::vector<std::unique_ptr<Child>> agents;
    const std::vector<std::string> machines = {hosts_->a_path, hosts_->b_path};
    for (size_t i = 0; i < machines.size(); ++i) {
      std::string listen = fmt::format("127.0.0.1:{}", FreePort());
      std::vector<std::string> argv = {kSvcmap,       "agent",           "--listen",
                                       listen,        "--netns",         machines[i],
                                       "--name-rule", kNameRule,         "--remote-write",
                                       write_url,     "--push-interval", "1s"};
      if (i < extra.size()) argv.insert(argv.end(), extra[i].begin(), extra[i].end());
      agents.push_back(std::make_unique<Child>(argv));
      EXPECT_TRUE(agents.back()->WaitForLine(true, "svcmap: agent on http://" + listen,
                                             seconds(30)));
      listens_.push_back(listen);
    }
    return agents;
  }

  // `client` on machine `from` sends `send` bytes to `server` on machine
  // `to`, which answers `reply`. The server stays up, listening, until the
  // test ends: an agent exports the ports that are listened on now.
  void Exchange(bool a_to_b, int port, long long send, long long reply, const std::string& client,
                const std::string& server) {
    const std::string& to_ns = a_to_b ? hosts_->b : hosts_->a;
    const std::string& from_ns = a_to_b ? hosts_->a : hosts_->b;
    const std::string& to_ip = a_to_b ? hosts_->b_ip4 : hosts_->a_ip4;
    auto srv = std::make_unique<Child>(TwoHosts::In(
        to_ns, {kPeer, "serve", "--bind", to_ip, "--port", std::to_string(port), "--expect",
                std::to_string(send), "--reply", std::to_string(reply), "--hold-ms", "120000",
                "--name", server}));
    ASSERT_TRUE(srv->WaitForLine(false, "ready", seconds(30)));
    RunResult c = RunCmd(TwoHosts::In(
        from_ns, {kPeer, "connect", "--host", to_ip, "--port", std::to_string(port), "--send",
                  std::to_string(send), "--expect", std::to_string(reply), "--name", client}));
    ASSERT_EQ(c.exit_code, 0) << c.err;
    ASSERT_TRUE(srv->WaitForLine(false, "held", seconds(30)));
    servers_.push_back(std::move(srv));
  }

  void TearDown() override {
    for (auto& s : servers_) {
      s->Signal(SIGUSR1);
      s->Wait(seconds(30));
    }
    servers_.clear();
  }

  // Polls the join until it returns `want` pairs (the pushes are 1 s apart).
  static std::map<std::string, double> JoinUntil(const Store& store, size_t want,
                                                 seconds timeout) {
    std::map<std::string, double> pairs;
    auto until = std::chrono::steady_clock::now() + timeout;
    do {
      pairs.clear();
      Json result = Query(store, kJoin);
      if (result.is_array())
        for (const Json& r : result)
          pairs[fmt::format("{} -> {} {}:{}", r["metric"].value("src_service_name", "?"),
                            r["metric"].value("name", "?"), r["metric"].value("dst_ip", "?"),
                            r["metric"].value("dst_port", "?"))] =
              std::stod(r["value"][1].get<std::string>());
      if (pairs.size() >= want) break;
      std::this_thread::sleep_for(milliseconds(500));
    } while (std::chrono::steady_clock::now() < until);
    return pairs;
  }

  void JoinTest(Store::Kind kind) {
    Store store(kind);
    ASSERT_TRUE(store.ready()) << "store did not start";
    auto agents = StartAgents(store);
    Exchange(true, 7121, 54321, 1234, "e2e-web", "e2e-db");
    Exchange(false, 7122, 777, 88888, "e2e-cron", "e2e-api");
    // Each counter is final once both agents pushed after the closes.
    std::this_thread::sleep_for(seconds(3));
    std::map<std::string, double> pairs = JoinUntil(store, 2, seconds(30));
    std::map<std::string, double> want = {
        {fmt::format("e2e-web -> e2e-db {}:7121", hosts_->b_ip4), 54321},
        {fmt::format("e2e-cron -> e2e-api {}:7122", hosts_->a_ip4), 777}};
    EXPECT_EQ(pairs, want);
    for (auto& a : agents) {
      a->Signal(SIGTERM);
      RunResult r = a->Wait(seconds(30));
      EXPECT_EQ(r.exit_code, 0) << r.err;
      EXPECT_NE(r.err.find(" 0 dropped, 0 rejected"), std::string::npos) << r.err;
    }
  }

  std::vector<std::string> listens_;
  std::vector<std::unique_ptr<Child>> servers_;
};

TEST_F(StoreTest, VictoriaMetricsJoinGivesCallerCalleePairsWithExactBytes) {
  JoinTest(Store::Kind::kVictoriaMetrics);
}

TEST_F(StoreTest, PrometheusReceiverGivesTheSameJoin) { JoinTest(Store::Kind::kPrometheus); }

// The store is away for 30 s: the agent keeps tracing, buffers, retries, and
// once the store is back every push of the outage is there, and a connection
// made during it has its exact bytes.
TEST_F(StoreTest, StoreDownForThirtySecondsLosesNoSample) {
  Store store(Store::Kind::kVictoriaMetrics);
  ASSERT_TRUE(store.ready());
  auto agents = StartAgents(store);
  std::this_thread::sleep_for(seconds(3));
  store.Stop();
  const auto down = std::chrono::steady_clock::now();
  Exchange(true, 7123, 4242, 2424, "e2e-batch", "e2e-queue");
  std::this_thread::sleep_until(down + seconds(30));
  std::string during = RunCmd({"curl", "-sf", "http://" + listens_[0] + "/metrics"}).out;
  EXPECT_NE(during.find("svcmap_remote_write_failed_requests_total "), std::string::npos);
  EXPECT_EQ(during.find("svcmap_remote_write_failed_requests_total 0\n"), std::string::npos)
      << "no push failed while the store was down";
  store.Start();
  ASSERT_TRUE(store.ready());

  std::map<std::string, double> pairs = JoinUntil(store, 1, seconds(30));
  EXPECT_EQ(pairs, (std::map<std::string, double>{
                       {fmt::format("e2e-batch -> e2e-queue {}:7123", hosts_->b_ip4), 4242}}));
  // Every push, the outage's included: one sample a second, no gap. The
  // backlog drains within a few retries of the store coming back.
  std::vector<long long> ts;
  for (int i = 0; i < 60; ++i) {
    std::string m = RunCmd({"curl", "-sf", "http://" + listens_[0] + "/metrics"}).out;
    if (m.find("svcmap_remote_write_pending_samples 0\n") != std::string::npos) break;
    std::this_thread::sleep_for(milliseconds(500));
  }
  RunResult exp = RunCmd({"curl", "-sf", store.base() + "/api/v1/export", "--data-urlencode",
                          fmt::format("match[]=svcmap_flows{{instance=\"{}\"}}", hosts_->a_ip4)});
  Json series = Json::parse(exp.out, nullptr, false);
  ASSERT_FALSE(series.is_discarded()) << exp.out;
  for (const Json& t : series["timestamps"]) ts.push_back(t.get<long long>());
  std::sort(ts.begin(), ts.end());
  ASSERT_GE(ts.size(), 33u) << exp.out;
  for (size_t i = 1; i < ts.size(); ++i)
    EXPECT_LE(ts[i] - ts[i - 1], 1100) << "a gap before sample " << i << " of " << ts.size();
  for (auto& a : agents) {
    a->Signal(SIGTERM);
    RunResult r = a->Wait(seconds(30));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find(" 0 dropped, 0 rejected"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("remote write: the store takes samples again"), std::string::npos)
        << r.err;
  }
}

// What a scraper gets passes Prometheus' own linter.
// The value of the exposition line `series value`, or -1.
double MetricValue(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  return -1;
}

// `svcmap topology --tsdb` as JSON: "src_service -> dst_service" -> bytes sent.
std::map<std::string, long long> TopologyEdges(const std::vector<std::string>& args,
                                               RunResult* out) {
  std::vector<std::string> argv = {kSvcmap, "topology"};
  argv.insert(argv.end(), args.begin(), args.end());
  *out = RunCmd(argv, seconds(60));
  std::map<std::string, long long> edges;
  Json graph = Json::parse(out->out, nullptr, false);
  if (out->exit_code != 0 || !graph.is_object()) return edges;
  for (const Json& e : graph["edges"])
    edges[e.value("src_service", "?") + " -> " + e.value("dst_service", "?")] =
        e.value("bytes_sent", -1LL);
  return edges;
}

// The store behind vmauth (Debian's victoria-metrics package) with TLS and
// two users, basic and bearer: the agents push through it, topology reads
// through it, and every wrong credential or missing CA is one clear error.
TEST_F(StoreTest, ThroughVmauthWithTlsAndAuthTheJoinIsExactAndBadCredentialsSayWhy) {
  ASSERT_FALSE(Which("vmauth").empty()) << "vmauth is not installed (scripts/install-deps)";
  Store store(Store::Kind::kVictoriaMetrics);
  ASSERT_TRUE(store.ready()) << "store did not start";
  const std::string dir = TempDir("vmauth");
  TestPki pki = MakeTestPki(dir);
  ASSERT_TRUE(pki.ok) << pki.error;
  WriteFile(dir + "/password", "s3cret\n");
  WriteFile(dir + "/token", "tok-123\n");
  WriteFile(dir + "/wrong", "not-the-password\n");
  WriteFile(dir + "/auth.yml", fmt::format("users:\n"
                                           "- username: svcmap\n"
                                           "  password: s3cret\n"
                                           "  url_prefix: {0}\n"
                                           "- bearer_token: tok-123\n"
                                           "  url_prefix: {0}\n",
                                           store.base()));
  const int port = FreePort();
  const std::string https = fmt::format("https://127.0.0.1:{}", port);
  Child vmauth({"vmauth", "-auth.config", dir + "/auth.yml", "-httpListenAddr",
                fmt::format("127.0.0.1:{}", port), "-tls", "-tlsCertFile", pki.server_cert,
                "-tlsKeyFile", pki.server_key, "-loggerLevel", "ERROR"});
  bool up = false;
  for (int i = 0; i < 60 && !up; ++i) {
    RunResult r = RunCmd({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
                          pki.ca, "-u", "svcmap:s3cret", https + "/api/v1/query?query=1"});
    up = r.out == "200";
    if (!up) std::this_thread::sleep_for(milliseconds(500));
  }
  ASSERT_TRUE(up) << "vmauth did not answer";

  // Machine a pushes with basic auth and a tenant header, b with a token.
  const std::vector<std::string> basic = {
      "--remote-write-ca-file", pki.ca, "--remote-write-basic-auth-user", "svcmap",
      "--remote-write-basic-auth-password-file", dir + "/password",
      "--remote-write-header", "X-Scope-OrgID: team-a"};
  const std::vector<std::string> bearer = {"--remote-write-ca-file", pki.ca,
                                           "--remote-write-bearer-token-file", dir + "/token"};
  auto agents = StartAgentsTo(https + "/api/v1/write", {basic, bearer});
  Exchange(true, 7131, 54321, 1234, "e2e-web", "e2e-db");
  Exchange(false, 7132, 777, 88888, "e2e-cron", "e2e-api");
  std::this_thread::sleep_for(seconds(3));

  const std::map<std::string, long long> want = {{"e2e-web -> e2e-db", 54321},
                                                 {"e2e-cron -> e2e-api", 777}};
  const std::vector<std::string> read_basic = {
      "--tsdb", https, "--window", "5m", "--tsdb-ca-file", pki.ca, "--tsdb-basic-auth-user",
      "svcmap", "--tsdb-basic-auth-password-file", dir + "/password"};
  RunResult r;
  std::map<std::string, long long> edges;
  for (int i = 0; i < 30 && edges != want; ++i) {
    edges = TopologyEdges(read_basic, &r);
    if (edges != want) std::this_thread::sleep_for(milliseconds(500));
  }
  EXPECT_EQ(edges, want) << r.out << r.err;
  // The same through the bearer user, and with verification explicitly off.
  EXPECT_EQ(TopologyEdges({"--tsdb", https, "--window", "5m", "--tsdb-insecure-skip-verify",
                           "--tsdb-bearer-token-file", dir + "/token"},
                          &r),
            want)
      << r.err;

  // Wrong password: vmauth's answer (this version's is a 400), named.
  TopologyEdges({"--tsdb", https, "--tsdb-ca-file", pki.ca, "--tsdb-basic-auth-user", "svcmap",
                 "--tsdb-basic-auth-password-file", dir + "/wrong"},
                &r);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(fmt::format("svcmap: --tsdb {}/api/v1/query: HTTP 400: cannot find the "
                                   "provided auth token",
                                   https)),
            std::string::npos)
      << r.err;
  // None at all: vmauth's 401.
  TopologyEdges({"--tsdb", https, "--tsdb-ca-file", pki.ca}, &r);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(fmt::format("svcmap: --tsdb {}/api/v1/query: HTTP 401", https)),
            std::string::npos)
      << r.err;
  // No CA: the system's do not know ours.
  TopologyEdges({"--tsdb", https, "--tsdb-bearer-token-file", dir + "/token"}, &r);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(fmt::format("svcmap: --tsdb {}: TLS: the server's certificate does not "
                                   "verify: unable to get local issuer certificate",
                                   https)),
            std::string::npos)
      << r.err;
  // Plain http to a TLS port: Go's TLS server answers and closes.
  TopologyEdges({"--tsdb", fmt::format("http://127.0.0.1:{}", port)}, &r);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(fmt::format("svcmap: --tsdb http://127.0.0.1:{}: no complete answer", port)),
            std::string::npos)
      << r.err;

  // An agent with the wrong password logs the store's answer and counts
  // what it refused: a 400 will fail again, so those samples are rejected
  // (the remote-write spec); a 401 or 403 would be retried.
  std::string listen = fmt::format("127.0.0.1:{}", FreePort());
  Child wrong({kSvcmap, "agent", "--listen", listen, "--netns", hosts_->a_path,
               "--remote-write", https + "/api/v1/write", "--push-interval", "1s",
               "--remote-write-ca-file", pki.ca, "--remote-write-basic-auth-user", "svcmap",
               "--remote-write-basic-auth-password-file", dir + "/wrong"});
  ASSERT_TRUE(wrong.WaitForLine(true, "svcmap: agent on http://" + listen, seconds(30)));
  EXPECT_TRUE(wrong.WaitForLine(
      true, "remote write: HTTP 400: cannot find the provided auth token", seconds(30)));
  std::string metrics;
  double sent = -1, rejected = 0;
  for (int i = 0; i < 20 && rejected <= 0; ++i) {
    std::this_thread::sleep_for(milliseconds(500));
    metrics = RunCmd({"curl", "-sS", "http://" + listen + "/metrics"}).out;
    sent = MetricValue(metrics, "svcmap_remote_write_samples_total{result=\"sent\"}");
    rejected = MetricValue(metrics, "svcmap_remote_write_samples_total{result=\"rejected\"}");
  }
  EXPECT_GT(rejected, 0) << metrics;
  EXPECT_EQ(sent, 0) << metrics;
  wrong.Signal(SIGTERM);
  wrong.Wait(seconds(30));

  for (auto& a : agents) {
    a->Signal(SIGTERM);
    RunResult done = a->Wait(seconds(30));
    EXPECT_EQ(done.exit_code, 0) << done.err;
    EXPECT_NE(done.err.find(" 0 dropped, 0 rejected"), std::string::npos) << done.err;
  }
}

// A bcrypt hash for a web config, made by python3's crypt (libcrypt).
std::string Bcrypt(const std::string& password) {
  RunResult r = RunCmd({"python3", "-W", "ignore", "-c",
                        "import crypt, sys; print(crypt.crypt(sys.argv[1], "
                        "crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10)))",
                        password});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out.substr(0, r.out.find('\n'));
}

// The agent behind its own TLS and basic auth (--web.config.file): curl
// with and without the password, with and without a client certificate,
// and a real Prometheus scraping it over TLS with basic auth, the bytes of
// an exchange exact in what Prometheus stored.
TEST_F(StoreTest, TheAgentServesOverTlsWithBasicAuthAndPrometheusScrapesIt) {
  const std::string dir = TempDir("webconfig");
  TestPki pki = MakeTestPki(dir);
  ASSERT_TRUE(pki.ok) << pki.error;
  WriteFile(dir + "/password", "scrape-pw\n");
  WriteFile(dir + "/web.yml", fmt::format("tls_server_config:\n"
                                          "  cert_file: server.pem\n"
                                          "  key_file: server.key\n"
                                          "basic_auth_users:\n"
                                          "  prometheus: '{}'\n",
                                          Bcrypt("scrape-pw")));
  const std::string listen = fmt::format("127.0.0.1:{}", FreePort());
  const std::string base = "https://" + listen;
  Child agent({kSvcmap, "agent", "--listen", listen, "--netns", hosts_->a_path, "--name-rule",
               kNameRule, "--web.config.file", dir + "/web.yml"});
  ASSERT_TRUE(agent.WaitForLine(true, "svcmap: agent on https://" + listen, seconds(30)))
      << agent.Wait(seconds(5)).err;

  auto curl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCmd(argv).out;
  };
  EXPECT_EQ(curl({"--cacert", pki.ca, "-u", "prometheus:scrape-pw", base + "/metrics"}), "200");
  EXPECT_EQ(curl({"--cacert", pki.ca, base + "/metrics"}), "401");
  EXPECT_EQ(curl({"--cacert", pki.ca, "-u", "prometheus:wrong", base + "/api/snapshot"}), "401");
  EXPECT_EQ(curl({"--cacert", pki.ca, "-u", "nobody:scrape-pw", base + "/healthz"}), "401");
  EXPECT_EQ(curl({"http://" + listen + "/metrics"}), "000");  // no plain HTTP on a TLS port

  // Prometheus (Debian's) scrapes it every second over TLS with basic auth.
  const int prom_port = FreePort();
  WriteFile(dir + "/prometheus.yml",
            fmt::format("global:\n"
                        "  scrape_interval: 1s\n"
                        "scrape_configs:\n"
                        "- job_name: svcmap\n"
                        "  scheme: https\n"
                        "  tls_config:\n"
                        "    ca_file: {}\n"
                        "  basic_auth:\n"
                        "    username: prometheus\n"
                        "    password_file: {}\n"
                        "  static_configs:\n"
                        "  - targets: ['{}']\n",
                        pki.ca, dir + "/password", listen));
  Child prom({"prometheus", "--config.file", dir + "/prometheus.yml", "--storage.tsdb.path",
              dir + "/prom-data", "--web.listen-address", fmt::format("127.0.0.1:{}", prom_port),
              "--log.level", "error"});
  Exchange(true, 7141, 4321, 99, "e2e-web", "e2e-db");
  auto query = [&](const std::string& promql) {
    RunResult q = RunCmd({"curl", "-sS", "--get", "--data-urlencode", "query=" + promql,
                          fmt::format("http://127.0.0.1:{}/api/v1/query", prom_port)});
    Json doc = Json::parse(q.out, nullptr, false);
    if (doc.is_discarded() || doc["status"] != "success" || doc["data"]["result"].empty())
      return std::string();
    return doc["data"]["result"][0]["value"][1].get<std::string>();
  };
  const std::string sent = fmt::format(
      "sum(svcmap_connection_sent_bytes_total{{src_service_name=\"e2e-web\",dst_port=\"7141\"}})");
  std::string up, bytes;
  for (int i = 0; i < 60 && (up != "1" || bytes != "4321"); ++i) {
    std::this_thread::sleep_for(milliseconds(500));
    up = query("up{job=\"svcmap\"}");
    bytes = query(sent);
  }
  EXPECT_EQ(up, "1") << "Prometheus could not scrape the agent over TLS with basic auth";
  EXPECT_EQ(bytes, "4321");
  // svcmap's own client reads it the same way.
  RunResult r = RunCmd({kSvcmap, "topology", "--agents", base, "--agents-ca-file", pki.ca,
                        "--agents-basic-auth-user", "prometheus",
                        "--agents-basic-auth-password-file", dir + "/password"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"e2e-web\""), std::string::npos) << r.out;
  r = RunCmd({kSvcmap, "topology", "--agents", base, "--agents-ca-file", pki.ca});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(fmt::format("svcmap: --agents {}/api/snapshot: HTTP 401", base)),
            std::string::npos)
      << r.err;

  // An agent on the other machine joins this one into its /map over the
  // same TLS and basic auth (--map-agents-*): the caller's edge, which only
  // machine A's agent has, shows in its graph; without the password the
  // fetch is refused, says why, and the map shows what it has.
  auto map_agent = [&](const std::vector<std::string>& creds) {
    const std::string b_listen = fmt::format("127.0.0.1:{}", FreePort());
    std::vector<std::string> argv = {kSvcmap, "agent", "--listen", b_listen, "--netns",
                                     hosts_->b_path, "--name-rule", kNameRule, "--map-agents",
                                     base, "--map-agents-ca-file", pki.ca};
    argv.insert(argv.end(), creds.begin(), creds.end());
    auto b = std::make_unique<Child>(argv);
    EXPECT_TRUE(b->WaitForLine(true, "svcmap: agent on http://" + b_listen, seconds(30)))
        << b->err();
    Json g = Json::parse(RunCmd({"curl", "-sf", "http://" + b_listen + "/api/graph"}).out,
                         nullptr, false);
    bool joined = false;
    for (const Json& e : g["edges"])
      joined |= e.value("src_service", "") == "e2e-web" && e.value("dst_port", 0) == 7141;
    b->Signal(SIGTERM);
    RunResult done = b->Wait(seconds(30));
    EXPECT_EQ(done.exit_code, 0) << done.err;
    return std::pair{joined, done.err};
  };
  auto [joined, log] = map_agent({"--map-agents-basic-auth-user", "prometheus",
                                  "--map-agents-basic-auth-password-file", dir + "/password"});
  EXPECT_TRUE(joined) << "machine A's edge is not on B's map";
  EXPECT_EQ(log.find("svcmap: warn: map:"), std::string::npos) << log;
  std::tie(joined, log) = map_agent({});
  EXPECT_FALSE(joined);
  EXPECT_NE(log.find(fmt::format("svcmap: warn: map: --agents {}/api/snapshot: HTTP 401", base)),
            std::string::npos)
      << log;

  // Mutual TLS: a client CA in the config requires a client certificate.
  agent.Signal(SIGTERM);
  EXPECT_EQ(agent.Wait(seconds(30)).exit_code, 0);
  WriteFile(dir + "/mtls.yml", "tls_server_config:\n"
                               "  cert_file: server.pem\n"
                               "  key_file: server.key\n"
                               "  client_ca_file: ca.pem\n");
  Child mtls({kSvcmap, "agent", "--listen", listen, "--netns", hosts_->a_path, "--name-rule",
              kNameRule, "--web.config.file", dir + "/mtls.yml"});
  ASSERT_TRUE(mtls.WaitForLine(true, "svcmap: agent on https://" + listen, seconds(30)));
  EXPECT_EQ(curl({"--cacert", pki.ca, base + "/healthz"}), "000");
  EXPECT_EQ(curl({"--cacert", pki.ca, "--cert", pki.client_cert, "--key", pki.client_key,
                  base + "/healthz"}),
            "200");
  Exchange(false, 7142, 55, 66, "e2e-cron", "e2e-api");
  r = RunCmd({kSvcmap, "topology", "--agents", base, "--agents-ca-file", pki.ca,
              "--agents-cert-file", pki.client_cert, "--agents-key-file", pki.client_key});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"e2e-api\""), std::string::npos) << r.out;
  mtls.Signal(SIGTERM);
  EXPECT_EQ(mtls.Wait(seconds(30)).exit_code, 0);
}

TEST_F(StoreTest, MetricsPassPromtoolCheck) {
  Store store(Store::Kind::kVictoriaMetrics);
  auto agents = StartAgents(store);
  Exchange(true, 7124, 100, 200, "e2e-\"q\\u\xc3\xb6", "e2e-target");
  std::string m;
  for (int i = 0; i < 50; ++i) {
    m = RunCmd({"curl", "-sf", "http://" + listens_[0] + "/metrics"}).out;
    if (m.find("src_service_name=\"e2e-\\\"q\\\\u\xc3\xb6\"") != std::string::npos) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_NE(m.find("src_service_name=\"e2e-\\\"q\\\\u\xc3\xb6\""), std::string::npos) << m;
  RunResult r = RunCmd({"sh", "-c",
                        fmt::format("curl -sf http://{}/metrics | promtool check metrics",
                                    listens_[0])});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

}  // namespace
}  // namespace svcmap::e2e
