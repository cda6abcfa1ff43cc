#include "svcmap/topology/sources.h"

#include "gtest/gtest.h"
#include "svcmap/export/snapshot_json.h"

namespace svcmap::topology {
namespace {

static_assert(kSnapshotSchemaVersion == exporter::kSnapshotSchemaVersion,
              "the reader reads what the writer writes");

constexpr char kSnapshot[] = R"({
  "schema_version": 1,
  "instance": {"hostname": "machine-a", "instance_ip": "10.0.0.1", "netns": "all",
               "netns_inode": 0, "backend": "tracepoint", "duration_s": 5.0},
  "services": [
    {"instance_id": "app@10.0.0.1", "instance_ip": "10.0.0.1", "name": "app", "pid": 42,
     "pids": [42], "exe": "/usr/bin/app", "name_source": "exe", "listen_ports": [8080],
     "accepted": []},
    {"instance_id": "curl@10.0.0.1", "instance_ip": "10.0.0.1", "name": "curl", "pid": 7,
     "pids": [7], "exe": "", "name_source": "comm", "listen_ports": [], "accepted": []}
  ],
  "connections": [
    {"src_instance_id": "app@10.0.0.1", "src_service_name": "app", "src_pid": 42,
     "src_ip": "10.0.0.1", "dst_ip": "10.96.0.10", "dst_port": 6379,
     "actual_dst_ip": "10.0.0.2", "actual_dst_port": 6379, "bytes": 30,
     "bytes_sent": 10, "bytes_received": 20, "connections": 2, "failed": 0, "time": ""},
    {"src_instance_id": "curl@10.0.0.1", "src_service_name": "curl", "src_pid": 7,
     "src_ip": "10.0.0.1", "dst_ip": "10.0.0.3", "dst_port": 80, "actual_dst_ip": null,
     "actual_dst_port": null, "bytes": 5, "bytes_sent": 2, "bytes_received": 3,
     "connections": 1, "failed": 3, "time": "", "attempts_refused": 2, "attempts_timed_out": 1,
     "attempts_error": 0, "resets_received": 1, "resets_sent": 0, "retransmits": 4,
     "rtt_us": 250, "rtt_min_us": 90, "connect_latency_us": 400, "rtt_samples": 2,
     "connect_samples": 1}
  ],
  "traffic": [{"src_ip": "10.0.0.1", "src_port": 40000, "dst_ip": "10.0.0.3", "dst_port": 80,
               "bytes": 5, "bytes_to_dst": 2, "bytes_to_src": 3, "observed_as": "client",
               "pid": 7}],
  "stats": {}, "completeness": null
})";

TEST(ParseSnapshotTest, ReadsTheSeedsTables) {
  absl::StatusOr<Observations> o = ParseSnapshot(kSnapshot, "a.json");
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_EQ(o->instances.size(), 2u);
  EXPECT_EQ(o->instances[0].instance_id, "app@10.0.0.1");
  EXPECT_EQ(o->instances[0].machine, "machine-a");
  EXPECT_EQ(o->instances[0].pid, 42u);
  EXPECT_EQ(o->instances[0].listen_ports, std::vector<uint16_t>{8080});
  ASSERT_EQ(o->connections.size(), 2u);
  EXPECT_EQ(o->connections[0].actual_dst_ip, "10.0.0.2");
  EXPECT_EQ(o->connections[0].actual_dst_port, 6379);
  EXPECT_EQ(o->connections[0].bytes_sent, 10u);
  EXPECT_EQ(o->connections[0].connections, 2u);
  EXPECT_EQ(o->connections[0].src_machine, "machine-a");
  EXPECT_EQ(o->connections[1].actual_dst_ip, "");
  // The health fields; a row without them (an older snapshot) has none.
  const Health& h = o->connections[1].health;
  EXPECT_EQ(h.refused, 2u);
  EXPECT_EQ(h.timed_out, 1u);
  EXPECT_EQ(h.resets_received, 1u);
  EXPECT_EQ(h.retransmits, 4u);
  EXPECT_EQ(h.rtt_us(), 250u);
  EXPECT_EQ(h.rtt_samples, 2u);
  EXPECT_EQ(h.rtt_min_us, 90u);
  EXPECT_EQ(h.connect_us(), 400u);
  EXPECT_EQ(o->connections[0].health.failed(), 0u);
  EXPECT_EQ(o->connections[0].health.rtt_samples, 0u);
  ASSERT_EQ(o->traffic.size(), 1u);
  EXPECT_EQ(o->traffic[0].bytes, 5u);
}

TEST(ParseSnapshotTest, RefusesOtherSchemasAndMalformedInput) {
  std::string v2 = kSnapshot;
  v2.replace(v2.find("\"schema_version\": 1"), 19, "\"schema_version\": 2");
  absl::StatusOr<Observations> o = ParseSnapshot(v2, "b.json");
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("schema_version 2"), std::string::npos) << o.status();
  EXPECT_NE(o.status().message().find("b.json"), std::string::npos);
  std::string none = kSnapshot;
  none.replace(none.find("\"schema_version\": 1,"), 20, "");
  EXPECT_FALSE(ParseSnapshot(none, "c").ok());
  for (const char* bad : {"", "[]", "{", "null", "{\"schema_version\": 1}",
                          "{\"schema_version\": \"1\", \"instance\": {}, \"services\": [], "
                          "\"connections\": []}",
                          "{\"schema_version\": 1, \"instance\": {}, \"services\": [{}], "
                          "\"connections\": []}",
                          "{\"schema_version\": 1, \"instance\": {}, \"services\": [], "
                          "\"connections\": [{\"src_instance_id\": \"a\", \"dst_ip\": \"x\", "
                          "\"dst_port\": 70000}]}"})
    EXPECT_FALSE(ParseSnapshot(bad, "x").ok()) << bad;
}

TEST(ParsePromVectorTest, ReadsSamplesAndRefusesErrors) {
  absl::StatusOr<std::vector<PromSample>> v = ParsePromVector(R"({"status":"success","data":{
    "resultType":"vector","result":[
      {"metric":{"__name__":"svcmap_x","a":"1"},"value":[1700000000.5,"42"]},
      {"metric":{},"value":[1700000000,"1e3"]}]}})");
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->size(), 2u);
  EXPECT_EQ((*v)[0].labels.at("a"), "1");
  EXPECT_EQ((*v)[0].value, 42);
  EXPECT_EQ((*v)[1].value, 1000);
  absl::StatusOr<std::vector<PromSample>> err =
      ParsePromVector(R"({"status":"error","errorType":"bad_data","error":"parse error at 3"})");
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.status().message().find("parse error at 3"), std::string::npos);
  for (const char* bad :
       {"", "<html>", R"({"status":"success","data":{"resultType":"matrix","result":[]}})",
        R"({"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1]}]}})",
        R"({"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":1},"value":[1,"2"]}]}})",
        R"({"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}})"})
    EXPECT_FALSE(ParsePromVector(bad).ok()) << bad;
}

TEST(ParseWindowTest, DurationsAndRanges) {
  const absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  absl::StatusOr<Window> w = ParseWindow("5m", now);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->end_ms, 1'700'000'000'000);
  EXPECT_EQ(w->start_ms, 1'700'000'000'000 - 300'000);
  w = ParseWindow("now-2h..now-1h", now);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->end_ms - w->start_ms, 3'600'000);
  w = ParseWindow("1699990000..2023-11-14T22:13:20Z", now);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->start_ms, 1'699'990'000'000);
  EXPECT_EQ(w->end_ms, 1'700'000'000'000);
  for (const char* bad : {"", "0s", "-5m", "now..now-1h", "yesterday..now", "5m..", "..now"})
    EXPECT_FALSE(ParseWindow(bad, now).ok()) << bad;
}

PromSample S(std::map<std::string, std::string> labels, double v) { return {std::move(labels), v}; }

TEST(ObservationsFromTsdbTest, BytesInTheWindowAreEndMinusStartAndResetsCount) {
  std::map<std::string, std::string> conn = {{"src_instance_id", "app@10.0.0.1"},
                                             {"src_service_name", "app"},
                                             {"dst_ip", "10.0.0.2"},
                                             {"dst_port", "5432"},
                                             {"instance", "10.0.0.1"},
                                             {"job", "svcmap"}};
  std::map<std::string, std::string> reset = conn;
  reset["dst_port"] = "6379";
  std::map<std::string, std::vector<PromSample>> answers;
  answers["services"] = {S({{"instance_id", "app@10.0.0.1"}, {"instance_ip", "10.0.0.1"},
                            {"name", "app"}, {"pid", "42"}, {"machine", "a"}}, 1)};
  answers["ports"] = {S({{"instance_id", "pg@10.0.0.2"}, {"instance_ip", "10.0.0.2"},
                         {"name", "pg"}, {"port", "5432"}, {"machine", "b"}}, 1)};
  answers["ports_first"] = {S({{"instance_id", "pg@10.0.0.2"}, {"instance_ip", "10.0.0.2"},
                               {"name", "pg"}, {"port", "5432"}, {"machine", "b"}}, 1000.5)};
  answers["sent_end"] = {S(conn, 5000), S(reset, 70)};
  answers["sent_start"] = {S(conn, 1000), S(reset, 900)};  // reset: the agent restarted
  answers["received_end"] = {S(conn, 300), S(reset, 7)};
  answers["conns_end"] = {S(conn, 3), S(reset, 1)};
  answers["conns_start"] = {S(conn, 1)};
  absl::StatusOr<Observations> o = ObservationsFromTsdb(answers);
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_EQ(o->instances.size(), 2u);
  const Instance& pg = o->instances[1];
  EXPECT_EQ(pg.instance_id, "pg@10.0.0.2");
  EXPECT_EQ(pg.listen_ports, std::vector<uint16_t>{5432});
  EXPECT_EQ(pg.first_seen_ms, 1000500);
  ASSERT_EQ(o->connections.size(), 2u);
  EXPECT_EQ(o->connections[0].bytes_sent, 4000u);
  EXPECT_EQ(o->connections[0].bytes_received, 300u);
  EXPECT_EQ(o->connections[0].connections, 2u);
  EXPECT_EQ(o->connections[0].src_machine, "a");
  EXPECT_EQ(o->connections[1].bytes_sent, 70u) << "a counter that went down was reset";

  answers["sent_end"].push_back(S({{"src_instance_id", "x"}}, 1));
  EXPECT_FALSE(ObservationsFromTsdb(answers).ok()) << "a series without its labels";
}

TEST(ObservationsFromTsdbTest, HealthInTheWindowLinesUpWithItsConnectionSeries) {
  std::map<std::string, std::string> conn = {{"src_instance_id", "app@10.0.0.1"},
                                             {"src_service_name", "app"},
                                             {"dst_ip", "10.0.0.2"},
                                             {"dst_port", "5432"}};
  std::map<std::string, std::vector<PromSample>> answers;
  answers["sent_end"] = {S(conn, 5000)};
  answers["refused_end"] = {S(conn, 7)};
  answers["refused_start"] = {S(conn, 2)};
  answers["resets_sent_end"] = {S(conn, 1)};
  answers["retransmits_end"] = {S(conn, 30)};
  answers["retransmits_start"] = {S(conn, 10)};
  answers["rtt_sum_end"] = {S(conn, 0.5)};
  answers["rtt_sum_start"] = {S(conn, 0.1)};
  answers["rtt_count_end"] = {S(conn, 10)};
  answers["rtt_count_start"] = {S(conn, 2)};
  absl::StatusOr<Observations> o = ObservationsFromTsdb(answers);
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_EQ(o->connections.size(), 1u);
  const Health& h = o->connections[0].health;
  EXPECT_EQ(h.refused, 5u);
  EXPECT_EQ(h.resets_sent, 1u);
  EXPECT_EQ(h.retransmits, 20u);
  EXPECT_EQ(h.rtt_samples, 8u);
  EXPECT_EQ(h.rtt_sum_us, 400000u);
  EXPECT_EQ(h.rtt_us(), 50000u);
  // Each health query sums its splitting label away, so that it lines up.
  bool summed = false;
  for (const TsdbQuery& q : TsdbQueries({0, 3'600'000}))
    summed |= q.name == "refused_end" &&
              q.promql == R"(sum without (outcome) (last_over_time(svcmap_connection_attempts_total{outcome="refused"}[3600s])))";
  EXPECT_TRUE(summed);
  // One without a splitting label keeps every series' labels.
  bool as_is = false;
  for (const TsdbQuery& q : TsdbQueries({0, 3'600'000}))
    as_is |= q.name == "rtt_count_end" &&
             q.promql == R"(last_over_time(svcmap_connection_rtt_seconds_count{src_instance_id!=""}[3600s]))";
  EXPECT_TRUE(as_is);
}

// An edge whose connects all failed in the window moved no byte and made
// no connection, and is still an edge; one that moved nothing at all is not.
TEST(ObservationsFromTsdbTest, AnEdgeWithOnlyFailedConnectsInTheWindowIsKept) {
  std::map<std::string, std::string> failing = {{"src_instance_id", "app@10.0.0.1"},
                                                {"src_service_name", "app"},
                                                {"dst_ip", "10.0.0.3"},
                                                {"dst_port", "6379"}};
  std::map<std::string, std::string> idle = failing;
  idle["dst_port"] = "6380";
  std::map<std::string, std::vector<PromSample>> answers;
  answers["sent_end"] = {S(failing, 1000), S(idle, 1000)};
  answers["sent_start"] = {S(failing, 1000), S(idle, 1000)};
  answers["received_end"] = {S(failing, 10), S(idle, 10)};
  answers["received_start"] = {S(failing, 10), S(idle, 10)};
  answers["conns_end"] = {S(failing, 4), S(idle, 4)};
  answers["conns_start"] = {S(failing, 4), S(idle, 4)};
  answers["timed_out_end"] = {S(failing, 3), S(idle, 1)};
  answers["timed_out_start"] = {S(idle, 1)};
  absl::StatusOr<Observations> o = ObservationsFromTsdb(answers);
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_EQ(o->connections.size(), 1u);
  EXPECT_EQ(o->connections[0].dst_port, 6379);
  EXPECT_EQ(o->connections[0].bytes_sent, 0u);
  EXPECT_EQ(o->connections[0].connections, 0u);
  EXPECT_EQ(o->connections[0].health.timed_out, 3u);
  EXPECT_EQ(o->connections[0].health.failed(), 3u);
}

TEST(TsdbQueriesTest, TheStepIsFifteenSecondsOrAFraction200OfTheWindow) {
  EXPECT_EQ(TsdbStepSeconds({0, 600'000}), 15);
  EXPECT_EQ(TsdbStepSeconds({0, 86'400'000}), 432);
  std::vector<TsdbQuery> q = TsdbQueries({0, 86'400'000});
  bool step_used = false;
  for (const TsdbQuery& one : q) step_used |= one.promql.find("[86400s:432s]") != std::string::npos;
  EXPECT_TRUE(step_used);
}

TEST(TsdbQueriesTest, EveryQueryNamesAnSvcmapMetric) {
  std::vector<TsdbQuery> q = TsdbQueries({0, 3'600'000});
  EXPECT_GE(q.size(), 10u);
  for (const TsdbQuery& t : q) EXPECT_NE(t.promql.find("svcmap_"), std::string::npos) << t.promql;
  EXPECT_NE(q[1].promql.find("[3600s]"), std::string::npos) << q[1].promql;
}

}  // namespace
}  // namespace svcmap::topology
