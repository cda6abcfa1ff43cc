// node::Session against a fake backend and a fake /proc: every exported
// counter stays monotonic for the life of its series whatever happens under
// it (closes, idle expiry, sibling processes, exits, PID reuse, renames, a
// live read racing closes still in the ring buffer), and ends up exact.
#include "svcmap/node/session.h"

#include <time.h>

#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "gtest/gtest.h"
#include "svcmap/app/health.h"

namespace svcmap::node {
namespace {

using flow::IpAddr;
using flow::ProcessKey;
using flow::Role;
using flow::SockEvent;
using flow::SockRecord;

uint64_t Now() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + ts.tv_nsec;
}

// Events are handed in by the test (as the drain thread would), the live
// table is whatever the test put there.
class FakeBackend final : public kernel::Backend {
 public:
  absl::Status Start(EventSink sink) override {
    sink_ = std::move(sink);
    return absl::OkStatus();
  }
  void Stop() override { running_ = false; }
  absl::Status RefreshLive() override { return absl::OkStatus(); }
  absl::Status ForEachLive(const LiveFn& fn) override {
    std::vector<SockRecord> copy;
    std::function<void()> between;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [id, s] : live_) copy.push_back(s);
      between = std::exchange(between_, nullptr);
    }
    if (between) between();
    for (const SockRecord& s : copy) fn(s);
    return absl::OkStatus();
  }
  kernel::BackendStats Stats() const override { return {}; }
  Progress DrainProgress() const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (progress_) return *progress_;
    return {running_, absl::Now()};
  }
  // What the drain thread reports from now on (a stall, a stop).
  void SetProgress(Progress p) {
    std::lock_guard<std::mutex> lock(mu_);
    progress_ = p;
  }
  const std::vector<std::string>& attached() const override { return attached_; }

  // As the kernel does: a socket whose close is queued is no longer listed
  // (its entry is marked destroyed, then deleted).
  void Emit(SockEvent ev) {
    if (ev.type == flow::EventType::kClose) Unlist(ev.sock.sock_id);
    sink_({&ev, 1});
  }
  // Runs `fn` in the next live read, after the table was copied and before
  // the copy is handed over: what the drain thread may do meanwhile.
  void BetweenCopyAndApply(std::function<void()> fn) {
    std::lock_guard<std::mutex> lock(mu_);
    between_ = std::move(fn);
  }
  void SetLive(const SockRecord& s) {
    std::lock_guard<std::mutex> lock(mu_);
    live_[s.sock_id] = s;
  }
  void Unlist(uint64_t sock_id) {
    std::lock_guard<std::mutex> lock(mu_);
    live_.erase(sock_id);
  }

 private:
  EventSink sink_;
  mutable std::mutex mu_;
  std::optional<Progress> progress_;
  std::map<uint64_t, SockRecord> live_;
  std::function<void()> between_;
  std::atomic<bool> running_{true};
  std::vector<std::string> attached_{"fake"};
};

// /proc as the test says: a process's cmdline, and whether it runs.
class FakeIo final : public NodeIo {
 public:
  identity::ProcessFacts ReadFacts(const ProcessKey& p) override {
    Gate();
    std::lock_guard<std::mutex> lock(mu_);
    ++reads_[p];
    identity::ProcessFacts f;
    if (auto it = cmdline_.find(p); it != cmdline_.end()) {
      f.cmdline = it->second;
      f.exe = "/usr/bin/svcmap-peer";
    }
    return f;
  }
  bool Alive(const ProcessKey& p) override {
    Gate();
    std::lock_guard<std::mutex> lock(mu_);
    return !dead_.contains(p);
  }
  absl::flat_hash_map<uint32_t, std::string> NetnsAddresses() override {
    Gate();
    return {};
  }
  // Never blocks, as the real one: the drain asks it.
  flow::NatAnswer PeekNat(const SockRecord& s) override {
    std::lock_guard<std::mutex> lock(mu_);
    return nat_unknown_.contains(s.remote_port) ? flow::NatAnswer::Unknown()
                                                 : flow::NatAnswer::Plain();
  }
  flow::NatAnswer ResolveNat(const SockRecord&) override {
    Gate();
    return flow::NatAnswer::Plain();
  }
  // What may block (reading /proc, asking conntrack) waits while closed:
  // a slow or hung node.
  void Close() {
    std::lock_guard<std::mutex> lock(gate_mu_);
    open_ = false;
  }
  void Open() {
    {
      std::lock_guard<std::mutex> lock(gate_mu_);
      open_ = true;
    }
    gate_cv_.notify_all();
  }
  // Until some caller waits at the closed gate.
  bool AwaitWaiter(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(gate_mu_);
    return gate_cv_.wait_for(lock, timeout, [&] { return waiting_ > 0; });
  }
  // Closes to this port wait for conntrack's answer (a DNAT'd destination).
  void NatUnknown(uint16_t port) {
    std::lock_guard<std::mutex> lock(mu_);
    nat_unknown_.insert(port);
  }
  void Prune() override {}
  std::vector<std::pair<std::string, uint64_t>> TableSizes() override { return {}; }

  void Process(const ProcessKey& p, std::string cmdline) {
    std::lock_guard<std::mutex> lock(mu_);
    cmdline_[p] = std::move(cmdline);
  }
  void Kill(const ProcessKey& p) {
    std::lock_guard<std::mutex> lock(mu_);
    dead_.insert(p);
  }
  // Its /proc gone too: an exited process.
  void Reap(const ProcessKey& p) {
    std::lock_guard<std::mutex> lock(mu_);
    dead_.insert(p);
    cmdline_.erase(p);
  }
  int Reads(const ProcessKey& p) {
    std::lock_guard<std::mutex> lock(mu_);
    return reads_[p];
  }

 private:
  void Gate() {
    std::unique_lock<std::mutex> lock(gate_mu_);
    ++waiting_;
    gate_cv_.notify_all();
    gate_cv_.wait(lock, [&] { return open_; });
    --waiting_;
  }
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool open_ = true;
  int waiting_ = 0;
  std::set<uint16_t> nat_unknown_;
  std::mutex mu_;
  std::map<ProcessKey, std::string> cmdline_;
  std::set<ProcessKey> dead_;
  std::map<ProcessKey, int> reads_;
};

identity::ServiceNamer Namer(const std::string& name_template = "$1") {
  return *identity::ServiceNamer::Create(
      {{identity::NamingRule::Field::kCmdline, "--name (\\S+)", name_template}});
}

class SessionTest : public ::testing::Test {
 protected:
  void StartSession(absl::Duration idle = absl::Minutes(5),
                    absl::Duration work_poll = absl::Milliseconds(20)) {
    auto backend = std::make_unique<FakeBackend>();
    auto io = std::make_unique<FakeIo>();
    backend_ = backend.get();
    io_ = io.get();
    SessionOptions o;
    o.instance.hostname = o.instance.machine = "node";
    o.instance.instance_ip = "10.0.0.1";
    o.instance.backend = "fake";
    o.idle_timeout = idle;
    o.housekeeping = absl::Hours(1);  // frames only when asked for
    o.collector.exit_check_interval_ns = 0;
    o.work_poll = work_poll;
    absl::StatusOr<std::unique_ptr<Session>> s =
        Session::Start(std::move(backend), Namer(), std::move(io), o);
    ASSERT_TRUE(s.ok()) << s.status();
    session_ = *std::move(s);
  }
  void TearDown() override {
    if (session_) session_->Stop();
  }

  SockRecord Client(uint64_t id, const ProcessKey& p, uint64_t sent, uint64_t received,
                    const char* dst = "10.0.0.2", uint16_t src_port = 40000) {
    SockRecord s;
    s.sock_id = id;
    s.open_ns = 1000 + id;
    s.netns = 1;
    s.role = Role::kClient;
    s.owned = s.established = true;
    s.owner.process = p;
    s.owner.comm = "svcmap-peer";
    s.local_ip = IpAddr::V4(10, 0, 0, 1);
    s.local_port = static_cast<uint16_t>(src_port + id);
    s.remote_ip = *IpAddr::Parse(dst);
    s.remote_port = 3306;
    s.bytes_sent = sent;
    s.bytes_received = received;
    return s;
  }
  void Close(const SockRecord& s) {
    SockEvent ev;
    ev.type = flow::EventType::kClose;
    ev.ts_ns = Now();
    ev.sock = s;
    backend_->Unlist(s.sock_id);
    backend_->Emit(ev);
  }

  // Every counter sample of a fresh frame, "name{labels}" -> value; checks
  // that none went down since the previous scrape while its series lived.
  std::map<std::string, double> Scrape() {
    std::shared_ptr<const Frame> f = session_->FrameAfter(absl::Now());
    EXPECT_NE(f, nullptr);
    std::map<std::string, double> out;
    if (f == nullptr) return out;
    const exporter::Metrics& m = f->metrics();
    for (size_t i = 0; i < m.families.size(); ++i) {
      if (m.families[i].type != prometheus::MetricType::Counter) continue;
      for (size_t j = 0; j < m.families[i].metric.size(); ++j) {
        std::string key = m.families[i].name + "{";
        for (const auto& l : m.families[i].metric[j].label) key += l.name + "=" + l.value + ",";
        key += "}@" + std::to_string(m.created_ms[i][j]);  // a series' life
        out[key] = m.families[i].metric[j].counter.value;
      }
    }
    for (const auto& [k, v] : out) {
      if (auto it = last_.find(k); it != last_.end()) {
        EXPECT_GE(v, it->second) << k << " went down";
      }
    }
    last_ = out;
    return out;
  }
  // The value of the one live series of `family` for `service` (-1: none).
  double Sent(const std::string& service, const std::string& dst = "10.0.0.2") {
    double v = -1;
    for (const auto& [k, x] : Scrape())
      if (k.rfind("svcmap_connection_sent_bytes_total{", 0) == 0 &&
          k.find("src_service_name=" + service + ",") != std::string::npos &&
          k.find("dst_ip=" + dst + ",") != std::string::npos)
        v = x;
    return v;
  }
  // Frames until the worker has checked exits and the next pass retired
  // what it found.
  void Settle() {
    for (int i = 0; i < 3; ++i) {
      Scrape();
      std::this_thread::sleep_for(std::chrono::milliseconds(60));
    }
  }

  FakeBackend* backend_ = nullptr;
  FakeIo* io_ = nullptr;
  std::unique_ptr<Session> session_;
  std::map<std::string, double> last_;
};

TEST_F(SessionTest, ClosesAndOpenSocketsAddUpExactly) {
  StartSession();
  const ProcessKey app{7, 100};
  io_->Process(app, "svcmap-peer connect --name app");
  Close(Client(1, app, 100, 10));
  EXPECT_EQ(Sent("app"), 100);
  SockRecord open = Client(2, app, 50, 5);
  backend_->SetLive(open);
  EXPECT_EQ(Sent("app"), 150);
  open.bytes_sent = 80;
  backend_->SetLive(open);
  EXPECT_EQ(Sent("app"), 180);
  Close(open);
  EXPECT_EQ(Sent("app"), 180);
}

// The live read and the drain agree: a socket whose close is still in the
// ring buffer counts once, as open or as closed, never zero times.
TEST_F(SessionTest, ALiveReadRacingACloseStillInTheRingCountsItOnce) {
  StartSession();
  const ProcessKey app{7, 100};
  io_->Process(app, "svcmap-peer connect --name app");
  SockRecord s = Client(1, app, 500, 5);
  backend_->SetLive(s);
  EXPECT_EQ(Sent("app"), 500);
  backend_->Unlist(1);  // gone from the kernel's table, close not drained
  EXPECT_EQ(Sent("app"), 500);
  s.bytes_sent = 520;
  SockEvent ev;
  ev.type = flow::EventType::kClose;
  ev.ts_ns = Now();
  ev.sock = s;
  backend_->Emit(ev);
  EXPECT_EQ(Sent("app"), 520);
  // The other order: copied by a read while open, its close drained before
  // the read applies the copy.
  SockRecord t = Client(2, app, 30, 3);
  backend_->SetLive(t);
  ev.sock = t;
  backend_->BetweenCopyAndApply([&] { backend_->Emit(ev); });
  EXPECT_EQ(Sent("app"), 550);
  EXPECT_EQ(Sent("app"), 550);
}

TEST_F(SessionTest, ASiblingThatExitsLeavesItsBytesInTheSeriesTheOtherKeepsAlive) {
  StartSession();
  const ProcessKey a{7, 100}, b{8, 100};
  io_->Process(a, "svcmap-peer connect --name app");
  io_->Process(b, "svcmap-peer connect --name app");
  Close(Client(1, a, 100, 10));
  SockRecord open = Client(2, b, 50, 5);
  backend_->SetLive(open);
  EXPECT_EQ(Sent("app"), 150);
  io_->Kill(a);
  Settle();
  EXPECT_EQ(Sent("app"), 150);
  std::shared_ptr<const Frame> f = session_->FrameAfter(absl::Now(), true);
  bool retired_row = false;
  for (const flow::ConnectionRow& c : f->graph().connections) {
    if (c.src_pid == 0 && c.stats.bytes_sent == 100) retired_row = true;
  }
  EXPECT_TRUE(retired_row) << f->SnapshotText(2);
  open.bytes_sent = 70;
  backend_->SetLive(open);
  EXPECT_EQ(Sent("app"), 170);
  Close(open);
  io_->Kill(b);
  Settle();
  EXPECT_EQ(Sent("app"), 170);
}

TEST_F(SessionTest, AnExitedProcessIsForgottenAndItsLateCloseKeepsItsName) {
  StartSession();
  const ProcessKey a{7, 100};
  io_->Process(a, "svcmap-peer connect --name app");
  SockRecord s = Client(1, a, 100, 10);
  SockEvent connect;
  connect.type = flow::EventType::kConnect;
  connect.ts_ns = Now();
  connect.sock = s;
  backend_->Emit(connect);
  Scrape();
  io_->Kill(a);
  Settle();  // exited, nothing of it open: forgotten
  // Its socket's close comes only now (FIN_WAIT, long after the exit).
  Close(s);
  EXPECT_EQ(Sent("app"), 100);
}

// Found by the hour-long soak: a live read can find a short-lived child's
// socket before the ring buffer has delivered the child's fork record; its
// /proc is gone by then. It waits for the record instead of being named
// (for good) by its comm.
TEST_F(SessionTest, AChildReadLiveBeforeItsForkRecordIsNamedAsItsParent) {
  StartSession();
  const ProcessKey parent{7, 100}, child{8, 100};
  io_->Process(parent, "svcmap-peer connect --name app");
  Close(Client(1, parent, 100, 10));
  EXPECT_EQ(Sent("app"), 100);
  backend_->SetLive(Client(2, child, 50, 5));  // no /proc for the child
  EXPECT_EQ(Sent("app"), 100);  // not named yet: left out
  SockEvent fork;
  fork.type = flow::EventType::kFork;
  fork.ts_ns = Now();
  fork.parent = parent;
  fork.sock.owner.process = child;
  fork.sock.owner.comm = "svcmap-peer";
  backend_->Emit(fork);
  EXPECT_EQ(Sent("app"), 150);
  for (const auto& [k, v] : Scrape())
    EXPECT_EQ(k.find("src_service_name=svcmap-peer,"), std::string::npos) << k;
}

// A health check's curl lives for milliseconds and takes its /proc with it:
// the worker reads a new process as soon as its first event is in, not at
// its next poll (an hour here).
TEST_F(SessionTest, ANewProcessIsReadAtOnceNotAtTheNextPoll) {
  StartSession(absl::Minutes(5), absl::Hours(1));
  const ProcessKey p{7, 100};
  io_->Process(p, "svcmap-peer connect --name app");
  Close(Client(1, p, 100, 10));
  for (int i = 0; i < 1000 && io_->Reads(p) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_GT(io_->Reads(p), 0) << "not read within 10 s";
  io_->Reap(p);
  EXPECT_EQ(Sent("app"), 100);
}

// The end of a one-shot run: a process that exited before it could be read,
// and whose fork was not seen, is named by its comm, not left out.
TEST_F(SessionTest, AGoneProcessOfUnknownParentIsNamedByItsCommAtTheEnd) {
  StartSession();
  const ProcessKey p{7, 100};
  Close(Client(1, p, 100, 10));
  std::shared_ptr<const Frame> f = session_->Finish();
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(f->graph().services.size(), 1u);
  EXPECT_EQ(f->graph().services[0].name, "svcmap-peer");
  double sent = -1;
  const exporter::Metrics& m = f->metrics();
  for (size_t i = 0; i < m.families.size(); ++i)
    if (m.families[i].name == "svcmap_connection_sent_bytes_total")
      for (const auto& x : m.families[i].metric) sent = x.counter.value;
  EXPECT_EQ(sent, 100);
}

TEST_F(SessionTest, AReusedPidIsAnotherProcess) {
  StartSession();
  const ProcessKey first{7, 100}, second{7, 900};
  io_->Process(first, "svcmap-peer connect --name app");
  io_->Process(second, "svcmap-peer connect --name other");
  Close(Client(1, first, 100, 10));
  EXPECT_EQ(Sent("app"), 100);
  io_->Kill(first);
  Settle();
  Close(Client(2, second, 40, 4));
  EXPECT_EQ(Sent("app"), 100);
  EXPECT_EQ(Sent("other"), 40);
}

TEST_F(SessionTest, ARenameKeepsTheOldSeriesAndTheNewCountsOnlyWhatIsNew) {
  StartSession();
  const ProcessKey a{7, 100};
  io_->Process(a, "svcmap-peer connect --name app");
  Close(Client(1, a, 100, 10));
  SockRecord open = Client(2, a, 50, 5);
  backend_->SetLive(open);
  EXPECT_EQ(Sent("app"), 150);
  session_->SetNamer(Namer("renamed-$1"));
  // The worker applies it; then the open socket moves on.
  for (int i = 0; i < 50 && Sent("renamed-app") < 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  open.bytes_sent = 80;
  backend_->SetLive(open);
  EXPECT_EQ(Sent("app"), 150);
  EXPECT_EQ(Sent("renamed-app"), 30);
  Close(open);
  EXPECT_EQ(Sent("app"), 150);
  EXPECT_EQ(Sent("renamed-app"), 30);
}

TEST_F(SessionTest, IdleExpiryEndsASeriesOnlyWhenEveryFlowOfItIsIdleAndThenWhole) {
  StartSession(absl::Seconds(1));
  const ProcessKey a{7, 100}, b{8, 100};
  io_->Process(a, "svcmap-peer connect --name app");
  io_->Process(b, "svcmap-peer connect --name app");
  // Two flows of one series (from two local addresses), one goes idle.
  SockRecord old = Client(1, a, 100, 10);
  old.local_ip = IpAddr::V4(10, 0, 0, 9);
  Close(old);
  SockRecord open = Client(2, b, 50, 5);
  backend_->SetLive(open);
  EXPECT_EQ(Sent("app"), 150);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_EQ(Sent("app"), 150);  // the idle flow expired; the series keeps its bytes
  EXPECT_EQ(Sent("app"), 150);
  Close(open);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  Scrape();
  EXPECT_EQ(Sent("app"), -1);  // every flow idle: the series ended, whole
  Close(Client(3, b, 7, 0));
  EXPECT_EQ(Sent("app"), 7);  // a new life, from what is new
  // Expired by one frame, and a new flow with its key before the next.
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  Scrape();
  Close(Client(4, b, 5, 0));
  EXPECT_EQ(Sent("app"), 5);
}

// NETWORK_TRAFFIC: the scraper's own connections (one per scrape, to one
// port) once made this series fall on every scrape as the old ones expired.
TEST_F(SessionTest, TrafficSeriesNeverFallAsOldConnectionsExpire) {
  StartSession(absl::Seconds(1));
  const ProcessKey a{7, 100};
  io_->Process(a, "svcmap-peer connect --name app");
  double last = 0;
  for (uint64_t i = 1; i <= 6; ++i) {
    Close(Client(i, a, 100, 0));
    if (i % 2 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(400));
    double v = -1;
    for (const auto& [k, x] : Scrape())
      if (k.rfind("svcmap_traffic_bytes_total{", 0) == 0) v = x;
    EXPECT_GE(v, last);
    last = v;
  }
  EXPECT_EQ(last, 600);
}

TEST_F(SessionTest, TablesShrinkBackToWhatIsLive) {
  StartSession(absl::Seconds(1));
  for (uint32_t pid = 100; pid < 300; ++pid) {
    const ProcessKey p{pid, 100};
    io_->Process(p, "svcmap-peer connect --name job");
    Close(Client(pid, p, 10, 1, "10.0.0.2", static_cast<uint16_t>(pid)));
    io_->Kill(p);
  }
  Settle();
  std::shared_ptr<const Frame> f = session_->FrameAfter(absl::Now());
  std::map<std::string, double> tables;
  for (const auto& fam : f->metrics().families)
    if (fam.name == "svcmap_table_entries")
      for (const auto& m : fam.metric) tables[m.label[0].value] = m.gauge.value;
  EXPECT_EQ(tables["processes"], 0);
  EXPECT_EQ(tables["live_sockets"], 0);
  EXPECT_EQ(tables["flows"], 1);  // the service's, its processes folded in
  EXPECT_EQ(Sent("job"), 2000);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  Settle();
  f = session_->FrameAfter(absl::Now());
  for (const auto& fam : f->metrics().families)
    if (fam.name == "svcmap_table_entries")
      for (const auto& m : fam.metric) tables[m.label[0].value] = m.gauge.value;
  EXPECT_EQ(tables["flows"], 0);
  EXPECT_EQ(tables["traffic_series"], 0);
  EXPECT_EQ(tables["connection_series"], 0);
}

// The drain never waits on I/O: with every /proc read and conntrack
// query hung, thousands of events of hundreds of new processes, half of
// them to a destination whose NAT answer is not known yet, are taken at
// once; when the node answers again, every byte is there under its name.
TEST_F(SessionTest, TheDrainNeverWaitsOnAProcessReadOrANatLookup) {
  StartSession();
  io_->NatUnknown(443);
  io_->Close();
  const ProcessKey first{50, 100};
  io_->Process(first, "svcmap-peer connect --name hung");
  // On a thread of its own, as the drain's: if it waits, the test fails
  // when the gate opens, rather than hanging.
  bool asked = false;
  auto drained = std::async(std::launch::async, [&] {
    Close(Client(1, first, 7, 1));
    asked = io_->AwaitWaiter(std::chrono::seconds(5));  // the worker, hung
    for (uint32_t pid = 100; pid < 400; ++pid) {
      const ProcessKey p{pid, 100};
      io_->Process(p, "svcmap-peer connect --name hung");
      for (uint64_t i = 0; i < 10; ++i) {
        SockRecord s = Client(pid * 10 + i, p, 10, 1, "10.0.0.2", static_cast<uint16_t>(i));
        if (i % 2) s.remote_port = 443;
        Close(s);
      }
    }
  });
  EXPECT_EQ(drained.wait_for(std::chrono::seconds(10)), std::future_status::ready)
      << "the drain waited on a hung /proc read or NAT lookup";
  io_->Open();
  drained.wait();
  EXPECT_TRUE(asked) << "the worker never asked the node anything";
  Settle();
  double sent = 0;
  for (const auto& [k, v] : Scrape())
    if (k.rfind("svcmap_connection_sent_bytes_total{", 0) == 0 &&
        k.find("src_service_name=hung,") != std::string::npos)
      sent += v;
  EXPECT_EQ(sent, 7 + 300 * 10 * 10);
}

// What /healthz reads comes from the drain thread itself: ready once a
// frame is out, unhealthy when the drain stalls or stops, healthy again
// when it comes back.
TEST_F(SessionTest, HealthFollowsTheDrainThread) {
  StartSession();
  const absl::Duration stall = absl::Seconds(10);
  ASSERT_NE(session_->FrameAfter(absl::Now()), nullptr);
  EXPECT_TRUE(session_->Health().ready);
  EXPECT_EQ(app::Unhealthy(session_->Health(), std::nullopt, stall, absl::Now()),
            std::vector<std::string>{});
  backend_->SetProgress({true, absl::Now() - absl::Seconds(30)});
  std::vector<std::string> bad = app::Unhealthy(session_->Health(), std::nullopt, stall, absl::Now());
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_EQ(bad[0].rfind("events not drained for 3", 0), 0u) << bad[0];
  backend_->SetProgress({false, absl::Now()});
  bad = app::Unhealthy(session_->Health(), std::nullopt, stall, absl::Now());
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_EQ(bad[0], "event drain thread stopped");
  backend_->SetProgress({true, absl::Now()});
  EXPECT_EQ(app::Unhealthy(session_->Health(), std::nullopt, stall, absl::Now()),
            std::vector<std::string>{});
}

TEST(CompletenessTest, OpensWhileWatchedAgainstOpensSeenPerNamespace) {
  absl::flat_hash_map<uint32_t, scan::TcpOpens> before = {{1, {100, 50}}, {2, {7, 7}},
                                                         {3, {900, 900}}};
  absl::flat_hash_map<uint32_t, scan::TcpOpens> after = {
      {1, {130, 60}},  // 30 connects, 10 accepts
      {2, {9, 7}},     // 2 connects
      {3, {5, 1}},     // the inode of a new namespace: from zero
      {4, {3, 0}}};    // created while watched
  absl::flat_hash_map<uint32_t, uint64_t> seen = {{1, 40}, {2, 1}, {4, 3}};
  exporter::Completeness all = CompletenessOf(before, after, seen, std::nullopt);
  EXPECT_TRUE(all.known);
  EXPECT_EQ(all.active_opens, 30u + 2 + 5 + 3);
  EXPECT_EQ(all.passive_opens, 10u + 0 + 1 + 0);
  EXPECT_EQ(all.seen, 44u);
  exporter::Completeness one = CompletenessOf(before, after, seen, 2);
  EXPECT_TRUE(one.known);
  EXPECT_EQ(one.active_opens, 2u);
  EXPECT_EQ(one.passive_opens, 0u);
  EXPECT_EQ(one.seen, 1u);
  EXPECT_FALSE(CompletenessOf(before, {}, seen, std::nullopt).known) << "counters unreadable";
  EXPECT_FALSE(CompletenessOf(before, after, seen, 9).known) << "a namespace not there";
}

TEST_F(SessionTest, RequestsThatArriveTogetherShareAFrame) {
  StartSession();
  std::vector<std::thread> readers;
  std::vector<std::shared_ptr<const Frame>> got(20);
  const absl::Time t = absl::Now();
  for (size_t i = 0; i < got.size(); ++i)
    readers.emplace_back([&, i] { got[i] = session_->FrameAfter(t); });
  for (std::thread& r : readers) r.join();
  std::set<const Frame*> distinct;
  for (const auto& f : got) {
    ASSERT_NE(f, nullptr);
    EXPECT_GE(f->taken_at(), t);
    distinct.insert(f.get());
  }
  EXPECT_LE(distinct.size(), 2u);
}

}  // namespace
}  // namespace svcmap::node
