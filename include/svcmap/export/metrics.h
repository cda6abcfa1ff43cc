#ifndef SVCMAP_EXPORT_METRICS_H_
#define SVCMAP_EXPORT_METRICS_H_

// The seed's three tables as Prometheus metric families (names and labels
// in docs/metrics.md), plus the agent's own health. The counters come from
// CounterLedgers fed frame by frame (Account), so none of them ever goes
// down within a series' life; prometheus-cpp's TextSerializer writes them
// (and escapes label values, whatever bytes a comm holds).

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "prometheus/metric_family.h"
#include "svcmap/export/counter_ledger.h"
#include "svcmap/flow/collector.h"
#include "svcmap/flow/service_view.h"

namespace svcmap::exporter {

struct AgentHealth {
  std::string backend;
  std::map<std::string, uint64_t> events;  // by type: listen, connect, accept, close
  uint64_t ringbuf_drops = 0;              // kernel ring buffer full
  uint64_t socks_full = 0;                 // kernel socket table full
  uint64_t track_errors = 0;               // kernel socket table update failed (not full)
  uint64_t recursion_misses = 0;           // kernel skipped a program run: recursion on a CPU
  uint64_t decode_errors = 0;
  uint64_t scan_errors = 0;
  uint64_t traffic_overflow = 0;           // per-connection rows over the flow table's cap
  uint64_t flows = 0;                      // flows tracked
  uint64_t expired_flows = 0;              // idle longer than --flow-idle-timeout
  // How the collector accounted for what it was told (flow::CollectorCounts).
  std::vector<std::pair<std::string, uint64_t>> accounting;
  // Entries in each long-lived table, by table name.
  std::vector<std::pair<std::string, uint64_t>> tables;
  bool remote_write = false;               // the fields below mean something
  uint64_t rw_sent_samples = 0;
  uint64_t rw_dropped_samples = 0;         // backlog over its bound
  uint64_t rw_rejected_samples = 0;        // the store answered 4xx
  uint64_t rw_failed_requests = 0;         // retried
  uint64_t rw_pending_samples = 0;
};

struct MetricsOptions {
  size_t max_series = 100000;  // connection + traffic series, together
  std::string machine;         // the host name, on the service series
};

// A latency histogram as ledger values: its buckets (not cumulative), then
// its count and its sum in us; each only grows.
inline constexpr size_t kHistogramValues = flow::kLatencyBoundsUs.size() + 3;

// The connection ledger's values, in this order.
enum ConnValue : size_t {
  kConnSent,
  kConnReceived,
  kConnConnections,
  kConnFailed,
  kConnRefused,
  kConnTimedOut,
  kConnError,
  kConnResetsReceived,
  kConnResetsSent,
  kConnRetransmits,
  kConnRtt,  // a histogram, then the connect latency's
  kConnConnect = kConnRtt + kHistogramValues,
  kConnValues = kConnConnect + kHistogramValues,
};

// The accepted side's, per service, port and peer address.
enum AcceptedValue : size_t {
  kAccConnections,
  kAccResetsReceived,
  kAccResetsSent,
  kAccRetransmits,
  kAccRtt,
  kAccValues = kAccRtt + kHistogramValues,
};

// The exported counters' state, across frames.
struct Ledgers {
  // ConnValue; by SERVICE_CONNECTION labels.
  CounterLedger<kConnValues> connections;
  // AcceptedValue; by the service's labels, its port and the peer address.
  CounterLedger<kAccValues> accepted;
  // bytes both ways; by NETWORK_TRAFFIC labels.
  CounterLedger<1> traffic;
};

// One frame into the ledgers: `graph` as taken, `gone` what housekeeping
// removed right after taking it.
void Account(const flow::ServiceGraph& graph, const flow::Housekeeping& gone, uint64_t now_ns,
             Ledgers& ledgers);

struct Metrics {
  std::vector<prometheus::MetricFamily> families;
  // Per family and sample (parallel to `families`): when a counter's series
  // began, ms since the epoch; 0 for gauges. Remote write starts a new
  // series with a 0 at that moment, so increase() counts its first value.
  std::vector<std::vector<int64_t>> created_ms;
  uint64_t series_dropped = 0;  // over max_series, not exported
};

// `realtime_minus_boottime_ns` turns the ledgers' boot times into wall time.
Metrics BuildMetrics(const flow::ServiceGraph& graph, const Ledgers& ledgers,
                     const std::string& instance_ip, const AgentHealth& health,
                     const MetricsOptions& options, int64_t realtime_minus_boottime_ns = 0);

// The text exposition format (version 0.0.4).
std::string MetricsText(const Metrics& m);

}  // namespace svcmap::exporter

#endif  // SVCMAP_EXPORT_METRICS_H_
