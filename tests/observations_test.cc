// The graph handed straight to the topology model (top, /map) is what the
// same graph's snapshot document parses back into.
#include "svcmap/export/observations.h"

#include <map>
#include <tuple>

#include "gtest/gtest.h"
#include "svcmap/topology/sources.h"

namespace svcmap::exporter {
namespace {

flow::ServiceGraph Graph() {
  flow::ServiceGraph g;
  flow::ServiceRow db;
  db.name = "db";
  db.instance_id = "db@10.0.0.2";
  db.instance_ip = "10.0.0.2";
  db.pids = {40, 41};
  db.listen_ports = {5432, 6432};
  flow::AcceptedRow a;
  a.pid = 40;
  a.comm = "postgres";
  a.local_ip = flow::IpAddr::V4(10, 0, 0, 2);
  a.local_port = 5432;
  a.peer_ip = flow::IpAddr::V4(10, 0, 0, 1);
  a.stats.bytes_sent = 900;
  a.stats.bytes_received = 90;
  a.stats.connections = 3;
  a.stats.active = 1;
  db.accepted.push_back(a);
  a.pid = 0;  // exited workers, folded into the service
  db.accepted.push_back(a);
  g.services.push_back(db);
  flow::ServiceRow app;
  app.name = "app";
  app.instance_id = "app@10.0.0.9";
  app.instance_ip = "10.0.0.9";  // a pod's own address
  app.pids = {7};
  g.services.push_back(app);
  for (uint32_t pid : {7u, 0u}) {
    flow::ConnectionRow c;
    c.src_instance_id = "app@10.0.0.9";
    c.src_service_name = "app";
    c.src_pid = pid;
    c.src_comm = pid ? "app" : "";
    c.dst_ip = flow::IpAddr::V4(10, 96, 0, 1);
    c.dst_port = 5432;
    c.actual_dst_ip = flow::IpAddr::V4(10, 0, 0, 2);
    c.actual_dst_port = 5432;
    c.stats.bytes_sent = 100 + pid;
    c.stats.bytes_received = 1000;
    c.stats.connections = 2;
    c.stats.active = pid ? 1 : 0;
    // Health: every field different, so a field dropped or swapped shows.
    c.stats.health.refused = 3 + pid;
    c.stats.health.timed_out = 4;
    c.stats.health.error = 5;
    c.stats.failed = c.stats.health.refused + 4 + 5;
    c.stats.health.resets_received = 6;
    c.stats.health.resets_sent = 7;
    c.stats.health.retransmits = 8 + pid;
    c.stats.health.rtt.Add(1200);
    c.stats.health.rtt.Add(1800);
    c.stats.health.rtt_min_us = 900;
    c.stats.health.connect.Add(300 + pid);
    g.connections.push_back(c);
  }
  flow::ConnectionRow orphan;  // a caller with no service row: the node's address
  orphan.src_instance_id = "cron@10.0.0.1";
  orphan.src_service_name = "cron";
  orphan.src_pid = 99;
  orphan.dst_ip = flow::IpAddr::V4(1, 2, 3, 4);
  orphan.dst_port = 443;
  g.connections.push_back(orphan);
  for (uint16_t port : {40000, 40001})
    g.traffic.push_back({flow::IpAddr::V4(10, 0, 0, 1), port, flow::IpAddr::V4(10, 0, 0, 2), 5432,
                         400, 50, flow::Role::kServer, 40, 0});
  g.traffic_series.push_back(
      {flow::IpAddr::V4(10, 0, 0, 1), flow::IpAddr::V4(10, 0, 0, 2), 5432, 900, 1, 0, "x"});
  return g;
}

std::map<std::tuple<std::string, std::string, uint16_t>, uint64_t> Sums(
    const std::vector<topology::Traffic>& t) {
  std::map<std::tuple<std::string, std::string, uint16_t>, uint64_t> out;
  for (const topology::Traffic& r : t) out[{r.src_ip, r.dst_ip, r.dst_port}] += r.bytes;
  return out;
}

TEST(ObservationsTest, TheGraphStraightIsWhatItsSnapshotParsesBackInto) {
  InstanceInfo inst{"node-a", "10.0.0.1", "all", 0, "tracepoint", 1.5, "node-a"};
  flow::ServiceGraph g = Graph();
  topology::Observations direct = ToObservations(inst, g);
  absl::StatusOr<topology::Observations> parsed =
      topology::ParseSnapshot(SnapshotText(inst, g, {}, {}, Clock{}, -1), "self");
  ASSERT_TRUE(parsed.ok()) << parsed.status();

  // Not both empty: the first caller's health as the graph has it.
  ASSERT_FALSE(direct.connections.empty());
  EXPECT_EQ(direct.connections[0].health.refused, 10u);
  EXPECT_EQ(direct.connections[0].health.rtt_us(), 1500u);
  EXPECT_EQ(direct.connections[0].health.connect_us(), 307u);
  EXPECT_EQ(direct.connections[0].health.failed(), 19u);

  ASSERT_EQ(direct.instances.size(), parsed->instances.size());
  for (size_t i = 0; i < direct.instances.size(); ++i) {
    const topology::Instance &a = direct.instances[i], &b = parsed->instances[i];
    EXPECT_EQ(a.instance_id, b.instance_id);
    EXPECT_EQ(a.instance_ip, b.instance_ip);
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.machine, b.machine);
    EXPECT_EQ(a.pid, b.pid);
    EXPECT_EQ(a.listen_ports, b.listen_ports);
  }
  ASSERT_EQ(direct.connections.size(), parsed->connections.size());
  for (size_t i = 0; i < direct.connections.size(); ++i) {
    const topology::Connection &a = direct.connections[i], &b = parsed->connections[i];
    EXPECT_EQ(a.src_instance_id, b.src_instance_id);
    EXPECT_EQ(a.src_service_name, b.src_service_name);
    EXPECT_EQ(a.src_machine, b.src_machine);
    EXPECT_EQ(a.src_ip, b.src_ip) << i;
    EXPECT_EQ(a.dst_ip, b.dst_ip);
    EXPECT_EQ(a.dst_port, b.dst_port);
    EXPECT_EQ(a.actual_dst_ip, b.actual_dst_ip);
    EXPECT_EQ(a.actual_dst_port, b.actual_dst_port);
    EXPECT_EQ(a.bytes_sent, b.bytes_sent);
    EXPECT_EQ(a.bytes_received, b.bytes_received);
    EXPECT_EQ(a.connections, b.connections);
    EXPECT_EQ(a.active, b.active);
    const topology::Health &ha = a.health, &hb = b.health;
    EXPECT_EQ(std::tie(ha.refused, ha.timed_out, ha.error, ha.resets_received, ha.resets_sent,
                       ha.retransmits, ha.rtt_samples, ha.rtt_min_us, ha.connect_samples),
              std::tie(hb.refused, hb.timed_out, hb.error, hb.resets_received, hb.resets_sent,
                       hb.retransmits, hb.rtt_samples, hb.rtt_min_us, hb.connect_samples))
        << i;
    EXPECT_EQ(ha.rtt_us(), hb.rtt_us()) << i;
    EXPECT_EQ(ha.connect_us(), hb.connect_us()) << i;
  }
  ASSERT_EQ(direct.processes.size(), parsed->processes.size());
  for (size_t i = 0; i < direct.processes.size(); ++i) {
    const topology::Process &a = direct.processes[i], &b = parsed->processes[i];
    EXPECT_EQ(std::tie(a.machine, a.pid, a.comm, a.service, a.bytes_sent, a.bytes_received,
                       a.connections, a.active),
              std::tie(b.machine, b.pid, b.comm, b.service, b.bytes_sent, b.bytes_received,
                       b.connections, b.active));
  }
  // Rows per connection in the document, every connection together here:
  // what the join sums them into.
  EXPECT_EQ(Sums(direct.traffic), Sums(parsed->traffic));
}

}  // namespace
}  // namespace svcmap::exporter
