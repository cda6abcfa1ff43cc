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

TEST(ServiceViewTest, InstanceIdRule) {
  EXPECT_EQ(InstanceId("mysqld", "10.0.0.2"), "mysqld@10.0.0.2");
}

TEST(ServiceViewTest, ProcessesWithOneNameAreOneService) {
  Collector c;
  c.OnEvent(Ev(EventType::kListen, 10, "nginx", Role::kListener, "0.0.0.0", 80, "0.0.0.0", 0, 0, 0));
  c.OnEvent(Ev(EventType::kClose, 11, "nginx", Role::kServer, "10.0.0.3", 80, "10.0.0.9", 5000, 700, 70));
  c.OnEvent(Ev(EventType::kClose, 12, "nginx", Role::kServer, "10.0.0.3", 80, "10.0.0.9", 5001, 300, 30));
  c.OnEvent(Ev(EventType::kClose, 11, "nginx", Role::kClient, "10.0.0.3", 41000, "10.0.0.1", 8080, 70, 700));
  Collector::Result r = c.View({}, 2000);
  ServiceGraph g = BuildServiceView(r.flows, r.listeners, c.processes(), {std::nullopt, "10.0.0.3"});

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
}

TEST(ServiceViewTest, NetnsFilterKeepsOnlyThatNamespace) {
  Collector c;
  c.OnEvent(Ev(EventType::kListen, 10, "redis", Role::kListener, "0.0.0.0", 6379, "0.0.0.0", 0, 0, 0, 7));
  c.OnEvent(Ev(EventType::kClose, 20, "app", Role::kClient, "10.0.0.1", 40000, "10.0.0.2", 6379, 5, 6, 8));
  Collector::Result r = c.View({}, 2000);
  ServiceGraph in7 = BuildServiceView(r.flows, r.listeners, c.processes(), {7u, "10.0.0.2"});
  ASSERT_EQ(in7.services.size(), 1u);
  EXPECT_EQ(in7.services[0].name, "redis");
  EXPECT_TRUE(in7.connections.empty());
  ServiceGraph in8 = BuildServiceView(r.flows, r.listeners, c.processes(), {8u, "10.0.0.1"});
  ASSERT_EQ(in8.services.size(), 1u);
  EXPECT_EQ(in8.services[0].name, "app");
  EXPECT_EQ(in8.connections.size(), 1u);
}

TEST(ServiceViewTest, UnknownProcessGetsAPidName) {
  Collector c;
  SockEvent ev = Ev(EventType::kClose, 33, "", Role::kClient, "10.0.0.1", 40000, "10.0.0.2", 80, 1, 1);
  c.OnEvent(ev);
  Collector::Result r = c.View({}, 2000);
  ServiceGraph g = BuildServiceView(r.flows, r.listeners, c.processes(), {std::nullopt, "x"});
  ASSERT_EQ(g.services.size(), 1u);
  EXPECT_EQ(g.services[0].name, "pid-33");
}

TEST(CollectorTest, LiveListenersAndSocketsJoinTheView) {
  Collector c([](const Owner& o) {
    return ProcessInfo{"", "/usr/sbin/x" + std::to_string(o.process.pid), "postgres", "systemd"};
  });
  SockRecord listener = Ev(EventType::kListen, 5, "pg", Role::kListener, "0.0.0.0", 5432, "0.0.0.0", 0, 0, 0).sock;
  SockRecord conn = Ev(EventType::kClose, 5, "pg", Role::kUnknown, "10.0.0.2", 5432, "10.0.0.1", 40000, 9, 8).sock;
  Collector::Result r = c.View(std::vector<SockRecord>{listener, conn}, 2000);
  ASSERT_EQ(r.listeners.size(), 1u);
  ASSERT_EQ(r.flows.flows.size(), 1u);
  EXPECT_EQ(r.flows.flows.begin()->first.role, Role::kServer);  // via the listen port
  EXPECT_EQ(c.processes().Find({5, 1})->exe, "/usr/sbin/x5");
  // The describer's name, not the comm, names the service.
  ServiceGraph g = BuildServiceView(r.flows, r.listeners, c.processes(), {std::nullopt, "x"});
  ASSERT_EQ(g.services.size(), 1u);
  EXPECT_EQ(g.services[0].name, "postgres");
  EXPECT_EQ(g.services[0].name_source, "systemd");
  EXPECT_EQ(c.processes().Find({5, 1})->comm, "pg");
}

}  // namespace
}  // namespace svcmap::flow
