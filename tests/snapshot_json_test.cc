#include "svcmap/export/snapshot_json.h"

#include "gtest/gtest.h"

namespace svcmap::exporter {
namespace {

TEST(ClockTest, Rfc3339InUtcWithMillis) {
  Clock c{1'700'000'000'000'000'000LL};
  EXPECT_EQ(c.Rfc3339(1'234'000'000), "2023-11-14T22:13:21.234Z");
  EXPECT_EQ(c.Rfc3339(0), "");
}

TEST(SnapshotJsonTest, UsesTheDataModelFieldNames) {
  flow::ServiceGraph g;
  flow::ServiceRow s;
  s.name = "mysqld";
  s.instance_id = "mysqld@10.0.0.2";
  s.pids = {42, 43};
  s.listen_ports = {3306, 33060};
  s.exe = "/usr/sbin/mysqld";
  flow::AcceptedRow a;
  a.pid = 42;
  a.local_ip = flow::IpAddr::V4(10, 0, 0, 2);
  a.local_port = 3306;
  a.peer_ip = flow::IpAddr::V4(10, 0, 0, 1);
  a.stats.bytes_sent = 5;
  a.stats.bytes_received = 7;
  a.stats.connections = 1;
  s.accepted.push_back(a);
  g.services.push_back(s);
  flow::ConnectionRow c;
  c.src_instance_id = "app@10.0.0.1";
  c.src_service_name = "app";
  c.src_pid = 7;
  c.src_ip = flow::IpAddr::V4(10, 0, 0, 1);
  c.dst_ip = flow::IpAddr::V4(10, 0, 0, 2);
  c.dst_port = 3306;
  c.stats.bytes_sent = 100;
  c.stats.bytes_received = 20;
  c.stats.connections = 3;
  g.connections.push_back(c);
  g.traffic.push_back({flow::IpAddr::V4(10, 0, 0, 1), 40000, flow::IpAddr::V4(10, 0, 0, 2),
                       3306, 100, 20, flow::Role::kClient, 7, 0});

  InstanceInfo inst{"host-a", "10.0.0.2", "/run/netns/b", 4026532000u, "tracepoint", 5.0, ""};
  Completeness seen{true, 900, 100, 990};
  nlohmann::ordered_json doc =
      SnapshotJson(inst, g, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, seen, Clock{});

  EXPECT_EQ(doc["instance"]["hostname"], "host-a");
  EXPECT_EQ(doc["instance"]["instance_ip"], "10.0.0.2");
  EXPECT_EQ(doc["instance"]["netns"], "/run/netns/b");
  EXPECT_EQ(doc["instance"]["backend"], "tracepoint");
  EXPECT_EQ(doc["instance"]["duration_s"], 5.0);
  EXPECT_EQ(doc["instance"]["health_unseen"], nlohmann::ordered_json::array());
  inst.backend = "procfs";
  EXPECT_EQ(SnapshotJson(inst, g, {}, seen, Clock{})["instance"]["health_unseen"],
            nlohmann::ordered_json::array({"attempts_refused", "attempts_timed_out",
                                           "resets_received", "resets_sent",
                                           "connect_latency_us"}));
  inst.backend = "tracepoint";

  const auto& svc = doc["services"][0];
  for (const char* f : {"instance_id", "instance_ip", "name", "listen_ports", "pid"})
    EXPECT_TRUE(svc.contains(f)) << f;
  EXPECT_EQ(svc["pid"], 42);
  EXPECT_EQ(svc["listen_ports"], nlohmann::ordered_json::array({3306, 33060}));
  EXPECT_EQ(svc["accepted"][0]["peer_ip"], "10.0.0.1");
  EXPECT_EQ(svc["accepted"][0]["bytes_received"], 7);

  const auto& conn = doc["connections"][0];
  for (const char* f : {"src_instance_id", "src_service_name", "src_pid", "src_ip", "dst_ip",
                        "dst_port", "bytes_sent", "bytes_received", "connections", "time"})
    EXPECT_TRUE(conn.contains(f)) << f;
  EXPECT_EQ(conn["bytes"], 120);
  EXPECT_EQ(conn["dst_port"], 3306);

  const auto& t = doc["traffic"][0];
  for (const char* f : {"src_ip", "src_port", "dst_ip", "dst_port", "bytes"})
    EXPECT_TRUE(t.contains(f)) << f;
  EXPECT_EQ(t["bytes"], 120);
  EXPECT_EQ(t["observed_as"], "client");

  EXPECT_EQ(doc["stats"]["ringbuf_drops"], 1);
  EXPECT_EQ(doc["stats"]["traffic_overflow"], 5);
  EXPECT_EQ(doc["stats"]["unowned_closes"], 6);
  EXPECT_EQ(doc["stats"]["seeded_sockets"], 7);
  EXPECT_EQ(doc["stats"]["seed_unowned"], 9);
  EXPECT_EQ(doc["stats"]["seed_rescued"], 10);
  EXPECT_EQ(doc["stats"]["scan_errors"], 12);
  EXPECT_EQ(doc["completeness"]["opens"], 1000);
  EXPECT_EQ(doc["completeness"]["seen"], 990);
  EXPECT_EQ(doc["completeness"]["missed"], 10);
  EXPECT_DOUBLE_EQ(doc["completeness"]["ratio"].get<double>(), 0.99);
}

TEST(SnapshotJsonTest, TheStreamedTextIsTheSameDocument) {
  flow::ServiceGraph g;
  for (uint16_t port : {40000, 40001, 40002})
    g.traffic.push_back({flow::IpAddr::V4(10, 0, 0, 1), port, *flow::IpAddr::Parse("fd00::2"),
                         3306, 100, 20, flow::Role::kServer, 7, 0});
  InstanceInfo inst{"host\"a", "10.0.0.2", "all", 0, "procfs", 1.5, ""};
  Completeness seen{true, 1, 2, 3};
  nlohmann::ordered_json dom = SnapshotJson(inst, g, {}, seen, Clock{});
  for (int indent : {-1, 2}) {
    std::string text = SnapshotText(inst, g, {}, seen, Clock{}, indent);
    nlohmann::json parsed = nlohmann::json::parse(text, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << text;
    EXPECT_EQ(parsed, nlohmann::json::parse(dom.dump())) << text;
  }
  flow::ServiceGraph empty;
  EXPECT_EQ(nlohmann::json::parse(SnapshotText(inst, empty, {}, {}, Clock{}, 2))["traffic"],
            nlohmann::json::array());
}

TEST(SnapshotJsonTest, CompletenessNeverGoesNegativeAndIsNullWhenUnknown) {
  // Seen before the counters were read: more seen than opened.
  nlohmann::ordered_json doc = SnapshotJson({}, {}, {}, Completeness{true, 3, 0, 5}, Clock{});
  EXPECT_EQ(doc["completeness"]["missed"], 0);
  EXPECT_DOUBLE_EQ(doc["completeness"]["ratio"].get<double>(), 1.0);
  EXPECT_TRUE(SnapshotJson({}, {}, {}, Completeness{}, Clock{})["completeness"].is_null());
}

TEST(SnapshotJsonTest, EmptyGraphStillHasEveryArray) {
  nlohmann::ordered_json doc = SnapshotJson({}, {}, {}, {}, Clock{});
  EXPECT_TRUE(doc["services"].is_array());
  EXPECT_TRUE(doc["connections"].is_array());
  EXPECT_TRUE(doc["traffic"].is_array());
}

}  // namespace
}  // namespace svcmap::exporter
