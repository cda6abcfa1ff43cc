#include "svcmap/export/remote_write.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <limits>
#include <map>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"
#include "httplib.h"

namespace svcmap::exporter {
namespace {

prometheus::MetricFamily Counter(std::string name,
                                 std::vector<prometheus::ClientMetric::Label> labels, double v) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.type = prometheus::MetricType::Counter;
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.counter.value = v;
  f.metric.push_back(m);
  return f;
}

TEST(EncodeWriteRequest, RoundTripsWithSortedUniqueLabelsAndNoEmptyValues) {
  WriteBatch b = EncodeWriteRequest(
      {Counter("svcmap_connections_total",
               {{"src_service_name", "app"}, {"dst_port", "3306"}, {"instance", "own"},
                {"empty", ""}},
               7)},
      {{"job", "svcmap"}, {"instance", "10.0.0.1"}}, 1700000000123);
  EXPECT_EQ(b.samples, 1u);
  EXPECT_EQ(b.timestamp_ms, 1700000000123);
  absl::StatusOr<std::vector<DecodedSeries>> d = DecodeWriteRequest(b.body);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->size(), 1u);
  EXPECT_EQ((*d)[0].labels, (LabelPairs{{"__name__", "svcmap_connections_total"},
                                        {"dst_port", "3306"},
                                        {"instance", "own"},
                                        {"job", "svcmap"},
                                        {"src_service_name", "app"}}));
  ASSERT_EQ((*d)[0].samples.size(), 1u);
  EXPECT_EQ((*d)[0].samples[0], (std::pair<int64_t, double>{1700000000123, 7}));
}

TEST(EncodeWriteRequest, CountsEverySeriesAndSkipsSummaries) {
  prometheus::MetricFamily q;
  q.name = "q";
  q.type = prometheus::MetricType::Summary;
  q.metric.emplace_back();
  WriteBatch b = EncodeWriteRequest({Counter("a", {}, 1), Counter("b", {}, 2), q}, {}, 5);
  EXPECT_EQ(b.samples, 2u);
  EXPECT_EQ(DecodeWriteRequest(b.body)->size(), 2u);
}

// As a scrape stores one: cumulative _bucket series by le, _sum, _count.
TEST(EncodeWriteRequest, AHistogramIsItsBucketsSumAndCount) {
  prometheus::MetricFamily h;
  h.name = "svcmap_connection_rtt_seconds";
  h.type = prometheus::MetricType::Histogram;
  prometheus::ClientMetric m;
  m.label = {{"dst_port", "3306"}};
  m.histogram.sample_count = 3;
  m.histogram.sample_sum = 0.5;
  m.histogram.bucket = {{1, 0.001}, {3, std::numeric_limits<double>::infinity()}};
  h.metric.push_back(m);
  WriteBatch b = EncodeWriteRequest({h}, {}, 5);
  absl::StatusOr<std::vector<DecodedSeries>> d = DecodeWriteRequest(b.body);
  ASSERT_TRUE(d.ok());
  std::map<std::string, double> got;
  for (const DecodedSeries& s : *d) {
    std::string key;
    for (const auto& [n, v] : s.labels) key += n + "=" + v + ",";
    ASSERT_EQ(s.samples.size(), 1u);
    got[key] = s.samples[0].second;
  }
  EXPECT_EQ(got, (std::map<std::string, double>{
                     {"__name__=svcmap_connection_rtt_seconds_bucket,dst_port=3306,le=+Inf,", 3},
                     {"__name__=svcmap_connection_rtt_seconds_bucket,dst_port=3306,le=0.001,", 1},
                     {"__name__=svcmap_connection_rtt_seconds_count,dst_port=3306,", 3},
                     {"__name__=svcmap_connection_rtt_seconds_sum,dst_port=3306,", 0.5}}));
}

// A series that began after the previous push starts at 0, so that
// increase() over a window holding its start counts its first value.
TEST(EncodeWriteRequest, ANewCounterSeriesStartsAtZeroAtItsCreationTime) {
  prometheus::MetricFamily g;
  g.name = "g";
  g.type = prometheus::MetricType::Gauge;
  g.metric.emplace_back();
  g.metric.back().gauge.value = 3;
  std::vector<prometheus::MetricFamily> fams = {Counter("old", {}, 10), Counter("new", {}, 20),
                                                Counter("now", {}, 5), g};
  std::vector<std::vector<int64_t>> created = {{500}, {1500}, {2000}, {0}};
  WriteBatch b = EncodeWriteRequest(fams, {}, 2000, &created, /*since_ms=*/1000);
  EXPECT_EQ(b.samples, 6u);
  absl::StatusOr<std::vector<DecodedSeries>> d = DecodeWriteRequest(b.body);
  ASSERT_TRUE(d.ok());
  std::map<std::string, std::vector<std::pair<int64_t, double>>> by;
  for (const DecodedSeries& s : *d) by[s.labels[0].second] = s.samples;
  using Samples = std::vector<std::pair<int64_t, double>>;
  EXPECT_EQ(by["old"], (Samples{{2000, 10}}));  // pushed before: no zero again
  EXPECT_EQ(by["new"], (Samples{{1500, 0}, {2000, 20}}));
  EXPECT_EQ(by["now"], (Samples{{1999, 0}, {2000, 5}}));  // before its first value
  EXPECT_EQ(by["g"], (Samples{{2000, 3}}));  // gauges never
}

TEST(DecodeWriteRequest, RejectsGarbage) {
  EXPECT_FALSE(DecodeWriteRequest("not snappy at all").ok());
  EXPECT_FALSE(DecodeWriteRequest("").ok());
}

TEST(ParseEndpoint, SplitsAndRejects) {
  absl::StatusOr<Endpoint> e = ParseEndpoint("http://10.0.0.9:8428/api/v1/write");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->scheme_host_port, "http://10.0.0.9:8428");
  EXPECT_EQ(e->path, "/api/v1/write");
  e = ParseEndpoint("https://[fd00::1]:9090/api/v1/write");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->scheme_host_port, "https://[fd00::1]:9090");
  EXPECT_EQ(ParseEndpoint("http://vm")->path, "/");
  for (const char* bad : {"vm:8428/api/v1/write", "ftp://vm/x", "http://", "http://vm:0/x",
                          "http://vm:99999/x", "http://vm:port/x", "http://u:p@vm/x", "http://:80/"})
    EXPECT_FALSE(ParseEndpoint(bad).ok()) << bad;
}

// A store on loopback whose answer the test sets; it records what arrived.
class FakeStore {
 public:
  FakeStore() {
    server_.Post("/write", [this](const httplib::Request& req, httplib::Response& res) {
      std::unique_lock<std::mutex> lock(mu_);
      ++requests_;
      // Held here while the gate is shut: the request is on the wire.
      cv_.notify_all();
      cv_.wait(lock, [&] { return gate_open_; });
      res.status = status_;
      if (status_ / 100 == 2) {
        absl::StatusOr<std::vector<DecodedSeries>> d = DecodeWriteRequest(req.body);
        if (d.ok() && !d->empty()) timestamps_.push_back((*d)[0].samples[0].first);
        encoding_ok_ = encoding_ok_ && req.get_header_value("Content-Encoding") == "snappy";
      }
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FakeStore() {
    set_gate(true);
    server_.stop();
    thread_.join();
  }
  void set_status(int s) {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = s;
  }
  // While shut, requests are taken but not answered.
  void set_gate(bool open) {
    std::lock_guard<std::mutex> lock(mu_);
    gate_open_ = open;
    cv_.notify_all();
  }
  void WaitForRequests(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return requests_ >= n; });
  }
  std::vector<int64_t> timestamps() {
    std::lock_guard<std::mutex> lock(mu_);
    return timestamps_;
  }
  int requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  bool encoding_ok() {
    std::lock_guard<std::mutex> lock(mu_);
    return encoding_ok_;
  }
  Endpoint endpoint() const { return {"http://127.0.0.1:" + std::to_string(port_), "/write"}; }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool gate_open_ = true;
  int status_ = 204;
  int requests_ = 0;
  bool encoding_ok_ = true;
  std::vector<int64_t> timestamps_;
};

WriteBatch Batch(int64_t ts, size_t series) {
  std::vector<prometheus::MetricFamily> fams;
  for (size_t i = 0; i < series; ++i) fams.push_back(Counter("c" + std::to_string(i), {}, 1));
  return EncodeWriteRequest(fams, {}, ts);
}

template <typename F>
bool Eventually(F f) {
  for (int i = 0; i < 200; ++i) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

RemoteWriteOptions Fast(const Endpoint& e) {
  RemoteWriteOptions o;
  o.endpoint = e;
  o.min_backoff = absl::Milliseconds(10);
  o.max_backoff = absl::Milliseconds(40);
  return o;
}

TEST(RemoteWriter, RetriesThrough503AndDeliversInOrder) {
  FakeStore store;
  store.set_status(503);
  RemoteWriter w(Fast(store.endpoint()));
  for (int64_t ts = 1; ts <= 5; ++ts) w.Enqueue(Batch(ts, 3));
  ASSERT_TRUE(Eventually([&] { return store.requests() >= 3; }));
  store.set_status(204);
  ASSERT_TRUE(Eventually([&] { return w.Stats().sent_samples == 15; }));
  EXPECT_EQ(store.timestamps(), (std::vector<int64_t>{1, 2, 3, 4, 5}));
  RemoteWriteStats s = w.Stats();
  EXPECT_GE(s.failed_requests, 3u);
  EXPECT_EQ(s.dropped_samples, 0u);
  EXPECT_EQ(s.pending_samples, 0u);
  EXPECT_TRUE(s.last_error.empty());
  EXPECT_TRUE(store.encoding_ok());
}

TEST(RemoteWriter, BacklogOverItsBoundDropsTheOldestAndCountsThem) {
  FakeStore store;
  store.set_status(500);
  RemoteWriteOptions o = Fast(store.endpoint());
  o.max_pending_samples = 2000;
  RemoteWriter w(o);
  // Batch 1 goes on the wire and is held there; 2..5 pile up behind it.
  store.set_gate(false);
  w.Enqueue(Batch(1, 1000));
  store.WaitForRequests(1);
  for (int64_t ts = 2; ts <= 5; ++ts) w.Enqueue(Batch(ts, 1000));
  // The oldest that are not on the wire go: 2, 3 and 4.
  EXPECT_EQ(w.Stats().dropped_samples, 3000u);
  EXPECT_EQ(w.Stats().pending_samples, 2000u);
  store.set_status(200);
  store.set_gate(true);
  ASSERT_TRUE(Eventually([&] { return w.Stats().sent_samples == 2000; }));
  EXPECT_EQ(store.timestamps(), (std::vector<int64_t>{1, 5}));
  RemoteWriteStats s = w.Stats();
  EXPECT_EQ(s.sent_samples + s.dropped_samples, 5000u) << "every sample counted once";
  EXPECT_EQ(s.pending_samples, 0u);
}

TEST(RemoteWriter, BacklogDropsTheOldestWhileTheStoreIsAway) {
  RemoteWriteOptions o = Fast({"http://127.0.0.1:1", "/write"});  // nothing listens on port 1
  o.max_pending_samples = 2000;
  RemoteWriter w(o);
  for (int64_t ts = 1; ts <= 5; ++ts) w.Enqueue(Batch(ts, 1000));
  RemoteWriteStats s = w.Stats();
  // Whichever batch is on the wire at the moment stays; the bound holds.
  EXPECT_EQ(s.dropped_samples, 3000u);
  EXPECT_EQ(s.pending_samples, 2000u);
}

TEST(RemoteWriter, A400IsNotRetried) {
  FakeStore store;
  store.set_status(400);
  RemoteWriter w(Fast(store.endpoint()));
  w.Enqueue(Batch(1, 4));
  ASSERT_TRUE(Eventually([&] { return w.Stats().rejected_samples == 4; }));
  store.set_status(204);
  w.Enqueue(Batch(2, 4));
  ASSERT_TRUE(Eventually([&] { return w.Stats().sent_samples == 4; }));
  EXPECT_EQ(store.timestamps(), (std::vector<int64_t>{2}));
  EXPECT_EQ(store.requests(), 2);
}

TEST(RemoteWriter, A429IsRetriedNotRejected) {
  FakeStore store;
  store.set_status(429);
  RemoteWriter w(Fast(store.endpoint()));
  w.Enqueue(Batch(1, 4));
  ASSERT_TRUE(Eventually([&] { return store.requests() >= 3; }));
  EXPECT_EQ(w.Stats().rejected_samples, 0u);
  EXPECT_NE(w.Stats().failing_since, absl::InfinitePast());
  store.set_status(204);
  ASSERT_TRUE(Eventually([&] { return w.Stats().sent_samples == 4; }));
  EXPECT_EQ(store.timestamps(), (std::vector<int64_t>{1}));
  EXPECT_EQ(w.Stats().failing_since, absl::InfinitePast());
}

// A store that takes the connection and never answers: the request times
// out, is retried, and nothing within the backlog is lost once it answers.
TEST(RemoteWriter, AStoreThatNeverAnswersTimesOutAndLosesNothingWithinTheBacklog) {
  FakeStore store;
  store.set_gate(false);
  RemoteWriteOptions o = Fast(store.endpoint());
  o.timeout = absl::Milliseconds(200);
  RemoteWriter w(o);
  for (int64_t ts = 1; ts <= 4; ++ts) w.Enqueue(Batch(ts, 2));
  ASSERT_TRUE(Eventually([&] { return w.Stats().failed_requests >= 2; }));
  EXPECT_EQ(w.Stats().dropped_samples, 0u);
  EXPECT_EQ(w.Stats().pending_samples, 8u);
  store.set_gate(true);
  ASSERT_TRUE(Eventually([&] { return w.Stats().pending_samples == 0; }));
  // Timed-out attempts may have reached the store too; every push did.
  std::vector<int64_t> ts = store.timestamps();
  for (int64_t want = 1; want <= 4; ++want)
    EXPECT_NE(std::find(ts.begin(), ts.end(), want), ts.end()) << want;
  EXPECT_EQ(w.Stats().dropped_samples, 0u);
}

TEST(RemoteWriter, FailingLongerThanTheBacklogHoldsIsReported) {
  RemoteWriteOptions o = Fast({"http://127.0.0.1:1", "/write"});
  o.max_pending_samples = 2000;
  RemoteWriter w(o);
  w.Enqueue(Batch(1, 1000));
  ASSERT_TRUE(Eventually([&] { return w.Stats().failed_requests >= 1; }));
  EXPECT_EQ(w.Stats().dropped_while_failing, 0u);
  for (int64_t ts = 2; ts <= 4; ++ts) w.Enqueue(Batch(ts, 1000));
  RemoteWriteStats s = w.Stats();
  EXPECT_NE(s.failing_since, absl::InfinitePast());
  EXPECT_GE(s.dropped_while_failing, 1000u);
}

TEST(RemoteWriter, ShutdownCountsWhatNeverArrivedAsDropped) {
  RemoteWriteOptions o = Fast({"http://127.0.0.1:1", "/write"});  // nothing listens on port 1
  RemoteWriter w(o);
  w.Enqueue(Batch(1, 10));
  w.Shutdown(absl::Milliseconds(100));
  RemoteWriteStats s = w.Stats();
  EXPECT_EQ(s.dropped_samples, 10u);
  EXPECT_EQ(s.pending_samples, 0u);
  EXPECT_FALSE(s.last_error.empty());
  w.Enqueue(Batch(2, 5));  // after shutdown: counted, never blocks
  EXPECT_EQ(w.Stats().dropped_samples, 15u);
}

}  // namespace
}  // namespace svcmap::exporter
