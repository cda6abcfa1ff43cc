#include "svcmap/ui/top_model.h"

#include "gtest/gtest.h"

namespace svcmap::ui {
namespace {

topology::Edge E(std::string src, std::string dst, uint16_t port, uint64_t out, uint64_t in,
                 uint64_t conns, uint64_t active = 0) {
  topology::Edge e;
  e.src = src + "@10.0.0.1";
  e.dst = dst + "@10.0.0.2";
  e.src_service = src;
  e.dst_service = dst;
  e.dst_port = port;
  e.bytes_sent = out;
  e.bytes_received = in;
  e.connections = conns;
  e.active = active;
  return e;
}

Sample S(int64_t t_ms, std::vector<topology::Edge> edges) {
  Sample s;
  s.time_ms = t_ms;
  s.host = "node";
  s.backend = "tracepoint";
  s.graph.edges = std::move(edges);
  for (const char* n : {"app", "redis", "mysql"}) {
    topology::Node node;
    node.id = std::string(n) + (std::string(n) == "app" ? "@10.0.0.1" : "@10.0.0.2");
    node.service = n;
    s.graph.nodes.push_back(node);
  }
  return s;
}

TEST(TopModelTest, RatesAreDeltasOverTimeAndNeverNegative) {
  EXPECT_DOUBLE_EQ(Rate(3000, 1000, 2.0), 1000.0);
  EXPECT_DOUBLE_EQ(Rate(1000, 3000, 2.0), 0.0) << "a counter reset is not a negative rate";
  EXPECT_DOUBLE_EQ(Rate(3000, 1000, 0.0), 0.0) << "no time passed";
  EXPECT_DOUBLE_EQ(Rate(3000, 1000, -1.0), 0.0);
}

TEST(TopModelTest, EdgesViewHasRatesAgainstThePreviousSample) {
  Sample a = S(1000, {E("app", "redis", 6379, 1000, 5000, 10, 2), E("app", "mysql", 3306, 0, 0, 1)});
  Sample b = S(3000, {E("app", "redis", 6379, 3048, 9096, 30, 3), E("app", "mysql", 3306, 0, 0, 1)});
  Table t = BuildTable(Mode::kEdges, &a, b);
  ASSERT_EQ(t.columns.size(), 11u);
  EXPECT_EQ(t.columns[3].title, "OUT/s");
  FilterAndSort(t, "", 3, true);
  ASSERT_EQ(t.rows.size(), 2u);
  const Row& r = t.rows[0];
  EXPECT_EQ(r.text[0], "app");
  EXPECT_EQ(r.text[1], "redis");
  EXPECT_EQ(r.text[2], "6379");
  EXPECT_EQ(r.text[3], "1.0 KiB/s");   // 2048 bytes over 2 s
  EXPECT_EQ(r.text[4], "2.0 KiB/s");
  EXPECT_EQ(r.text[5], "10");          // 20 connections over 2 s
  EXPECT_EQ(r.text[6], "3");
  EXPECT_EQ(r.text[7], "11.9 KiB");    // 3048 + 9096
  EXPECT_EQ(t.rows[1].text[3], "0 B/s");
}

TEST(TopModelTest, ErrorsRetransmitsAndRttOfTheConnectionsClosedSinceTheLastSample) {
  topology::Edge e1 = E("app", "redis", 6379, 1000, 5000, 10);
  e1.health.refused = 1;
  e1.health.retransmits = 4;
  e1.health.rtt_samples = 2;
  e1.health.rtt_sum_us = 400;
  topology::Edge e2 = e1;
  e2.health.refused = 3;
  e2.health.resets_received = 2;  // 4 errors more in 2 s
  e2.health.retransmits = 10;     // 6 more
  e2.health.rtt_samples = 4;
  e2.health.rtt_sum_us = 3400;    // the two new ones: 1.5 ms each
  Sample a = S(1000, {e1}), b = S(3000, {e2});
  Table t = BuildTable(Mode::kEdges, &a, b);
  ASSERT_EQ(t.columns.size(), 11u);
  EXPECT_EQ(t.columns[8].title, "ERR/s");
  EXPECT_EQ(t.columns[9].title, "RETR/s");
  EXPECT_EQ(t.columns[10].title, "RTT");
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0].text[8], "2.0");
  EXPECT_EQ(t.rows[0].text[9], "3.0");
  EXPECT_EQ(t.rows[0].text[10], "1.5ms");
  // Nothing closed since: the mean of all so far.
  Table again = BuildTable(Mode::kEdges, &b, b);
  EXPECT_EQ(again.rows[0].text[10], "850us");
  // Wide enough: shown; too narrow: left out whole, the rest uncut.
  EXPECT_NE(FormatTable(t, 120, 3, true)[0].find("RTT"), std::string::npos);
  std::vector<std::string> narrow = FormatTable(t, 80, 3, true);
  EXPECT_EQ(narrow[0].find("ERR/s"), std::string::npos) << narrow[0];
  EXPECT_NE(narrow[0].find("TOTAL"), std::string::npos) << narrow[0];
}

TEST(TopModelTest, TheFirstSampleHasNoRatesAndANewRowStartsFromZero) {
  Sample a = S(1000, {});
  Sample b = S(2000, {E("app", "redis", 6379, 500, 0, 1)});
  Table first = BuildTable(Mode::kEdges, nullptr, b);
  EXPECT_EQ(first.rows[0].text[3], "0 B/s");
  Table t = BuildTable(Mode::kEdges, &a, b);
  EXPECT_EQ(t.rows[0].text[3], "500 B/s");
}

TEST(TopModelTest, ServicesAddUpWhatTheySendAsCallerAndAnswerAsCallee) {
  Sample a = S(0, {E("app", "redis", 6379, 0, 0, 0)});
  Sample b = S(1000, {E("app", "redis", 6379, 100, 400, 2)});
  Table t = BuildTable(Mode::kServices, &a, b);
  FilterAndSort(t, "redis", 0, false);
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0].text[3], "400 B/s") << "redis answered 400 bytes";
  EXPECT_EQ(t.rows[0].text[4], "100 B/s");
}

TEST(TopModelTest, ProcessesViewAndAStoreWithoutThem) {
  Sample b = S(1000, {});
  topology::Process p;
  p.machine = "node";
  p.pid = 42;
  p.comm = "redis-server";
  p.service = "redis";
  p.bytes_sent = 7;
  b.processes = {p};
  Table t = BuildTable(Mode::kProcesses, nullptr, b);
  ASSERT_EQ(t.rows.size(), 1u);
  EXPECT_EQ(t.rows[0].text[0], "42");
  EXPECT_EQ(t.rows[0].text[1], "redis-server");
  b.has_processes = false;
  EXPECT_TRUE(BuildTable(Mode::kProcesses, nullptr, b).rows.empty());
}

TEST(TopModelTest, FilterIsCaseInsensitiveAndSortIsStable) {
  Sample b = S(1000, {E("app", "redis", 6379, 5, 0, 0), E("web", "Redis", 6380, 5, 0, 0),
                      E("app", "mysql", 3306, 9, 0, 0)});
  Table t = BuildTable(Mode::kEdges, nullptr, b);
  FilterAndSort(t, "REDIS", 1, false);
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0].text[1], "Redis");  // byte order: upper case first
  Table by_port = BuildTable(Mode::kEdges, nullptr, b);
  FilterAndSort(by_port, "", 2, true);
  EXPECT_EQ(by_port.rows[0].text[2], "6380");
  EXPECT_EQ(by_port.rows[2].text[2], "3306");
}

TEST(TopModelTest, KeysSwitchViewsSortFilterAndPause) {
  TopState s;
  EXPECT_TRUE(HandleKey(s, '2', 8));
  EXPECT_EQ(s.mode, Mode::kServices);
  EXPECT_TRUE(HandleKey(s, '\t', 8));
  EXPECT_EQ(s.mode, Mode::kProcesses);
  EXPECT_TRUE(HandleKey(s, '\t', 8));
  EXPECT_EQ(s.mode, Mode::kEdges);
  EXPECT_TRUE(HandleKey(s, '>', 8));
  EXPECT_EQ(s.sort_column, 4u);
  for (int i = 0; i < 5; ++i) HandleKey(s, '<', 8);
  EXPECT_EQ(s.sort_column, 7u) << "wraps";
  HandleKey(s, 'r', 8);
  EXPECT_FALSE(s.descending);
  HandleKey(s, ' ', 8);
  EXPECT_TRUE(s.paused);
  EXPECT_NE(FooterHint(s).find("resume"), std::string::npos);
  HandleKey(s, '/', 8);
  EXPECT_TRUE(s.editing_filter);
  for (char c : std::string("redx")) HandleKey(s, c, 8);
  HandleKey(s, 0407, 8);  // KEY_BACKSPACE
  EXPECT_NE(FooterHint(s).find("filter: red_"), std::string::npos) << FooterHint(s);
  EXPECT_FALSE(HandleKey(s, 1, 8)) << "a control key while editing does nothing";
  HandleKey(s, '\n', 8);
  EXPECT_EQ(s.filter, "red");
  EXPECT_FALSE(s.editing_filter);
  HandleKey(s, 27, 8);
  EXPECT_EQ(s.filter, "") << "Esc clears the filter";
  EXPECT_FALSE(HandleKey(s, 'z', 8));
  HandleKey(s, 'q', 8);
  EXPECT_TRUE(s.quit);
}

TEST(TopModelTest, LinesFitTheWidthAndNumbersAreNeverCut) {
  Sample b = S(1000, {E(std::string(60, 's'), std::string(60, 'd'), 6379, 123456789, 1, 1)});
  Table t = BuildTable(Mode::kEdges, nullptr, b);
  for (size_t width : {80, 100, 120}) {
    std::vector<std::string> lines = FormatTable(t, width, 3, true);
    ASSERT_EQ(lines.size(), 2u);
    for (const std::string& l : lines) EXPECT_LE(l.size(), width) << l;
    EXPECT_NE(lines[1].find("117.7 MiB"), std::string::npos) << lines[1];
    EXPECT_NE(lines[0].find("OUT/sv"), std::string::npos) << "the sort column is marked";
  }
}

TEST(TopModelTest, HeaderSaysHostBackendEventRateAndDrops) {
  Sample a = S(1000, {}), b = S(3000, {});
  a.events = 100;
  b.events = 500;
  b.drops = 3;
  std::string h = HeaderLine(&a, b, true);
  EXPECT_NE(h.find("node"), std::string::npos);
  EXPECT_NE(h.find("backend tracepoint"), std::string::npos);
  EXPECT_NE(h.find("200 events/s"), std::string::npos) << h;
  EXPECT_NE(h.find("3 drops"), std::string::npos);
  EXPECT_NE(h.find("PAUSED"), std::string::npos);
}

}  // namespace
}  // namespace svcmap::ui
