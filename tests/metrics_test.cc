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
    g.connections.push_back(c);
  }
  for (uint16_t sport : {40000, 40001})
    g.traffic.push_back({flow::IpAddr::V4(10, 0, 0, 1), sport, flow::IpAddr::V4(10, 0, 0, 2), 3306,
                         100, 20, flow::Role::kClient, 7, 0});
  return g;
}

TEST(MetricsTest, SeedTablesAsSeriesWithExactValuesAndEscapedLabels) {
  AgentHealth h;
  h.backend = "tracepoint";
  h.events = {{"close", 5}, {"connect", 6}};
  h.flows = 3;
  Metrics m = BuildMetrics(Graph(), "10.0.0.2", h, {});
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
  Metrics m = BuildMetrics(g, "10.0.0.2", {}, {.max_series = 100, .machine = "node-1"});
  std::string text = MetricsText(m);
  EXPECT_NE(text.find(R"(port="33060",machine="node-1"} 1)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(listen_ports="3306,33060",machine="node-1"} 1)"), std::string::npos);
  EXPECT_NE(text.find(R"(dst_port="3306",actual_dst_ip="10.0.0.9",actual_dst_port="6379"})"),
            std::string::npos)
      << text;
}

TEST(MetricsTest, SeriesOverTheCapAreCountedNotExported) {
  Metrics m = BuildMetrics(Graph(), "10.0.0.2", {}, {.max_series = 1});
  EXPECT_EQ(m.series_dropped, 1u);  // the traffic series
  std::string text = MetricsText(m);
  EXPECT_EQ(text.find("svcmap_traffic_bytes_total{"), std::string::npos);
  EXPECT_NE(text.find(R"(svcmap_drops_total{stage="export_series_cap"} 1)"), std::string::npos);
}

}  // namespace
}  // namespace svcmap::exporter
