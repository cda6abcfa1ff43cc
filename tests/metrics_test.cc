// The metrics families from a canned service graph, through the real text
// serializer.
#include "svcmap/export/metrics.h"

#include "gtest/gtest.h"

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
