// `svcmap agent` as a daemon a fleet can trust: scraped while connections
// churn and flows expire, no counter ever goes down and the totals end
// exact; killed, it leaves nothing of its in the kernel and a restart
// resumes; a store that fails in every way costs bounded memory and loses
// nothing within the backlog; 50 concurrent readers; a ring buffer too
// small; a socket table too small.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fmt/format.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "svcmap/export/remote_write.h"
#include "two_hosts_suite.h"

namespace svcmap::e2e {
namespace {

using Json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyClock = std::chrono::steady_clock;

const std::string kSvcmap = SVCMAP_BIN;
const std::string kChurn = SVCMAP_CHURN_BIN;
const char kNameRule[] = "cmdline:--name (\\S+)=$1";
// Under AddressSanitizer the agent's RSS is mostly shadow memory and the
// freed-memory quarantine: its bounds are checked in the plain build only.
constexpr bool kCheckRss = !SVCMAP_SANITIZED;

// Every counter sample of an exposition: "name{labels}" -> value.
std::map<std::string, double> Counters(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    std::string key = line.substr(0, sp);
    std::string name = key.substr(0, key.find('{'));
    if (name.size() < 6 || name.substr(name.size() - 6) != "_total") continue;
    out[key] = std::stod(line.substr(sp + 1));
  }
  return out;
}

// The value of the first sample whose key holds every one of `parts`.
double Find(const std::map<std::string, double>& m, const std::vector<std::string>& parts) {
  for (const auto& [k, v] : m) {
    bool all = true;
    for (const std::string& p : parts) all = all && k.find(p) != std::string::npos;
    if (all) return v;
  }
  return -1;
}

long RssKiB(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

// Scrapes /metrics every `period` on a thread; remembers every decrease of
// a series between two scrapes that both had it (a series missing from a
// scrape has ended; one that comes back is a new life).
class Scraper {
 public:
  Scraper(std::string url, milliseconds period) : url_(std::move(url)), period_(period) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Scraper() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int scrapes() const { return scrapes_; }
  std::vector<std::string> decreases() {
    std::lock_guard<std::mutex> lock(mu_);
    return decreases_;
  }
  // Each series' value in the last scrape that had it: where its (last)
  // life ended, even once idle expiry has removed it.
  std::map<std::string, double> finals() {
    std::lock_guard<std::mutex> lock(mu_);
    return finals_;
  }

 private:
  void Run() {
    auto next = SteadyClock::now();
    std::map<std::string, double> last;
    while (!stop_) {
      std::this_thread::sleep_until(next);
      next += period_;
      RunResult r = RunCmd({"curl", "-sf", "--max-time", "3", url_}, seconds(5));
      if (r.exit_code != 0) continue;
      std::map<std::string, double> now = Counters(r.out);
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [k, v] : now) {
        if (auto it = last.find(k); it != last.end() && v < it->second)
          decreases_.push_back(fmt::format("{}: {} -> {}", k, it->second, v));
        finals_[k] = v;
      }
      last = std::move(now);
      ++scrapes_;
    }
  }

  const std::string url_;
  const milliseconds period_;
  std::atomic<bool> stop_{false};
  std::atomic<int> scrapes_{0};
  std::mutex mu_;
  std::vector<std::string> decreases_;
  std::map<std::string, double> finals_;
  std::thread thread_;
};

// A remote-write store on loopback whose behaviour the test sets: it keeps
// the timestamp of every push it accepted (one gauge sample per push).
class FakeStore {
 public:
  enum class Mode { kOk, k500, k429, kSlow, kHang };
  FakeStore() {
    server_.Post("/write", [this](const httplib::Request& req, httplib::Response& res) {
      std::unique_lock<std::mutex> lock(mu_);
      ++requests_;
      if (mode_ == Mode::kHang) cv_.wait(lock, [&] { return mode_ != Mode::kHang || closing_; });
      if (mode_ == Mode::kSlow) {
        lock.unlock();
        std::this_thread::sleep_for(milliseconds(1000));
        lock.lock();
      }
      if (mode_ == Mode::k500) {
        res.status = 500;
        return;
      }
      if (mode_ == Mode::k429) {
        res.status = 429;
        return;
      }
      absl::StatusOr<std::vector<exporter::DecodedSeries>> d = exporter::DecodeWriteRequest(req.body);
      if (!d.ok()) {
        res.status = 400;
        return;
      }
      for (const exporter::DecodedSeries& s : *d)
        for (const auto& [name, value] : s.labels)
          if (name == "__name__" && value == "svcmap_flows")
            for (const auto& [ts, v] : s.samples) pushes_.insert(ts);
      res.status = 204;
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FakeStore() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    server_.stop();
    thread_.join();
  }
  void set_mode(Mode m) {
    std::lock_guard<std::mutex> lock(mu_);
    mode_ = m;
    cv_.notify_all();
  }
  std::set<int64_t> pushes() {
    std::lock_guard<std::mutex> lock(mu_);
    return pushes_;
  }
  int requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  std::string url() const { return fmt::format("http://127.0.0.1:{}/write", port_); }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  Mode mode_ = Mode::kOk;
  bool closing_ = false;
  int requests_ = 0;
  std::set<int64_t> pushes_;
};

class AgentTest : public TwoHostsSuite {
 protected:
  void SetUp() override {
    TwoHostsSuite::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    for (const char* tool : {"curl", "bpftool"})
      ASSERT_FALSE(Which(tool).empty()) << tool << " is not installed (scripts/install-deps)";
  }
  void TearDown() override {
    for (auto& s : servers_) {
      s->Signal(SIGTERM);
      s->Wait(seconds(10));
    }
    servers_.clear();
  }

  // An agent over every namespace of the host.
  std::unique_ptr<Child> StartAgent(std::string& listen, std::vector<std::string> extra = {}) {
    listen = fmt::format("127.0.0.1:{}", FreePort());
    std::vector<std::string> argv = {kSvcmap, "agent", "--listen", listen, "--name-rule", kNameRule};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto agent = std::make_unique<Child>(argv);
    EXPECT_TRUE(agent->WaitForLine(true, "svcmap: agent on http://" + listen, seconds(60)))
        << agent->err();
    return agent;
  }
  // A churn server on machine B.
  void Serve(int port, const std::string& name = "churn-server") {
    auto s = std::make_unique<Child>(TwoHosts::In(
        hosts_->b, {kChurn, "serve", "--bind", hosts_->b_ip4, "--port", std::to_string(port),
                    "--name", name}));
    ASSERT_TRUE(s->WaitForLine(false, "ready", seconds(30)));
    servers_.push_back(std::move(s));
  }
  // Load from machine A, as service `name`.
  std::vector<std::string> Load(int port, const std::string& name, std::vector<std::string> flags) {
    std::vector<std::string> argv = {kChurn, "load", "--host", hosts_->b_ip4, "--port",
                                     std::to_string(port), "--name", name};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return TwoHosts::In(hosts_->a, argv);
  }
  static Json Totals(const RunResult& r) {
    Json j = Json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out << r.err;
    return j;
  }
  static std::map<std::string, double> Scrape(const std::string& listen) {
    return Counters(RunCmd({"curl", "-sf", "http://" + listen + "/metrics"}).out);
  }
  // Polls until the counter holding `parts` equals `want`; its last value.
  static double Await(const std::string& listen, const std::vector<std::string>& parts, double want,
                      seconds timeout = seconds(15)) {
    double v = -1;
    auto until = SteadyClock::now() + timeout;
    do {
      v = Find(Scrape(listen), parts);
      if (v == want) break;
      std::this_thread::sleep_for(milliseconds(200));
    } while (SteadyClock::now() < until);
    return v;
  }

  std::vector<std::unique_ptr<Child>> servers_;
};

// Scraped every 200 ms for 18 s while a service churns short connections,
// keeps long ones talking and forks new processes (two processes of one
// service to one destination), while another's flows go idle and expire
// between bursts: no counter ever goes down within a series' life, and the
// totals end exactly where the load says.
TEST_F(AgentTest, ScrapesDuringChurnAndExpiryNeverSeeACounterGoDown) {
  std::string listen;
  auto agent = StartAgent(listen, {"--flow-idle-timeout", "2s"});
  Serve(7401);
  Serve(7402);
  Scraper scraper("http://" + listen + "/metrics", milliseconds(200));
  Child steady(Load(7401, "churn-a",
                    {"--seconds", "16", "--rate", "150", "--threads", "2", "--long", "4",
                     "--interval-ms", "100", "--procs", "5", "--size", "700"}));
  Json last_burst;
  for (int burst = 0; burst < 3; ++burst) {
    RunResult r = RunCmd(Load(7402, "churn-b", {"--seconds", "3", "--rate", "100", "--threads", "1",
                                               "--size", "300"}),
                         seconds(30));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    last_burst = Totals(r);
    std::this_thread::sleep_for(seconds(3));  // longer than the idle timeout
  }
  RunResult done = steady.Wait(seconds(60));
  ASSERT_EQ(done.exit_code, 0) << done.err;
  Json load = Totals(done);
  ASSERT_EQ(load["failed"], 0) << load.dump();
  EXPECT_GE(load["processes"].get<int>(), 60);
  scraper.Stop();
  // Where each series was last seen: churn-a's ended (idle) after the load.
  std::map<std::string, double> final = scraper.finals();
  const std::string a = "src_service_name=\"churn-a\"", port_a = "dst_port=\"7401\"";
  // For a failure's message: what the store would hold of port 7401 and,
  // when a connection is missing, the agent's own counters (naming, eviction).
  std::string seen;
  for (const auto& [k, v] : final)
    if (k.find(port_a) != std::string::npos) seen += fmt::format("{} {}\n", k, v);
  if (Find(final, {"svcmap_connections_total{", a, port_a}) != load["connections"].get<double>())
    for (const auto& [k, v] : Scrape(listen))
      if (k.find("dst_ip=") == std::string::npos) seen += fmt::format("{} {}\n", k, v);
  SCOPED_TRACE(seen);
  EXPECT_EQ(Find(final, {"svcmap_connection_sent_bytes_total{", a, port_a}),
            load["sent"].get<double>());
  EXPECT_EQ(Find(final, {"svcmap_connection_received_bytes_total{", a, port_a}),
            load["received"].get<double>());
  EXPECT_EQ(Find(final, {"svcmap_connections_total{", a, port_a}),
            load["connections"].get<double>());
  // Both ends are on this host, so NETWORK_TRAFFIC sees each byte twice.
  EXPECT_EQ(Find(final, {"svcmap_traffic_bytes_total{", "dst_port=\"7401\""}),
            2 * (load["sent"].get<double>() + load["received"].get<double>()));
  // churn-b's series ended with each pause and started again: its last life
  // is the last burst, exactly.
  EXPECT_EQ(Find(final, {"svcmap_connection_sent_bytes_total{", "churn-b"}),
            last_burst["sent"].get<double>());
  EXPECT_GT(Find(Scrape(listen), {"svcmap_flows_expired_total"}), 0);
  // Gone now, whole: nothing of them was left over.
  EXPECT_EQ(Find(Scrape(listen), {"svcmap_connection_sent_bytes_total{", a}), -1);
  EXPECT_GE(scraper.scrapes(), 75);
  EXPECT_TRUE(scraper.decreases().empty()) << fmt::format("{}", fmt::join(scraper.decreases(), "\n"));
  agent->Signal(SIGTERM);
  EXPECT_EQ(agent->Wait(seconds(30)).exit_code, 0);
}

struct BpfObjects {
  std::set<int> progs, maps, links;
  bool empty() const { return progs.empty() && maps.empty() && links.empty(); }
};

// Every program, map and link id the kernel has. (Debian's bpftool is
// built without the skeletons that would name their holders: what an agent
// holds is what appeared while it started; the e2e tests run one at a time.)
BpfObjects Loaded() {
  BpfObjects out;
  for (const auto& [kind, into] : std::vector<std::pair<std::string, std::set<int>*>>{
           {"prog", &out.progs}, {"map", &out.maps}, {"link", &out.links}}) {
    Json list = Json::parse(RunCmd({"bpftool", "-j", kind, "show"}).out, nullptr, false);
    if (!list.is_array()) continue;
    for (const Json& o : list) into->insert(o.value("id", 0));
  }
  return out;
}

std::set<int> Minus(const std::set<int>& a, const std::set<int>& b) {
  std::set<int> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::inserter(out, out.begin()));
  return out;
}

// SIGKILL: nothing is pinned, so the kernel frees every program, link and
// map of ours once the process is gone. A restart seeds the connection that
// stayed open and resumes; the store sees one reset (a 0) and never a
// decrease inside a series' life.
TEST_F(AgentTest, SigkillLeavesNothingBehindAndARestartResumes) {
  Store store(Store::Kind::kVictoriaMetrics);
  ASSERT_TRUE(store.ready());
  Serve(7403);
  const std::vector<std::string> push = {"--remote-write", store.write_url(), "--push-interval",
                                         "500ms"};
  const BpfObjects before = Loaded();
  std::string listen;
  auto agent = StartAgent(listen, push);
  Child load(Load(7403, "churn-long",
                  {"--seconds", "14", "--rate", "0", "--long", "2", "--interval-ms", "50",
                   "--size", "1000"}));
  std::this_thread::sleep_for(seconds(3));
  const BpfObjects running = Loaded();
  BpfObjects held{Minus(running.progs, before.progs), Minus(running.maps, before.maps),
                  Minus(running.links, before.links)};
  EXPECT_FALSE(held.progs.empty());
  EXPECT_FALSE(held.maps.empty());
  EXPECT_FALSE(held.links.empty());
  agent->Signal(SIGKILL);
  agent->Wait(seconds(10));
  BpfObjects left;
  for (int i = 0; i < 50; ++i) {
    BpfObjects now = Loaded();
    left = {};
    for (int id : held.progs) if (now.progs.contains(id)) left.progs.insert(id);
    for (int id : held.maps) if (now.maps.contains(id)) left.maps.insert(id);
    for (int id : held.links) if (now.links.contains(id)) left.links.insert(id);
    if (left.empty()) break;
    std::this_thread::sleep_for(milliseconds(200));
  }
  EXPECT_TRUE(left.empty()) << fmt::format("left: progs {} maps {} links {}",
                                           fmt::join(left.progs, ","), fmt::join(left.maps, ","),
                                           fmt::join(left.links, ","));

  agent = StartAgent(listen, push);
  RunResult done = load.Wait(seconds(60));
  ASSERT_EQ(done.exit_code, 0) << done.err;
  Json totals = Totals(done);
  ASSERT_EQ(totals["failed"], 0);
  // The restarted agent found the open connections with their totals so far.
  EXPECT_EQ(Await(listen, {"svcmap_connection_sent_bytes_total{", "churn-long"}, totals["sent"]),
            totals["sent"].get<double>());
  std::this_thread::sleep_for(seconds(2));  // pushed
  agent->Signal(SIGTERM);
  EXPECT_EQ(agent->Wait(seconds(30)).exit_code, 0);

  RunResult exp = RunCmd({"curl", "-sf", store.base() + "/api/v1/export", "--data-urlencode",
                          "match[]=svcmap_connection_sent_bytes_total{src_service_name=\"churn-long\"}"});
  Json series = Json::parse(exp.out, nullptr, false);
  ASSERT_FALSE(series.is_discarded()) << exp.out;
  std::vector<std::pair<int64_t, double>> samples;
  for (size_t i = 0; i < series["timestamps"].size(); ++i)
    samples.emplace_back(series["timestamps"][i].get<int64_t>(), series["values"][i].get<double>());
  std::sort(samples.begin(), samples.end());
  ASSERT_GE(samples.size(), 10u) << exp.out;
  int resets = 0;
  for (size_t i = 1; i < samples.size(); ++i) {
    if (samples[i].second >= samples[i - 1].second) continue;
    EXPECT_EQ(samples[i].second, 0) << "a decrease that is not a reset, at sample " << i;
    ++resets;
  }
  EXPECT_EQ(resets, 1);
  EXPECT_EQ(samples.back().second, totals["sent"].get<double>());
}

// A store that answers 500, 429, slower than the push interval, or takes
// the connection and never answers: memory stays bounded, failures are
// counted, nothing within the backlog is lost and pushing resumes.
TEST_F(AgentTest, AStoreThatFailsInEveryWayLosesNothingWithinTheBacklog) {
  Serve(7404);
  for (FakeStore::Mode mode : {FakeStore::Mode::k500, FakeStore::Mode::k429,
                               FakeStore::Mode::kSlow, FakeStore::Mode::kHang}) {
    SCOPED_TRACE(static_cast<int>(mode));
    FakeStore store;
    std::string listen;
    std::vector<std::string> flags = {"--remote-write", store.url(), "--push-interval", "200ms"};
    // A store that never answers outlasts the timeout: the push is given
    // up, counted, and retried with the backlog kept.
    if (mode == FakeStore::Mode::kHang) flags.insert(flags.end(), {"--remote-write-timeout", "1s"});
    auto agent = StartAgent(listen, flags);
    Child load(Load(7404, "churn-w", {"--seconds", "11", "--rate", "100", "--long", "2",
                                      "--procs", "2", "--size", "500"}));
    std::this_thread::sleep_for(seconds(2));
    store.set_mode(mode);
    const long rss_before = RssKiB(agent->pid());
    long rss_max = rss_before;
    for (int i = 0; i < 10; ++i) {
      std::this_thread::sleep_for(milliseconds(500));
      rss_max = std::max(rss_max, RssKiB(agent->pid()));
    }
    std::map<std::string, double> during = Scrape(listen);
    if (mode != FakeStore::Mode::kSlow) {
      EXPECT_GT(Find(during, {"svcmap_remote_write_failed_requests_total"}), 0);
    }
    EXPECT_EQ(Find(during, {"svcmap_remote_write_samples_total{result=\"dropped\"}"}), 0);
    store.set_mode(FakeStore::Mode::kOk);
    ASSERT_EQ(load.Wait(seconds(60)).exit_code, 0);
    // The backlog drains: every push from before the outage to now arrived.
    for (int i = 0; i < 100; ++i) {
      if (RunCmd({"curl", "-sf", "http://" + listen + "/metrics"})
              .out.find("svcmap_remote_write_pending_samples 0\n") != std::string::npos)
        break;
      std::this_thread::sleep_for(milliseconds(200));
    }
    std::set<int64_t> pushes = store.pushes();
    ASSERT_GE(pushes.size(), 40u);
    int64_t prev = *pushes.begin();
    for (int64_t ts : pushes) {
      EXPECT_LE(ts - prev, 450) << "a push lost before " << ts;
      prev = ts;
    }
    if (kCheckRss) {
      EXPECT_LT(rss_max - rss_before, 20 * 1024) << "RSS grew by " << rss_max - rss_before << " KiB";
    }
    agent->Signal(SIGTERM);
    RunResult r = agent->Wait(seconds(30));
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.err.find(" 0 dropped, 0 rejected"), std::string::npos) << r.err;
  }
}

// With a backlog smaller than the outage: drops are counted, /healthz says
// the store has been away longer than the backlog holds, and recovers.
TEST_F(AgentTest, AnOutageLongerThanTheBacklogIsCountedAndFailsHealth) {
  FakeStore store;
  std::string listen;
  auto agent = StartAgent(listen, {"--remote-write", store.url(), "--push-interval", "200ms",
                                   "--remote-write-buffer", "1000"});
  std::this_thread::sleep_for(seconds(1));
  EXPECT_EQ(RunCmd({"curl", "-s", "http://" + listen + "/healthz"}).out, "ok\n");
  store.set_mode(FakeStore::Mode::k500);
  std::string health;
  for (int i = 0; i < 50; ++i) {
    health = RunCmd({"curl", "-s", "http://" + listen + "/healthz"}).out;
    if (health.find("remote write failing") != std::string::npos) break;
    std::this_thread::sleep_for(milliseconds(200));
  }
  EXPECT_NE(health.find("remote write failing"), std::string::npos) << health;
  EXPECT_EQ(RunCmd({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                    "http://" + listen + "/healthz"}).out, "503");
  EXPECT_GT(Find(Scrape(listen), {"svcmap_remote_write_samples_total{result=\"dropped\"}"}), 0);
  EXPECT_GT(Find(Scrape(listen), {"svcmap_drops_total{stage=\"export_remote_write\"}"}), 0);
  store.set_mode(FakeStore::Mode::kOk);
  for (int i = 0; i < 50; ++i) {
    health = RunCmd({"curl", "-s", "http://" + listen + "/healthz"}).out;
    if (health == "ok\n") break;
    std::this_thread::sleep_for(milliseconds(200));
  }
  EXPECT_EQ(health, "ok\n");
  agent->Signal(SIGTERM);
  EXPECT_EQ(agent->Wait(seconds(30)).exit_code, 0);
}

// 50 readers of /metrics and /api/snapshot at once, during churn: every
// answer whole, memory bounded, nothing dropped on the event path.
TEST_F(AgentTest, FiftyConcurrentReadersDuringChurn) {
  Serve(7405);
  std::string listen;
  auto agent = StartAgent(listen);
  Child load(Load(7405, "churn-r", {"--seconds", "12", "--rate", "300", "--threads", "2",
                                    "--long", "10", "--procs", "5", "--size", "400"}));
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, bad{0};
  std::vector<std::thread> readers;
  const size_t colon = listen.rfind(':');
  const std::string host = listen.substr(0, colon);
  const int port = std::stoi(listen.substr(colon + 1));
  for (int i = 0; i < 50; ++i) {
    readers.emplace_back([&, i] {
      const char* path = i % 2 ? "/api/snapshot" : "/metrics";
      int n = 0;
      while (!stop) {
        httplib::Client c(host, port);
        c.set_read_timeout(30, 0);
        httplib::Result r = c.Get(path);
        if (!r || r->status != 200 || r->body.empty()) {
          ++bad;
          continue;
        }
        // The exposition ends whole; every fourth snapshot is parsed.
        bool whole = r->body.back() == (i % 2 ? '}' : '\n');
        if (i % 2 && n++ % 4 == 0) whole = !Json::parse(r->body, nullptr, false).is_discarded();
        (whole ? ok : bad)++;
      }
    });
  }
  long rss_max = 0;
  while (kill(load.pid(), 0) == 0 && waitpid(load.pid(), nullptr, WNOHANG) == 0) {
    rss_max = std::max(rss_max, RssKiB(agent->pid()));
    std::this_thread::sleep_for(milliseconds(250));
  }
  stop = true;
  for (std::thread& t : readers) t.join();
  EXPECT_GT(ok.load(), 200);
  EXPECT_EQ(bad.load(), 0);
  if (kCheckRss) {
    EXPECT_LT(rss_max, 200 * 1024) << "peak RSS " << rss_max << " KiB";
  }
  std::map<std::string, double> m = Scrape(listen);
  EXPECT_EQ(Find(m, {"svcmap_drops_total{stage=\"kernel_ringbuf\"}"}), 0);
  EXPECT_EQ(RunCmd({"curl", "-s", "http://" + listen + "/healthz"}).out, "ok\n");
  agent->Signal(SIGTERM);
  EXPECT_EQ(agent->Wait(seconds(30)).exit_code, 0);
}

// A 1 MiB ring at the highest connection rate, and the agent stopped for a
// while so that it fills: the drops are counted, the agent runs on, and no
// counter goes down.
TEST_F(AgentTest, ARingBufferTooSmallDropsCountedAndCountersStayMonotonic) {
  Serve(7406);
  std::string listen;
  auto agent = StartAgent(listen, {"--ringbuf-mib", "1"});
  Scraper scraper("http://" + listen + "/metrics", milliseconds(200));
  Child load(Load(7406, "churn-fast", {"--seconds", "8", "--rate", "100000", "--threads", "4",
                                       "--size", "100"}));
  std::this_thread::sleep_for(seconds(3));
  agent->Signal(SIGSTOP);
  std::this_thread::sleep_for(milliseconds(1500));
  agent->Signal(SIGCONT);
  ASSERT_EQ(load.Wait(seconds(60)).exit_code, 0);
  std::this_thread::sleep_for(seconds(1));
  scraper.Stop();
  std::map<std::string, double> m = Scrape(listen);
  EXPECT_GT(Find(m, {"svcmap_drops_total{stage=\"kernel_ringbuf\"}"}), 0);
  EXPECT_GT(Find(m, {"svcmap_connection_sent_bytes_total{", "churn-fast"}), 0);
  EXPECT_TRUE(scraper.decreases().empty()) << fmt::format("{}", fmt::join(scraper.decreases(), "\n"));
  EXPECT_GT(scraper.scrapes(), 10);
  EXPECT_EQ(RunCmd({"curl", "-s", "http://" + listen + "/healthz"}).out, "ok\n");
  agent->Signal(SIGTERM);
  EXPECT_EQ(agent->Wait(seconds(30)).exit_code, 0);
}

// A socket table too small: every socket it refuses is counted, once,
// however much that socket sends and receives.
// The port answers from before the BPF programs load: /readyz says 503
// "starting" (and /healthz "ok: starting", a live process) until the seed
// is done and a first frame is out, then 200, and /metrics has data.
TEST_F(AgentTest, ReadyzSaysStartingUntilTheSeedIsDoneThenReady) {
  const std::string listen = fmt::format("127.0.0.1:{}", FreePort());
  Child agent({kSvcmap, "agent", "--listen", listen, "--name-rule", kNameRule});
  auto code = [&](const std::string& path, std::string* body) {
    RunResult r = RunCmd({"curl", "-s", "-w", "\n%{http_code}", "http://" + listen + path},
                         seconds(5));
    const size_t nl = r.out.rfind('\n');
    if (body) *body = r.out.substr(0, nl == std::string::npos ? 0 : nl);
    return nl == std::string::npos ? 0 : std::atoi(r.out.c_str() + nl + 1);
  };
  std::vector<int> seen;
  std::string body, starting_health;
  const auto until = SteadyClock::now() + seconds(60);
  while (SteadyClock::now() < until) {
    const int c = code("/readyz", &body);
    if (c == 503 && starting_health.empty()) code("/healthz", &starting_health);
    if (c != 0 && (seen.empty() || seen.back() != c)) seen.push_back(c);
    if (c == 200) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_EQ(seen, (std::vector<int>{503, 200})) << "readyz answers in order";
  EXPECT_EQ(body, "ready\n");
  EXPECT_EQ(starting_health, "ok: starting\n");
  ASSERT_TRUE(agent.WaitForLine(true, "svcmap: agent on http://" + listen, seconds(30)))
      << agent.err();
  std::string metrics;
  EXPECT_EQ(code("/metrics", &metrics), 200);
  EXPECT_NE(metrics.find("svcmap_build_info{"), std::string::npos);
  agent.Signal(SIGTERM);
  EXPECT_EQ(agent.Wait(seconds(30)).exit_code, 0);
}

TEST_F(AgentTest, AFullSocketTableCountsEachRefusedSocketOnce) {
  Serve(7407);
  std::string listen;
  const BpfObjects before_agent = Loaded();
  auto agent = StartAgent(listen, {"--max-sockets", "1024"});
  // This agent's socket table, by what appeared while it started.
  int socks = 0;
  for (int id : Minus(Loaded().maps, before_agent.maps)) {
    Json m = Json::parse(RunCmd({"bpftool", "-j", "map", "show", "id", std::to_string(id)}).out,
                         nullptr, false);
    if (m.value("name", "") == "socks") socks = id;
  }
  ASSERT_NE(socks, 0) << "no socks map among the agent's";
  auto entries = [&] {
    Json d = Json::parse(RunCmd({"bpftool", "-j", "map", "dump", "id", std::to_string(socks)}).out,
                         nullptr, false);
    return d.is_array() ? static_cast<int>(d.size()) : -1;
  };
  const int occupied = entries();
  ASSERT_GE(occupied, 0);
  ASSERT_LT(occupied, 200) << "the table is not nearly empty before the load";
  const double before = Find(Scrape(listen), {"svcmap_drops_total{stage=\"kernel_socket_table\"}"});
  RunResult r = RunCmd(Load(7407, "churn-full", {"--seconds", "4", "--rate", "0", "--long", "600",
                                                 "--interval-ms", "10", "--size", "10"}),
                       seconds(60));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json totals = Totals(r);
  ASSERT_EQ(totals["failed"], 0);
  const double refused =
      Find(Scrape(listen), {"svcmap_drops_total{stage=\"kernel_socket_table\"}"}) - before;
  // 1,200 sockets (both ends of 600 connections, all open together) into
  // the 1,024 - occupied slots left, each through a hundred requests or so:
  // counted per I/O, or tried again on each, this would be tens of
  // thousands. The few sockets of the scrapes and the host's own traffic
  // meanwhile may add a handful.
  const double expected = 1200 - (1024 - occupied);
  EXPECT_GE(refused, expected);
  EXPECT_LE(refused, expected + 20) << "occupied before: " << occupied;
  agent->Signal(SIGTERM);
  EXPECT_EQ(agent->Wait(seconds(30)).exit_code, 0);
}

}  // namespace
}  // namespace svcmap::e2e
