// The metrics families from a canned service graph, through the real text
// serializer.
#include "svcmap/export/metrics.h"

#include "gtest/gtest.h"
#include "svcmap/base/build_info.h"

namespace svcmap::exporter {
namespace {

flow::ServiceGraph Graph() {
  flow::ServiceGraph g;
  flow::ServiceRow s;
  s.name = "my\"odd\nname\\é";
  s.instance_id = s.name + "@10.0.0.2";
  s.pids = {42};
  s.listen_ports = {3306, 33060};
  g.services.push_back(s);
  for (uint32_t pid : {7u, 8u}) {  // two processes of one service, one destination
    flow::ConnectionRow c;
    c.src_instance_id = "app@10.0.0.1";
    c.src_service_name = "app";
    c.src_pid = pid;
    c.dst_ip = flow::IpAddr::V4(10, 0, 0, 2);
    c.dst_port = 3306;
    c.stats.bytes_sent = 1234567;
    c.stats.bytes_received = 89;
    c.stats.connections = 3;
    c.group = "app->10.0.0.2:3306";  // both processes' flows are one group
    g.connections.push_back(c);
  }
  for (uint16_t sport : {40000, 40001})
    g.traffic.push_back({flow::IpAddr::V4(10, 0, 0, 1), sport, flow::IpAddr::V4(10, 0, 0, 2), 3306,
                         100, 20, flow::Role::kClient, 7, 0});
  g.traffic_series.push_back(
      {flow::IpAddr::V4(10, 0, 0, 1), flow::IpAddr::V4(10, 0, 0, 2), 3306, 240, 0, 0, "t1"});
  return g;
}

Metrics Build(const flow::ServiceGraph& g, const AgentHealth& h, const MetricsOptions& o) {
  Ledgers ledgers;
  Account(g, {}, 1'000'000'000, ledgers);
  return BuildMetrics(g, ledgers, "10.0.0.2", h, o, 5'000'000'000);
}

TEST(MetricsTest, SeedTablesAsSeriesWithExactValuesAndEscapedLabels) {
  AgentHealth h;
  h.backend = "tracepoint";
  h.events = {{"close", 5}, {"connect", 6}};
  h.flows = 3;
  Metrics m = Build(Graph(), h, {});
  std::string text = MetricsText(m);
  // Label values escaped as the exposition format wants: \" \n \\ .
  EXPECT_NE(text.find(R"(name="my\"odd\nname\\é")"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(svcmap_service_listen_port_info{instance_id="my\"odd\nname\\é@10.0.0.2",instance_ip="10.0.0.2",name="my\"odd\nname\\é",port="33060"} 1)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(listen_ports="3306,33060")"), std::string::npos);
  // Both processes in one series, summed, exact.
  EXPECT_NE(text.find(R"(svcmap_connection_sent_bytes_total{src_instance_id="app@10.0.0.1",src_service_name="app",dst_ip="10.0.0.2",dst_port="3306"} 2469134)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(svcmap_connections_total{src_instance_id="app@10.0.0.1",src_service_name="app",dst_ip="10.0.0.2",dst_port="3306"} 6)"),
            std::string::npos);
  // Traffic without the ephemeral ports: one series.
  EXPECT_NE(text.find(R"(svcmap_traffic_bytes_total{src_ip="10.0.0.1",dst_ip="10.0.0.2",dst_port="3306"} 240)"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("40000"), std::string::npos);
  EXPECT_NE(text.find(R"(svcmap_backend_info{backend="tracepoint"} 1)"), std::string::npos);
  EXPECT_NE(text.find(fmt::format(R"(svcmap_build_info{{version="{}",revision="{}"}} 1)",
                                  base::Version(), base::Revision())),
            std::string::npos)
      << text;
  EXPECT_FALSE(base::Revision().empty());
  EXPECT_NE(text.find(R"(svcmap_events_total{type="connect"} 6)"), std::string::npos);
  EXPECT_NE(text.find("# TYPE svcmap_connection_sent_bytes_total counter"), std::string::npos);
  EXPECT_EQ(m.series_dropped, 0u);
}

TEST(MetricsTest, ServiceSeriesNameTheMachineAndDnatDestinationsTheBackend) {
  flow::ServiceGraph g = Graph();
  g.connections[0].actual_dst_ip = flow::IpAddr::V4(10, 0, 0, 9);
  g.connections[0].actual_dst_port = 6379;
  g.connections[0].group = "app->10.0.0.9:6379";
  Metrics m = Build(g, {}, {.max_series = 100, .machine = "node-1"});
  std::string text = MetricsText(m);
  EXPECT_NE(text.find(R"(port="33060",machine="node-1"} 1)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(listen_ports="3306,33060",machine="node-1"} 1)"), std::string::npos);
  EXPECT_NE(text.find(R"(dst_port="3306",actual_dst_ip="10.0.0.9",actual_dst_port="6379"})"),
            std::string::npos)
      << text;
}

TEST(MetricsTest, SeriesOverTheCapAreCountedNotExported) {
  Metrics m = Build(Graph(), {}, {.max_series = 1, .machine = ""});
  EXPECT_EQ(m.series_dropped, 1u);  // the traffic series
  std::string text = MetricsText(m);
  EXPECT_EQ(text.find("svcmap_traffic_bytes_total{"), std::string::npos);
  // A gauge: how many are left out now (a counter would grow per scrape).
  EXPECT_NE(text.find("svcmap_export_series_dropped 1"), std::string::npos) << text;
}

TEST(MetricsTest, CountersCarryWhenTheirSeriesBeganAndGaugesDoNot) {
  Metrics m = Build(Graph(), {}, {});
  ASSERT_EQ(m.created_ms.size(), m.families.size());
  for (size_t f = 0; f < m.families.size(); ++f) {
    ASSERT_EQ(m.created_ms[f].size(), m.families[f].metric.size()) << m.families[f].name;
    for (int64_t c : m.created_ms[f]) {
      if (m.families[f].name == "svcmap_connection_sent_bytes_total" ||
          m.families[f].name == "svcmap_traffic_bytes_total") {
        EXPECT_EQ(c, 6000);  // 1 s since boot, boot 5 s after the epoch
      }
      if (m.families[f].type == prometheus::MetricType::Gauge) {
        EXPECT_EQ(c, 0);
      }
    }
  }
}

TEST(MetricsTest, EdgeHealthAsCountersByOutcomeAndDirectionAndLatencyHistograms) {
  flow::ServiceGraph g = Graph();
  flow::FlowHealth& h = g.connections[0].stats.health;
  h.refused = 2;
  h.timed_out = 1;
  h.resets_received = 4;
  h.retransmits = 9;
  h.rtt.Add(80);       // <= 100 us
  h.rtt.Add(20'000);   // <= 25 ms
  h.connect.Add(150);  // <= 250 us
  g.connections[0].stats.failed = 3;
  flow::AcceptedRow a;
  a.local_port = 3306;
  a.peer_ip = flow::IpAddr::V4(10, 0, 0, 1);
  a.stats.connections = 5;
  a.stats.health.resets_sent = 5;
  a.stats.health.rtt.Add(300);
  a.group = "mysqld<-10.0.0.1";
  g.services[0].accepted.push_back(a);
  std::string text = MetricsText(Build(g, {}, {}));
  const std::string edge =
      R"(src_instance_id="app@10.0.0.1",src_service_name="app",dst_ip="10.0.0.2",dst_port="3306")";
  for (const std::string& line : std::vector<std::string>{
           "svcmap_connection_attempts_total{" + edge + R"(,outcome="established"} 6)",
        "svcmap_connection_attempts_total{" + edge + R"(,outcome="refused"} 2)",
        "svcmap_connection_attempts_total{" + edge + R"(,outcome="timed_out"} 1)",
        "svcmap_connection_attempts_total{" + edge + R"(,outcome="error"} 0)",
        "svcmap_connection_resets_total{" + edge + R"(,direction="received"} 4)",
        "svcmap_connection_resets_total{" + edge + R"(,direction="sent"} 0)",
        "svcmap_connection_retransmits_total{" + edge + "} 9",
        "svcmap_connection_rtt_seconds_count{" + edge + "} 2",
        "svcmap_connection_rtt_seconds_sum{" + edge + "} 0.02008",
        "svcmap_connection_rtt_seconds_bucket{" + edge + R"(,le="0.0001"} 1)",
        "svcmap_connection_rtt_seconds_bucket{" + edge + R"(,le="0.01"} 1)",
        "svcmap_connection_rtt_seconds_bucket{" + edge + R"(,le="0.025"} 2)",
        "svcmap_connection_rtt_seconds_bucket{" + edge + R"(,le="+Inf"} 2)",
        "svcmap_connection_connect_seconds_count{" + edge + "} 1",
        std::string("# TYPE svcmap_connection_rtt_seconds histogram"),
        // The accepted side: the service, its port, the peer.
        std::string(R"(svcmap_connection_resets_total{instance_id="my\"odd\nname\\é@10.0.0.2",name="my\"odd\nname\\é",port="3306",peer_ip="10.0.0.1",direction="sent"} 5)"),
        std::string(R"(svcmap_connection_rtt_seconds_count{instance_id="my\"odd\nname\\é@10.0.0.2",name="my\"odd\nname\\é",port="3306",peer_ip="10.0.0.1"} 1)")})
    EXPECT_NE(text.find(line), std::string::npos) << line << " in\n" << text;
  // One +Inf bucket per histogram, not two.
  size_t inf = 0;
  for (size_t at = text.find("le=\"+Inf\""); at != std::string::npos; at = text.find("le=\"+Inf\"", at + 1))
    ++inf;
  EXPECT_EQ(inf, 3u) << text;  // the edge's rtt and connect, the accepted side's rtt
}

TEST(MetricsTest, TableSizesAndAccountingAreExported) {
  AgentHealth h;
  h.tables = {{"processes", 12}, {"live_sockets", 3}};
  h.accounting = {{"lost_close", 2}};
  std::string text = MetricsText(Build(Graph(), h, {}));
  EXPECT_NE(text.find(R"(svcmap_table_entries{table="processes"} 12)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(svcmap_table_entries{table="live_sockets"} 3)"), std::string::npos);
  EXPECT_NE(text.find(R"(svcmap_accounting_total{event="lost_close"} 2)"), std::string::npos);
}

}  // namespace
}  // namespace svcmap::exporter
