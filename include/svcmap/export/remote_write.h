#ifndef SVCMAP_EXPORT_REMOTE_WRITE_H_
#define SVCMAP_EXPORT_REMOTE_WRITE_H_

// Prometheus remote write (protobuf + snappy over HTTP POST): the encoding,
// a pure function, and a sender that keeps a bounded backlog while the
// store is away and retries with backoff, so tracing never waits on it.

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "prometheus/metric_family.h"
#include "svcmap/net/http_client.h"

namespace svcmap::exporter {

using LabelPairs = std::vector<std::pair<std::string, std::string>>;

// One push: every series of one moment, encoded and compressed.
struct WriteBatch {
  std::string body;  // snappy(WriteRequest)
  size_t samples = 0;
  int64_t timestamp_ms = 0;
};

// Every counter and gauge of `families` as one sample at `timestamp_ms`,
// with `extra` labels added to each series (a series' own label wins).
// `created_ms`, if given, is parallel to `families` (Metrics::created_ms):
// a counter whose series began after `since_ms` (the previous push) gets a
// 0 at its start first, as Prometheus' own created-timestamp handling does,
// so that increase() and rate() count its first value too.
WriteBatch EncodeWriteRequest(const std::vector<prometheus::MetricFamily>& families,
                              const LabelPairs& extra, int64_t timestamp_ms,
                              const std::vector<std::vector<int64_t>>* created_ms = nullptr,
                              int64_t since_ms = 0);

// The inverse, for tests and tools: series as sorted labels ("__name__"
// included) and their (timestamp_ms, value) samples.
struct DecodedSeries {
  LabelPairs labels;
  std::vector<std::pair<int64_t, double>> samples;
};
absl::StatusOr<std::vector<DecodedSeries>> DecodeWriteRequest(std::string_view body);

// "http://host:port/path" -> the parts httplib wants. Only http and https.
struct Endpoint {
  std::string scheme_host_port;  // "http://10.0.0.9:8428"
  std::string path;              // "/api/v1/write"
};
absl::StatusOr<Endpoint> ParseEndpoint(const std::string& url);

struct RemoteWriteOptions {
  Endpoint endpoint;
  net::HttpClientConfig http;  // TLS, auth, headers (--remote-write-*)
  size_t max_pending_samples = 1'000'000;  // backlog bound; the oldest go first
  absl::Duration timeout = absl::Seconds(10);
  absl::Duration min_backoff = absl::Milliseconds(250);
  absl::Duration max_backoff = absl::Seconds(5);
};

struct RemoteWriteStats {
  uint64_t sent_samples = 0;
  uint64_t dropped_samples = 0;   // backlog over its bound, or left at shutdown
  uint64_t rejected_samples = 0;  // the store said 4xx: resending cannot help
  uint64_t failed_requests = 0;   // attempts that will be retried
  uint64_t pending_samples = 0;
  std::string last_error;
  // Since when every attempt has failed (InfinitePast: the last one
  // worked), and what the backlog dropped since: more than it can hold.
  absl::Time failing_since = absl::InfinitePast();
  uint64_t dropped_while_failing = 0;
};

class RemoteWriter {
 public:
  explicit RemoteWriter(RemoteWriteOptions options);
  ~RemoteWriter();  // Shutdown(0)
  RemoteWriter(const RemoteWriter&) = delete;
  RemoteWriter& operator=(const RemoteWriter&) = delete;

  // Never blocks on the network.
  void Enqueue(WriteBatch batch);
  // Tries to send what is pending for up to `grace`, then stops; what is
  // left counts as dropped.
  void Shutdown(absl::Duration grace);
  RemoteWriteStats Stats() const;

 private:
  void Run();

  const RemoteWriteOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<uint64_t, WriteBatch>> pending_;  // by sequence number
  uint64_t next_seq_ = 0;
  std::optional<uint64_t> in_flight_;  // the batch being sent, never dropped
  RemoteWriteStats stats_;
  bool stopping_ = false;
  absl::Time deadline_ = absl::InfiniteFuture();  // of the shutdown grace
  std::thread sender_;
};

}  // namespace svcmap::exporter

#endif  // SVCMAP_EXPORT_REMOTE_WRITE_H_
