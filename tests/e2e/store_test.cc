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
    std::vector<std::unique_ptr<Child>> agents;
    for (const std::string& ns : {hosts_->a_path, hosts_->b_path}) {
      std::string listen = fmt::format("127.0.0.1:{}", FreePort());
      std::vector<std::string> argv = {kSvcmap,         "agent",         "--listen",
                                       listen,          "--netns",       ns,
                                       "--name-rule",   kNameRule,       "--remote-write",
                                       store.write_url(), "--push-interval", "1s"};
      argv.insert(argv.end(), extra.begin(), extra.end());
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
