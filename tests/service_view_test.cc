#include "svcmap/flow/service_view.h"

#include "gtest/gtest.h"
#include "svcmap/flow/collector.h"

namespace svcmap::flow {
namespace {

SockEvent Ev(EventType type, uint32_t pid, const char* comm, Role role, const char* local,
             uint16_t lport, const char* remote, uint16_t rport, uint64_t sent, uint64_t rcvd,
             uint32_t netns = 1) {
  static uint64_t next_id = 1;
  SockEvent ev;
  ev.type = type;
  ev.ts_ns = 1000;
  SockRecord& s = ev.sock;
  s.sock_id = next_id++;
  s.open_ns = 500;
  s.netns = netns;
  s.role = role;
  s.owned = s.established = true;
  s.owner.process = {pid, 1};
  s.owner.comm = comm;
  s.local_ip = *IpAddr::Parse(local);
  s.local_port = lport;
  s.remote_ip = *IpAddr::Parse(remote);
  s.remote_port = rport;
  s.bytes_sent = sent;
  s.bytes_received = rcvd;
  return ev;
}

// What the session's worker does: every process asked for, described (by
// `name`, or its comm).
void NameAll(Collector& c, const std::function<std::string(const Owner&)>& name = nullptr) {
  for (const auto& [o, parent] : c.TakeNamingRequests())
    c.Describe(o.process, ProcessInfo{o.comm, "/usr/bin/" + o.comm, name ? name(o) : o.comm, "exe", "", ""},
               1000);
}

ServiceViewOptions At(std::optional<uint32_t> netns, std::string ip) {
  ServiceViewOptions o;
  o.netns = netns;
  o.instance_ip = std::move(ip);
  return o;
}

ServiceGraph GraphOf(Collector& c, ServiceViewOptions options = At(std::nullopt, "10.0.0.3")) {
  return c.Graph(options, true);
}

TEST(ServiceViewTest, InstanceIdRule) {
  EXPECT_EQ(InstanceId("mysqld", "10.0.0.2"), "mysqld@10.0.0.2");
}

TEST(ServiceViewTest, ProcessesWithOneNameAreOneService) {
  Collector c;
  c.OnEvent(Ev(EventType::kListen, 10, "nginx", Role::kListener, "0.0.0.0", 80, "0.0.0.0", 0, 0, 0));
  c.OnEvent(Ev(EventType::kClose, 11, "nginx", Role::kServer, "10.0.0.3", 80, "10.0.0.9", 5000, 700, 70));
  c.OnEvent(Ev(EventType::kClose, 12, "nginx", Role::kServer, "10.0.0.3", 80, "10.0.0.9", 5001, 300, 30));
  c.OnEvent(Ev(EventType::kClose, 11, "nginx", Role::kClient, "10.0.0.3", 41000, "10.0.0.1", 8080, 70, 700));
  NameAll(c);
  ServiceGraph g = GraphOf(c);

  ASSERT_EQ(g.services.size(), 1u);
  const ServiceRow& nginx = g.services[0];
  EXPECT_EQ(nginx.name, "nginx");
  EXPECT_EQ(nginx.instance_id, "nginx@10.0.0.3");
  EXPECT_EQ(nginx.pids, (std::vector<uint32_t>{10, 11, 12}));
  EXPECT_EQ(nginx.listen_ports, (std::set<uint16_t>{80}));
  // Accepted flows stay per process, so each worker's share is visible.
  ASSERT_EQ(nginx.accepted.size(), 2u);
  EXPECT_EQ(nginx.accepted[0].pid, 11u);
  EXPECT_EQ(nginx.accepted[0].stats.bytes_sent, 700u);
  EXPECT_EQ(nginx.accepted[1].pid, 12u);

  ASSERT_EQ(g.connections.size(), 1u);
  EXPECT_EQ(g.connections[0].src_service_name, "nginx");
  EXPECT_EQ(g.connections[0].src_instance_id, "nginx@10.0.0.3");
  EXPECT_EQ(g.connections[0].dst_port, 8080);
  EXPECT_EQ(g.connections[0].stats.bytes_received, 700u);
  EXPECT_EQ(g.traffic.size(), 3u);
  EXPECT_EQ(g.traffic_series.size(), 2u);  // into nginx, and out of it
}

TEST(ServiceViewTest, NetnsFilterKeepsOnlyThatNamespace) {
  Collector c;
  c.OnEvent(Ev(EventType::kListen, 10, "redis", Role::kListener, "0.0.0.0", 6379, "0.0.0.0", 0, 0, 0, 7));
  c.OnEvent(Ev(EventType::kClose, 20, "app", Role::kClient, "10.0.0.1", 40000, "10.0.0.2", 6379, 5, 6, 8));
  NameAll(c);
  ServiceGraph in7 = GraphOf(c, At(7u, "10.0.0.2"));
  ASSERT_EQ(in7.services.size(), 1u);
  EXPECT_EQ(in7.services[0].name, "redis");
  EXPECT_TRUE(in7.connections.empty());
  ServiceGraph in8 = GraphOf(c, At(8u, "10.0.0.1"));
  ASSERT_EQ(in8.services.size(), 1u);
  EXPECT_EQ(in8.services[0].name, "app");
  EXPECT_EQ(in8.connections.size(), 1u);
}

TEST(ServiceViewTest, ANamelessProcessGetsAPidName) {
  Collector c;
  c.OnEvent(Ev(EventType::kClose, 33, "", Role::kClient, "10.0.0.1", 40000, "10.0.0.2", 80, 1, 1));
  for (const auto& [o, parent] : c.TakeNamingRequests()) c.Describe(o.process, ProcessInfo{}, 1000);
  ServiceGraph g = GraphOf(c, At(std::nullopt, "x"));
  ASSERT_EQ(g.services.size(), 1u);
  EXPECT_EQ(g.services[0].name, "pid-33");
}

TEST(CollectorTest, LiveListenersAndSocketsJoinTheView) {
  Collector c;
  SockRecord listener = Ev(EventType::kListen, 5, "pg", Role::kListener, "0.0.0.0", 5432, "0.0.0.0", 0, 0, 0).sock;
  SockRecord conn = Ev(EventType::kClose, 5, "pg", Role::kUnknown, "10.0.0.2", 5432, "10.0.0.1", 40000, 9, 8).sock;
  std::vector<SockRecord> need_nat;
  c.BeginLive(2000);
  c.AddLive(conn, need_nat);  // before its listener in the read: resolved at the end
  c.AddLive(listener, need_nat);
  c.FinishLive(need_nat);
  c.EndLive(true);
  EXPECT_TRUE(need_nat.empty());
  for (const auto& [o, parent] : c.TakeNamingRequests())
    c.Describe(o.process, ProcessInfo{o.comm, "/usr/sbin/x5", "postgres", "systemd", "", ""}, 2000);
  FlowView v = c.Flows(false);
  ASSERT_EQ(v.flows.size(), 1u);
  EXPECT_EQ(v.flows.begin()->first.role, Role::kServer);  // via the listen port
  EXPECT_EQ(c.processes().Find({5, 1})->exe, "/usr/sbin/x5");
  // The describer's name, not the comm, names the service.
  ServiceGraph g = GraphOf(c, At(std::nullopt, "x"));
  ASSERT_EQ(g.services.size(), 1u);
  EXPECT_EQ(g.services[0].name, "postgres");
  EXPECT_EQ(g.services[0].name_source, "systemd");
  EXPECT_EQ(c.processes().Find({5, 1})->comm, "pg");
}

TEST(CollectorTest, AProcessIsLeftOutUntilNamedAndNamedByCommWhenTheDescriberIsLate) {
  CollectorOptions o;
  o.naming_deadline_ns = 1000;
  Collector c(o);
  c.OnEvent(Ev(EventType::kClose, 7, "curl", Role::kClient, "10.0.0.1", 40000, "10.0.0.2", 80, 5, 6));
  EXPECT_EQ(c.pending_names(), 1u);
  EXPECT_TRUE(GraphOf(c).connections.empty());
  c.Housekeep(1500, 0, true);  // seen at 1000: not overdue yet
  EXPECT_TRUE(GraphOf(c).connections.empty());
  c.Housekeep(2500, 0, true);
  ASSERT_EQ(GraphOf(c).connections.size(), 1u);
  EXPECT_EQ(GraphOf(c).connections[0].src_service_name, "curl");
  EXPECT_EQ(c.Counts().named_overdue, 1u);
}

TEST(CollectorTest, AClosedListenerNoLongerClaimsItsPort) {
  Collector c;
  SockEvent listen = Ev(EventType::kListen, 10, "web", Role::kListener, "0.0.0.0", 8080, "0.0.0.0", 0, 0, 0);
  c.OnEvent(listen);
  NameAll(c);
  ASSERT_EQ(GraphOf(c).services.size(), 1u);
  EXPECT_EQ(GraphOf(c).services[0].listen_ports.size(), 1u);
  SockEvent close = listen;
  close.type = EventType::kClose;
  c.OnEvent(close);
  EXPECT_EQ(c.listeners().size(), 0u);
  EXPECT_FALSE(c.listeners().IsListenPort(1, 8080));
  EXPECT_TRUE(GraphOf(c).services.empty());
}

TEST(CollectorTest, AListenerWhoseCloseWasLostGoesWithTheNextCompleteRead) {
  Collector c;
  c.OnEvent(Ev(EventType::kListen, 10, "web", Role::kListener, "0.0.0.0", 8080, "0.0.0.0", 0, 0, 0));
  std::vector<SockRecord> need_nat;
  c.BeginLive(5000);
  c.EndLive(/*complete=*/false);
  EXPECT_EQ(c.listeners().size(), 1u);
  c.BeginLive(6000);
  c.EndLive(true);
  EXPECT_EQ(c.listeners().size(), 0u);
  EXPECT_EQ(c.Counts().lost_listeners, 1u);
}

TEST(CollectorTest, AnExitedProcessFoldsIntoItsServiceAndIsForgotten) {
  Collector c;
  c.OnEvent(Ev(EventType::kClose, 7, "job", Role::kClient, "10.0.0.1", 40000, "10.0.0.2", 80, 5, 6));
  NameAll(c, [](const Owner&) { return "batch"; });
  std::vector<ProcessKey> check = c.ExitCandidates(2000);
  ASSERT_EQ(check.size(), 1u);
  EXPECT_TRUE(c.ExitCandidates(2001).empty());  // checked just now
  c.MarkExited(check[0]);
  c.Housekeep(3000, 0, true);
  EXPECT_EQ(c.Sizes().processes, 0u);
  ServiceGraph g = GraphOf(c);
  ASSERT_EQ(g.connections.size(), 1u);
  EXPECT_EQ(g.connections[0].src_service_name, "batch");
  EXPECT_EQ(g.connections[0].src_pid, 0u);
  EXPECT_EQ(g.connections[0].stats.bytes_sent, 5u);
  // A late close of one of its sockets keeps its name (a tombstone), and
  // is folded in again at the next pass.
  c.OnEvent(Ev(EventType::kClose, 7, "job", Role::kClient, "10.0.0.1", 40001, "10.0.0.2", 80, 1, 1));
  EXPECT_EQ(c.pending_names(), 0u);
  for (const ProcessKey& p : c.ExitCandidates(5000)) c.MarkExited(p);
  c.Housekeep(5000, 0, true);
  g = GraphOf(c);
  ASSERT_EQ(g.connections.size(), 1u);
  EXPECT_EQ(g.connections[0].src_service_name, "batch");
  EXPECT_EQ(g.connections[0].stats.bytes_sent, 6u);
}

// A short-lived child of a load generator, a pre-fork server's worker: gone
// before its /proc can be read, it still runs its parent's program.
TEST(CollectorTest, AForkedChildIsNamedAsItsParentUntilItExecs) {
  Collector c;
  c.OnEvent(Ev(EventType::kClose, 7, "loadgen", Role::kClient, "10.0.0.1", 40000, "10.0.0.2", 80, 5, 6));
  NameAll(c, [](const Owner&) { return "checkout"; });
  auto fork = [&](uint32_t parent, uint32_t child, const char* comm) {
    SockEvent f;
    f.type = EventType::kFork;
    f.parent = {parent, 1};
    f.sock.owner.process = {child, 1};
    f.sock.owner.comm = comm;
    c.OnEvent(f);
  };
  fork(7, 8, "loadgen");
  fork(8, 9, "loadgen");  // a grandchild, its parent never on a socket
  fork(7, 10, "loadgen");
  c.OnEvent(Ev(EventType::kClose, 8, "loadgen", Role::kClient, "10.0.0.1", 40001, "10.0.0.2", 80, 1, 1));
  c.OnEvent(Ev(EventType::kClose, 9, "loadgen", Role::kClient, "10.0.0.1", 40002, "10.0.0.2", 80, 1, 1));
  // Exec'd since (another comm): described on its own.
  c.OnEvent(Ev(EventType::kClose, 10, "curl", Role::kClient, "10.0.0.1", 40003, "10.0.0.2", 80, 1, 1));
  EXPECT_EQ(c.processes().Find({8, 1})->name, "checkout");
  EXPECT_EQ(c.processes().Find({9, 1})->name, "checkout");
  EXPECT_EQ(c.processes().Find({10, 1}), nullptr);  // pending
  std::vector<ProcessTable::Request> ask = c.TakeNamingRequests();
  ASSERT_EQ(ask.size(), 1u);
  EXPECT_EQ(ask[0].owner.process.pid, 10u);
  EXPECT_FALSE(ask[0].forked_from.has_value());  // not the parent's program
  EXPECT_EQ(c.Sizes().forks, 3u);
}

TEST(CollectorTest, AChildWhoseParentIsNotNamedYetIsReadThroughItsParent) {
  Collector c;
  SockEvent f;
  f.type = EventType::kFork;
  f.parent = {7, 1};
  f.sock.owner.process = {8, 1};
  f.sock.owner.comm = "worker";
  c.OnEvent(Ev(EventType::kConnect, 7, "worker", Role::kClient, "10.0.0.1", 40000, "10.0.0.2", 80, 0, 0));
  c.OnEvent(f);
  c.OnEvent(Ev(EventType::kClose, 8, "worker", Role::kClient, "10.0.0.1", 40001, "10.0.0.2", 80, 1, 1));
  std::vector<ProcessTable::Request> ask = c.TakeNamingRequests();
  ASSERT_EQ(ask.size(), 2u);
  ASSERT_TRUE(ask[1].forked_from.has_value());
  EXPECT_EQ(ask[1].forked_from->pid, 7u);
}

TEST(CollectorTest, AProcessNothingRefersToGoesAfterItsTtl) {
  CollectorOptions o;
  o.unreferenced_ttl_ns = 10'000;
  Collector c(o);
  c.OnEvent(Ev(EventType::kConnect, 7, "idle", Role::kClient, "10.0.0.1", 40000, "10.0.0.2", 80, 0, 0));
  NameAll(c);
  c.Housekeep(5000, 0, true);
  EXPECT_EQ(c.Sizes().processes, 1u);
  c.Housekeep(20'000, 0, true);
  EXPECT_EQ(c.Sizes().processes, 0u);
}

TEST(CollectorTest, ACloseWhoseDestinationIsNotKnownWaitsForItsNatLookup) {
  Collector c;
  c.set_nat([](const SockRecord& s) {
    return s.remote_port == 80 ? NatAnswer::Plain() : NatAnswer::Unknown();
  });
  c.OnEvent(Ev(EventType::kClose, 7, "app", Role::kClient, "10.0.0.1", 40000, "10.96.0.10", 443, 5, 6));
  c.OnEvent(Ev(EventType::kClose, 7, "app", Role::kClient, "10.0.0.1", 40001, "10.0.0.2", 80, 1, 1));
  NameAll(c);
  EXPECT_EQ(GraphOf(c).connections.size(), 1u);  // the plain one
  std::vector<SockRecord> ask = c.TakeNatRequests();
  ASSERT_EQ(ask.size(), 1u);
  EXPECT_TRUE(c.TakeNatRequests().empty());  // asked once
  c.ResolveClose(ask[0].key(), NatAnswer::Translated(IpAddr::V4(10, 0, 0, 5), 8443));
  ServiceGraph g = GraphOf(c);
  ASSERT_EQ(g.connections.size(), 2u);
  bool found = false;
  for (const ConnectionRow& r : g.connections)
    if (r.dst_port == 443) {
      found = true;
      EXPECT_EQ(r.actual_dst_ip, IpAddr::V4(10, 0, 0, 5));
      EXPECT_EQ(r.actual_dst_port, 8443);
      EXPECT_EQ(r.stats.bytes_sent, 5u);
    }
  EXPECT_TRUE(found);
}

// The agent's churn test once counted a short-lived child's one connection
// under "pid-N": the child exited and was retired while its close still
// waited for the NAT lookup, so the close landed on a process nobody knew.
TEST(CollectorTest, AProcessWhoseCloseWaitsForItsNatLookupIsNotRetiredMeanwhile) {
  Collector c;
  c.set_nat([](const SockRecord&) { return NatAnswer::Unknown(); });
  c.OnEvent(Ev(EventType::kClose, 7, "job", Role::kClient, "10.0.0.1", 40000, "10.0.0.2", 80, 5, 6));
  NameAll(c, [](const Owner&) { return "batch"; });
  for (const ProcessKey& p : c.ExitCandidates(2000)) c.MarkExited(p);
  c.Housekeep(3000, 0, true);
  c.Housekeep(20'000'000'000ull, 0, true);  // past any unreferenced TTL too
  EXPECT_EQ(c.Sizes().processes, 1u);
  std::vector<SockRecord> ask = c.TakeNatRequests();
  ASSERT_EQ(ask.size(), 1u);
  c.ResolveClose(ask[0].key(), NatAnswer::Plain());
  ServiceGraph g = GraphOf(c);
  ASSERT_EQ(g.connections.size(), 1u);
  EXPECT_EQ(g.connections[0].src_service_name, "batch");
  EXPECT_EQ(g.connections[0].stats.bytes_sent, 5u);
  // Answered: now it goes, and its service keeps the bytes.
  c.Housekeep(20'000'000'001ull, 0, true);
  EXPECT_EQ(c.Sizes().processes, 0u);
  g = GraphOf(c);
  ASSERT_EQ(g.connections.size(), 1u);
  EXPECT_EQ(g.connections[0].src_service_name, "batch");
  EXPECT_EQ(g.connections[0].stats.bytes_sent, 5u);
}

}  // namespace
}  // namespace svcmap::flow
