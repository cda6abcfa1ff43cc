#include "svcmap/topology/graph.h"

#include "gtest/gtest.h"
#include "svcmap/topology/model.h"
#include "svcmap/topology/writers.h"

namespace svcmap::topology {
namespace {

Instance Svc(std::string name, std::string ip, std::string machine,
             std::vector<uint16_t> ports, int64_t first = 0, int64_t last = 0) {
  Instance in;
  in.instance_id = name + "@" + ip;
  in.instance_ip = ip;
  in.name = name;
  in.machine = machine;
  in.listen_ports = std::move(ports);
  in.first_seen_ms = first;
  in.last_seen_ms = last;
  return in;
}

Connection Conn(const Instance& src, std::string dst_ip, uint16_t port, uint64_t sent,
                uint64_t received, uint64_t n = 1) {
  Connection c;
  c.src_instance_id = src.instance_id;
  c.src_service_name = src.name;
  c.src_machine = src.machine;
  c.src_ip = src.instance_ip;
  c.dst_ip = std::move(dst_ip);
  c.dst_port = port;
  c.bytes_sent = sent;
  c.bytes_received = received;
  c.connections = n;
  return c;
}

const Edge* FindEdge(const Graph& g, const std::string& src, const std::string& dst) {
  for (const Edge& e : g.edges)
    if (e.src == src && e.dst == dst) return &e;
  return nullptr;
}

// The seed's picture: nginx -> app -> mysql, redis, on three machines.
Observations Seed() {
  Observations o;
  Instance nginx = Svc("nginx", "10.0.0.3", "c", {80});
  Instance app = Svc("app", "10.0.0.1", "a", {8080});
  Instance mysql = Svc("mysql", "10.0.0.2", "b", {3306});
  Instance redis = Svc("redis", "10.0.0.2", "b", {6379});
  o.instances = {nginx, app, mysql, redis};
  o.connections = {Conn(nginx, "10.0.0.1", 8080, 100, 2000, 4),
                   Conn(app, "10.0.0.2", 3306, 300, 40000, 2),
                   Conn(app, "10.0.0.2", 6379, 50, 60, 1)};
  return o;
}

TEST(JoinTest, TheSeedsPictureWithBytesOnEveryEdge) {
  Graph g = Join(Seed());
  ASSERT_EQ(g.edges.size(), 3u);
  const Edge* e = FindEdge(g, "nginx@10.0.0.3", "app@10.0.0.1");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->src_service, "nginx");
  EXPECT_EQ(e->dst_service, "app");
  EXPECT_EQ(e->dst_ip, "10.0.0.1");
  EXPECT_EQ(e->dst_port, 8080);
  EXPECT_EQ(e->bytes_sent, 100u);
  EXPECT_EQ(e->bytes_received, 2000u);
  EXPECT_EQ(e->connections, 4u);
  ASSERT_NE(FindEdge(g, "app@10.0.0.1", "mysql@10.0.0.2"), nullptr);
  ASSERT_NE(FindEdge(g, "app@10.0.0.1", "redis@10.0.0.2"), nullptr);
  EXPECT_TRUE(g.unmatched.empty());
  EXPECT_EQ(g.nodes.size(), 4u);
  for (const Node& n : g.nodes) EXPECT_FALSE(n.external) << n.id;
}

TEST(JoinTest, ADestinationNobodyOwnsIsAnExternalNode) {
  Observations o = Seed();
  o.connections.push_back(Conn(o.instances[1], "93.184.216.34", 443, 10, 20));
  Graph g = Join(o);
  const Edge* e = FindEdge(g, "app@10.0.0.1", "93.184.216.34:443");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->dst_service, "");
  bool found = false;
  for (const Node& n : g.nodes)
    if (n.id == "93.184.216.34:443") found = n.external;
  EXPECT_TRUE(found);
}

TEST(JoinTest, TwoClaimsOnOneAddressAreAmbiguousNotGuessed) {
  Observations o = Seed();
  Instance other = Svc("mariadb", "10.0.0.2", "b2", {3306});
  o.instances.push_back(other);
  Graph g = Join(o);
  EXPECT_EQ(FindEdge(g, "app@10.0.0.1", "mysql@10.0.0.2"), nullptr);
  EXPECT_EQ(FindEdge(g, "app@10.0.0.1", "mariadb@10.0.0.2"), nullptr);
  ASSERT_EQ(g.unmatched.size(), 1u);
  EXPECT_EQ(g.unmatched[0].reason, "ambiguous");
  EXPECT_EQ(g.unmatched[0].candidates,
            (std::vector<std::string>{"mariadb@10.0.0.2", "mysql@10.0.0.2"}));
  EXPECT_EQ(g.unmatched[0].bytes_received, 40000u);
}

TEST(JoinTest, IpOwnershipIsTimeRangedSoAReusedAddressMakesNoFalseEdge) {
  Observations o;
  // 10.0.0.9:5432 was "olddb" until t=1000, then "newdb" from t=2000.
  Instance olddb = Svc("olddb", "10.0.0.9", "x", {5432}, 100, 1000);
  Instance newdb = Svc("newdb", "10.0.0.9", "y", {5432}, 2000, 3000);
  Instance app = Svc("app", "10.0.0.1", "a", {});
  o.instances = {olddb, newdb, app};
  Connection late = Conn(app, "10.0.0.9", 5432, 1, 2);
  late.first_seen_ms = 2100;
  late.last_seen_ms = 2500;
  Connection early = Conn(app, "10.0.0.9", 5432, 3, 4);
  early.first_seen_ms = 200;
  early.last_seen_ms = 900;
  o.connections = {late, early};
  Graph g = Join(o);
  ASSERT_NE(FindEdge(g, "app@10.0.0.1", "newdb@10.0.0.9"), nullptr);
  EXPECT_EQ(FindEdge(g, "app@10.0.0.1", "newdb@10.0.0.9")->bytes_sent, 1u);
  ASSERT_NE(FindEdge(g, "app@10.0.0.1", "olddb@10.0.0.9"), nullptr);
  EXPECT_EQ(FindEdge(g, "app@10.0.0.1", "olddb@10.0.0.9")->bytes_sent, 3u);
  EXPECT_TRUE(g.unmatched.empty());
}

TEST(JoinTest, StoreTimesSampledPerStepOverlapWithinTwoSteps) {
  // From a store, redis's last listen sample (its agent pushed just before
  // a step) came 0.6 s before the app's first connection sample (its agent
  // pushed just after): the same moment, seen at a 15 s step.
  Observations o;
  Instance redis = Svc("redis", "10.0.0.2", "r", {6379}, 1'000'000, 1'000'400);
  Instance app = Svc("app", "10.0.0.1", "a", {});
  o.instances = {redis, app};
  Connection c = Conn(app, "10.0.0.2", 6379, 5, 6);
  c.first_seen_ms = 1'001'000;
  c.last_seen_ms = 1'001'000;
  o.connections = {c};
  EXPECT_EQ(FindEdge(Join(o), "app@10.0.0.1", "redis@10.0.0.2"), nullptr)
      << "exact times (resolution 0): disjoint";
  o.time_resolution_ms = 15'000;
  EXPECT_NE(FindEdge(Join(o), "app@10.0.0.1", "redis@10.0.0.2"), nullptr);
  // More than two steps apart, the claim is still not taken.
  o.connections[0].first_seen_ms = o.connections[0].last_seen_ms = 1'000'400 + 30'001;
  EXPECT_EQ(FindEdge(Join(o), "app@10.0.0.1", "redis@10.0.0.2"), nullptr);
}

TEST(JoinTest, MergeKeepsTheCoarsestTimeResolution) {
  Observations a, b;
  b.time_resolution_ms = 15'000;
  Merge(a, b);
  EXPECT_EQ(a.time_resolution_ms, 15'000);
  Merge(a, Observations{});
  EXPECT_EQ(a.time_resolution_ms, 15'000);
}

TEST(JoinTest, ADnatDestinationLandsOnTheRealBackend) {
  Observations o = Seed();
  Connection via_vip = Conn(o.instances[1], "10.96.0.10", 6379, 7, 8);
  via_vip.actual_dst_ip = "10.0.0.2";
  via_vip.actual_dst_port = 6379;
  o.connections = {via_vip};
  Graph g = Join(o);
  const Edge* e = FindEdge(g, "app@10.0.0.1", "redis@10.0.0.2");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->dst_ip, "10.96.0.10") << "the edge keeps what was dialled";
  EXPECT_EQ(e->bytes_sent, 7u);
}

TEST(JoinTest, LoopbackIsLookedForOnTheCallersMachine) {
  Observations o;
  Instance app = Svc("app", "10.0.0.1", "a", {});
  Instance cache = Svc("memcached", "10.0.0.1", "a", {11211});
  Instance far_cache = Svc("memcached", "10.0.0.2", "b", {11211});
  o.instances = {app, cache, far_cache};
  o.connections = {Conn(app, "127.0.0.1", 11211, 5, 6)};
  Graph g = Join(o);
  EXPECT_NE(FindEdge(g, "app@10.0.0.1", "memcached@10.0.0.1"), nullptr);
  EXPECT_TRUE(g.unmatched.empty());
}

TEST(JoinTest, TrafficFromAnUnobservedCallerIsListedNotDrawn) {
  Observations o = Seed();
  o.traffic = {{"192.168.7.7", "10.0.0.3", 80, 999},    // a browser: no agent there
               {"10.0.0.3", "10.0.0.1", 8080, 2100}};  // nginx's, covered by its agent
  Graph g = Join(o);
  EXPECT_EQ(g.edges.size(), 3u);
  ASSERT_EQ(g.unmatched.size(), 1u);
  EXPECT_EQ(g.unmatched[0].reason, "caller not observed");
  EXPECT_EQ(g.unmatched[0].src_instance_id, "192.168.7.7");
  EXPECT_EQ(g.unmatched[0].candidates, std::vector<std::string>{"nginx@10.0.0.3"});
}

TEST(JoinTest, GroupByServiceAndMachineAddUp) {
  Observations o = Seed();
  Instance app2 = Svc("app", "10.0.0.4", "d", {8080});
  o.instances.push_back(app2);
  o.connections.push_back(Conn(app2, "10.0.0.2", 3306, 1000, 1, 1));
  Graph by_service = Join(o, GroupBy::kService);
  const Edge* e = FindEdge(by_service, "app", "mysql");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->bytes_sent, 1300u);
  EXPECT_EQ(e->connections, 3u);
  Graph by_machine = Join(o, GroupBy::kMachine);
  EXPECT_NE(FindEdge(by_machine, "c", "a"), nullptr);
  // Still one edge per destination port: a machine's MySQL and Redis apart.
  uint64_t a_to_b = 0;
  for (const Edge& e : by_machine.edges)
    if (e.src == "a" && e.dst == "b") a_to_b += e.bytes_sent;
  EXPECT_EQ(a_to_b, 350u);
  EXPECT_EQ(FindEdge(by_machine, "d", "b")->bytes_sent, 1000u);
}

TEST(MergeTest, OneInstanceFromTwoSourcesIsOneNode) {
  Observations a = Seed(), b;
  Instance nginx_again = Svc("nginx", "10.0.0.3", "c", {443});
  b.instances = {nginx_again};
  Merge(a, b);
  ASSERT_EQ(a.instances.size(), 4u);
  EXPECT_EQ(a.instances[0].listen_ports, (std::vector<uint16_t>{80, 443}));
}

TEST(WritersTest, MermaidHasAMachineSubgraphAndLabelledEdges) {
  std::string m = GraphMermaid(Join(Seed()));
  EXPECT_NE(m.find("flowchart LR"), std::string::npos);
  EXPECT_NE(m.find("subgraph"), std::string::npos);
  EXPECT_NE(m.find("\"HTTP 2.1 KiB\""), std::string::npos) << m;
  EXPECT_NE(m.find("\"MySQL 39.4 KiB\""), std::string::npos) << m;
  EXPECT_NE(m.find("app<br/>:8080"), std::string::npos) << m;
}

TEST(WritersTest, DotGivesEveryEdgeAnIdAndQuotesLabels) {
  Observations o = Seed();
  o.instances[0].name = "ng\"inx";
  o.connections[0].src_service_name = "ng\"inx";
  std::string d = GraphDot(Join(o));
  EXPECT_NE(d.find("id=\"e0\""), std::string::npos);
  EXPECT_NE(d.find("id=\"e2\""), std::string::npos);
  EXPECT_NE(d.find("ng\\\"inx"), std::string::npos) << d;
  EXPECT_NE(d.find("subgraph cluster_"), std::string::npos);
}

TEST(WritersTest, JsonHasTheDocumentedFields) {
  nlohmann::ordered_json j = GraphJson(Join(Seed()));
  ASSERT_EQ(j["edges"].size(), 3u);
  for (const char* f : {"src", "dst", "src_service", "dst_service", "dst_ip", "dst_port",
                        "bytes_sent", "bytes_received", "connections"})
    EXPECT_TRUE(j["edges"][0].contains(f)) << f;
  for (const char* f : {"id", "service", "instance_id", "instance_ip", "listen_ports", "external"})
    EXPECT_TRUE(j["nodes"][0].contains(f)) << f;
  EXPECT_TRUE(j["unmatched"].is_array());
}

TEST(WritersTest, SvgAndHtmlAreRenderedByGraphviz) {
  absl::StatusOr<std::string> svg = GraphSvg(Join(Seed()));
  ASSERT_TRUE(svg.ok()) << svg.status();
  EXPECT_NE(svg->find("<svg"), std::string::npos);
  EXPECT_NE(svg->find("id=\"e1\""), std::string::npos);
  EXPECT_NE(svg->find(">redis"), std::string::npos);
  absl::StatusOr<std::string> html = GraphHtml(Join(Seed()), "t<1>");
  ASSERT_TRUE(html.ok());
  EXPECT_NE(html->find("<title>t&lt;1&gt;</title>"), std::string::npos);
  EXPECT_EQ(html->find("<?xml"), std::string::npos) << "no XML prolog inside HTML";
  for (const char* external : {"<link", "src=\"http", "href=\"http", "url(http"})
    EXPECT_EQ(html->find(external), std::string::npos) << "no external resources: " << external;
}

// -- Health on the edges --

Observations SickSeed() {
  Observations o = Seed();
  Health& mysql = o.connections[1].health;  // app -> mysql
  mysql.refused = 2;
  mysql.resets_received = 1;
  mysql.rtt_samples = 2;
  mysql.rtt_sum_us = 3000;
  mysql.rtt_min_us = 700;
  Health& redis = o.connections[2].health;  // app -> redis: retransmits only
  redis.retransmits = 5;
  redis.rtt_samples = 1;
  redis.rtt_sum_us = 250;
  return o;
}

TEST(JoinTest, HealthAddsUpOverAnEdgesConnections) {
  Observations o = SickSeed();
  Connection twin = o.connections[1];
  twin.health = {};
  twin.health.timed_out = 1;
  twin.health.rtt_samples = 1;
  twin.health.rtt_sum_us = 6000;
  twin.health.rtt_min_us = 500;
  o.connections.push_back(twin);
  Graph g = Join(o);
  const Edge* e = FindEdge(g, "app@10.0.0.1", "mysql@10.0.0.2");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->health.failed(), 3u);
  EXPECT_EQ(e->health.resets(), 1u);
  EXPECT_EQ(e->health.rtt_us(), 3000u);  // (3000 + 6000) / 3
  EXPECT_EQ(e->health.rtt_min_us, 500u);
}

TEST(WritersTest, AFailingEdgeIsRedARetransmittingOneOrangeAndBothShowTheirRtt) {
  Graph g = Join(SickSeed());
  std::string d = GraphDot(g);
  EXPECT_NE(d.find("label=\"MySQL 39.4 KiB, rtt 1.5 ms, 2 failed, 1 reset\", color=red"),
            std::string::npos)
      << d;
  EXPECT_NE(d.find("label=\"Redis 110 B, rtt 250 us\", color=orange"), std::string::npos) << d;
  EXPECT_NE(d.find("label=\"HTTP 2.1 KiB\"]"), std::string::npos) << "healthy: plain\n" << d;
  std::string m = GraphMermaid(g);
  // Edges by source: app -> mysql, app -> redis, nginx -> app.
  EXPECT_NE(m.find("linkStyle 0 stroke:red"), std::string::npos) << m;
  EXPECT_NE(m.find("linkStyle 1 stroke:orange"), std::string::npos) << m;
  EXPECT_EQ(m.find("linkStyle 2"), std::string::npos) << m;
  nlohmann::ordered_json j = GraphJson(g);
  const auto& e = j["edges"][0];
  EXPECT_EQ(e["dst"], "mysql@10.0.0.2");
  EXPECT_EQ(e["failed"], 2);
  EXPECT_EQ(e["attempts_refused"], 2);
  EXPECT_EQ(e["resets_received"], 1);
  EXPECT_EQ(e["rtt_us"], 1500);
  EXPECT_EQ(e["rtt_min_us"], 700);
  EXPECT_TRUE(e["connect_latency_us"].is_null());
  EXPECT_TRUE(j["edges"][2]["rtt_us"].is_null());
  absl::StatusOr<std::string> html = GraphHtml(g, "t");
  ASSERT_TRUE(html.ok());
  EXPECT_NE(html->find("<tr class=\"bad\"><td>app@10.0.0.1</td><td>mysql@10.0.0.2</td>"),
            std::string::npos)
      << *html;
  absl::StatusOr<std::string> svg = GraphSvg(g);
  ASSERT_TRUE(svg.ok());
  EXPECT_NE(svg->find("stroke=\"red\""), std::string::npos);
}

TEST(WritersTest, HumanBytes) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(5ull << 30), "5.0 GiB");
}

}  // namespace
}  // namespace svcmap::topology
