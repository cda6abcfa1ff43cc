#ifndef SVCMAP_EXPORT_METRICS_H_
#define SVCMAP_EXPORT_METRICS_H_

// The seed's three tables as Prometheus metric families (names and labels
// in docs/metrics.md), plus the agent's own health. Pure: a service graph
// in, families out; prometheus-cpp's TextSerializer writes them (and escapes
// label values, whatever bytes a comm holds).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "prometheus/metric_family.h"
#include "svcmap/flow/service_view.h"

namespace svcmap::exporter {

struct AgentHealth {
  std::string backend;
  std::map<std::string, uint64_t> events;  // by type: listen, connect, accept, close
  uint64_t ringbuf_drops = 0;              // kernel ring buffer full
  uint64_t socks_full = 0;                 // kernel socket table full
  uint64_t decode_errors = 0;
  uint64_t scan_errors = 0;
  uint64_t traffic_overflow = 0;           // per-connection rows over the flow table's cap
  uint64_t flows = 0;                      // flows tracked
  uint64_t expired_flows = 0;              // idle longer than --flow-idle-timeout
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

struct Metrics {
  std::vector<prometheus::MetricFamily> families;
  uint64_t series_dropped = 0;  // over max_series, not exported
};

Metrics BuildMetrics(const flow::ServiceGraph& graph, const std::string& instance_ip,
                     const AgentHealth& health, const MetricsOptions& options);

// The text exposition format (version 0.0.4).
std::string MetricsText(const Metrics& m);

}  // namespace svcmap::exporter

#endif  // SVCMAP_EXPORT_METRICS_H_
