#include "svcmap/export/metrics.h"

#include <algorithm>
#include <array>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "fmt/format.h"
#include "prometheus/text_serializer.h"
#include "svcmap/base/build_info.h"
#include "svcmap/export/json_escape.h"

namespace svcmap::exporter {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

ClientMetric Sample(std::vector<ClientMetric::Label> labels, double value, MetricType type) {
  // A comm or cgroup path is arbitrary bytes; the exposition format and
  // remote write's protobuf strings are UTF-8.
  for (ClientMetric::Label& l : labels) l.value = ToValidUtf8(l.value);
  ClientMetric m;
  m.label = std::move(labels);
  if (type == MetricType::Counter)
    m.counter.value = value;
  else
    m.gauge.value = value;
  return m;
}

// A histogram from ledger values (AddHistogram's layout), in seconds.
template <size_t N>
ClientMetric HistogramSample(std::vector<ClientMetric::Label> labels,
                             const std::array<uint64_t, N>& v, size_t at) {
  for (ClientMetric::Label& l : labels) l.value = ToValidUtf8(l.value);
  ClientMetric m;
  m.label = std::move(labels);
  constexpr size_t kBuckets = flow::kLatencyBoundsUs.size() + 1;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    cumulative += v[at + i];
    ClientMetric::Bucket b;
    b.cumulative_count = cumulative;
    b.upper_bound = i < flow::kLatencyBoundsUs.size() ? flow::kLatencyBoundsUs[i] / 1e6
                                                      : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back(b);
  }
  m.histogram.sample_count = v[at + kBuckets];
  m.histogram.sample_sum = static_cast<double>(v[at + kBuckets + 1]) / 1e6;
  return m;
}

// A family and, per sample, when its series began.
struct CounterFamily {
  MetricFamily family;
  std::vector<int64_t> created;
  void Add(ClientMetric m, int64_t created_ms) {
    family.metric.push_back(std::move(m));
    created.push_back(created_ms);
  }
};

std::vector<ClientMetric::Label> With(std::vector<ClientMetric::Label> labels, std::string name,
                                      std::string value) {
  labels.push_back({std::move(name), std::move(value)});
  return labels;
}

template <size_t N>
void AddHistogram(const flow::LatencyHistogram& h, size_t at, std::array<uint64_t, N>& v) {
  for (size_t i = 0; i < h.buckets.size(); ++i) v[at + i] += h.buckets[i];
  v[at + h.buckets.size()] += h.count;
  v[at + h.buckets.size() + 1] += h.sum_us;
}

}  // namespace

void Account(const flow::ServiceGraph& graph, const flow::Housekeeping& gone, uint64_t now_ns,
             Ledgers& ledgers) {
  ledgers.connections.BeginRound();
  ledgers.accepted.BeginRound();
  ledgers.traffic.BeginRound();
  // A group's processes (and its exited ones, pid 0) together: the group
  // is what the flow table conserves.
  struct Sum {
    CounterLedger<kConnValues>::SeriesKey series;
    CounterLedger<kConnValues>::Values v{};
    bool live = false;
  };
  absl::flat_hash_map<std::string, Sum> by_group;
  for (const flow::ConnectionRow& c : graph.connections) {
    Sum& sum = by_group[c.group];
    if (sum.series.empty())
      sum.series = {c.src_instance_id,
                    c.src_service_name,
                    c.dst_ip.ToString(),
                    std::to_string(c.dst_port),
                    c.actual_dst_port ? c.actual_dst_ip.ToString() : "",
                    c.actual_dst_port ? std::to_string(c.actual_dst_port) : ""};
    const flow::FlowHealth& h = c.stats.health;
    sum.v[kConnSent] += c.stats.bytes_sent;
    sum.v[kConnReceived] += c.stats.bytes_received;
    sum.v[kConnConnections] += c.stats.connections;
    sum.v[kConnFailed] += c.stats.failed;
    sum.v[kConnRefused] += h.refused;
    sum.v[kConnTimedOut] += h.timed_out;
    sum.v[kConnError] += h.error;
    sum.v[kConnResetsReceived] += h.resets_received;
    sum.v[kConnResetsSent] += h.resets_sent;
    sum.v[kConnRetransmits] += h.retransmits;
    AddHistogram(h.rtt, kConnRtt, sum.v);
    AddHistogram(h.connect, kConnConnect, sum.v);
    sum.live = sum.live || c.stats.active > 0;
  }
  for (const auto& [id, sum] : by_group)
    ledgers.connections.Observe(id, sum.series, sum.v, sum.live, now_ns);

  struct AcceptedSum {
    CounterLedger<kAccValues>::SeriesKey series;
    CounterLedger<kAccValues>::Values v{};
    bool live = false;
  };
  absl::flat_hash_map<std::string, AcceptedSum> accepted;
  for (const flow::ServiceRow& s : graph.services) {
    for (const flow::AcceptedRow& a : s.accepted) {
      AcceptedSum& sum = accepted[a.group];
      if (sum.series.empty())
        sum.series = {s.instance_id, s.name, std::to_string(a.local_port), a.peer_ip.ToString()};
      const flow::FlowHealth& h = a.stats.health;
      sum.v[kAccConnections] += a.stats.connections;
      sum.v[kAccResetsReceived] += h.resets_received;
      sum.v[kAccResetsSent] += h.resets_sent;
      sum.v[kAccRetransmits] += h.retransmits;
      AddHistogram(h.rtt, kAccRtt, sum.v);
      sum.live = sum.live || a.stats.active > 0;
    }
  }
  for (const auto& [id, sum] : accepted)
    ledgers.accepted.Observe(id, sum.series, sum.v, sum.live, now_ns);
  for (const flow::TrafficSeriesRow& t : graph.traffic_series)
    ledgers.traffic.Observe(t.id, {t.src_ip.ToString(), t.dst_ip.ToString(), std::to_string(t.dst_port)},
                            {t.bytes}, t.live > 0, now_ns);
  for (const std::string& id : gone.expired_groups) {
    ledgers.connections.Forget(id);
    ledgers.accepted.Forget(id);
  }
  for (const std::string& id : gone.expired_traffic) ledgers.traffic.Forget(id);
  ledgers.connections.EndRound();
  ledgers.accepted.EndRound();
  ledgers.traffic.EndRound();
}

namespace {

// A ledger's series in label order, so that the same ones are exported
// (and capped) every time.
template <size_t N>
std::vector<const typename absl::node_hash_map<std::vector<std::string>,
                                               typename CounterLedger<N>::Series>::value_type*>
Sorted(const CounterLedger<N>& ledger) {
  std::vector<const typename absl::node_hash_map<std::vector<std::string>,
                                                 typename CounterLedger<N>::Series>::value_type*>
      out;
  out.reserve(ledger.series().size());
  for (const auto& kv : ledger.series()) out.push_back(&kv);
  std::sort(out.begin(), out.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
  return out;
}

}  // namespace

Metrics BuildMetrics(const flow::ServiceGraph& graph, const Ledgers& ledgers,
                     const std::string& instance_ip, const AgentHealth& health,
                     const MetricsOptions& options, int64_t realtime_minus_boottime_ns) {
  Metrics out;
  size_t series = 0;
  auto room = [&] {
    if (series < options.max_series) {
      ++series;
      return true;
    }
    ++out.series_dropped;
    return false;
  };
  auto wall_ms = [&](uint64_t boot_ns) {
    return (static_cast<int64_t>(boot_ns) + realtime_minus_boottime_ns) / 1'000'000;
  };

  // SERVICE, and one series per listening port for the ip:port join.
  MetricFamily info = Family("svcmap_service_info",
                             "A service on this machine (SERVICE); always 1.", MetricType::Gauge);
  MetricFamily ports = Family(
      "svcmap_service_listen_port_info",
      "A port a service listens on; join connections on instance_ip and port.", MetricType::Gauge);
  for (const flow::ServiceRow& s : graph.services) {
    std::string list;
    for (uint16_t p : s.listen_ports) list += (list.empty() ? "" : ",") + std::to_string(p);
    const std::string& ip = s.instance_ip.empty() ? instance_ip : s.instance_ip;
    info.metric.push_back(Sample({{"instance_id", s.instance_id},
                                  {"instance_ip", ip},
                                  {"name", s.name},
                                  {"pid", std::to_string(s.pids.empty() ? 0 : s.pids.front())},
                                  {"listen_ports", list}},
                                 1, MetricType::Gauge));
    // The host name, for the topology's machine boxes.
    if (!options.machine.empty())
      info.metric.back().label.push_back({"machine", ToValidUtf8(options.machine)});
    for (uint16_t p : s.listen_ports) {
      ports.metric.push_back(Sample({{"instance_id", s.instance_id},
                                     {"instance_ip", ip},
                                     {"name", s.name},
                                     {"port", std::to_string(p)}},
                                    1, MetricType::Gauge));
      if (!options.machine.empty())
        ports.metric.back().label.push_back({"machine", ToValidUtf8(options.machine)});
    }
  }

  // SERVICE_CONNECTION: outbound flows, by destination ip:port (never the
  // client's ephemeral port); several processes of one service to one
  // destination are one series.
  MetricFamily sent = Family("svcmap_connection_sent_bytes_total",
                             "Bytes a service sent to a destination (SERVICE_CONNECTION).",
                             MetricType::Counter);
  MetricFamily received = Family("svcmap_connection_received_bytes_total",
                                 "Bytes a service received from a destination.",
                                 MetricType::Counter);
  MetricFamily conns = Family("svcmap_connections_total",
                              "Connections a service opened to a destination.",
                              MetricType::Counter);
  MetricFamily failed = Family("svcmap_connection_failures_total",
                               "Connection attempts that never established.", MetricType::Counter);
  // Per edge health (docs/metrics.md): the accepted side's series carry the
  // service's labels, its port and the peer's address instead.
  CounterFamily attempts{Family("svcmap_connection_attempts_total",
                                "Connection attempts to a destination, by outcome: established, "
                                "refused (a reset answered the SYN), timed_out (SYN retries "
                                "exhausted), error (any other errno, or given up).",
                                MetricType::Counter)};
  CounterFamily resets{Family("svcmap_connection_resets_total",
                              "Established connections that a reset ended, by direction "
                              "(received, sent).",
                              MetricType::Counter)};
  CounterFamily retransmits{Family("svcmap_connection_retransmits_total",
                                   "Segments TCP retransmitted on closed connections "
                                   "(tcp_info's total_retrans), SYNs included.",
                                   MetricType::Counter)};
  CounterFamily rtt{Family("svcmap_connection_rtt_seconds",
                           "Each closed connection's smoothed round-trip time.",
                           MetricType::Histogram)};
  CounterFamily connect{Family("svcmap_connection_connect_seconds",
                               "SYN sent to ESTABLISHED, per connection.", MetricType::Histogram)};
  std::vector<int64_t> conn_created;
  for (const auto* kv : Sorted(ledgers.connections)) {
    if (!room()) continue;
    const std::vector<std::string>& k = kv->first;
    const auto& total = kv->second.total;
    std::vector<ClientMetric::Label> labels = {{"src_instance_id", k[0]},
                                               {"src_service_name", k[1]},
                                               {"dst_ip", k[2]},
                                               {"dst_port", k[3]}};
    // Behind a DNAT: where it really went, for the topology join.
    if (!k[5].empty()) {
      labels.push_back({"actual_dst_ip", k[4]});
      labels.push_back({"actual_dst_port", k[5]});
    }
    sent.metric.push_back(Sample(labels, static_cast<double>(total[0]), MetricType::Counter));
    received.metric.push_back(Sample(labels, static_cast<double>(total[1]), MetricType::Counter));
    conns.metric.push_back(Sample(labels, static_cast<double>(total[2]), MetricType::Counter));
    failed.metric.push_back(Sample(labels, static_cast<double>(total[3]), MetricType::Counter));
    const int64_t created = wall_ms(kv->second.created_ns);
    conn_created.push_back(created);
    for (const auto& [outcome, at] : {std::pair<const char*, size_t>{"established", kConnConnections},
                                      {"refused", kConnRefused},
                                      {"timed_out", kConnTimedOut},
                                      {"error", kConnError}})
      attempts.Add(Sample(With(labels, "outcome", outcome), static_cast<double>(total[at]),
                          MetricType::Counter),
                   created);
    resets.Add(Sample(With(labels, "direction", "received"),
                      static_cast<double>(total[kConnResetsReceived]), MetricType::Counter),
               created);
    resets.Add(Sample(With(labels, "direction", "sent"), static_cast<double>(total[kConnResetsSent]),
                      MetricType::Counter),
               created);
    retransmits.Add(
        Sample(labels, static_cast<double>(total[kConnRetransmits]), MetricType::Counter), created);
    rtt.Add(HistogramSample(labels, total, kConnRtt), created);
    connect.Add(HistogramSample(labels, total, kConnConnect), created);
  }
  for (const auto* kv : Sorted(ledgers.accepted)) {
    if (!room()) continue;
    const std::vector<std::string>& k = kv->first;
    const auto& total = kv->second.total;
    std::vector<ClientMetric::Label> labels = {
        {"instance_id", k[0]}, {"name", k[1]}, {"port", k[2]}, {"peer_ip", k[3]}};
    const int64_t created = wall_ms(kv->second.created_ns);
    resets.Add(Sample(With(labels, "direction", "received"),
                      static_cast<double>(total[kAccResetsReceived]), MetricType::Counter),
               created);
    resets.Add(Sample(With(labels, "direction", "sent"), static_cast<double>(total[kAccResetsSent]),
                      MetricType::Counter),
               created);
    retransmits.Add(
        Sample(labels, static_cast<double>(total[kAccRetransmits]), MetricType::Counter), created);
    rtt.Add(HistogramSample(labels, total, kAccRtt), created);
  }

  // NETWORK_TRAFFIC, without the source port.
  MetricFamily traffic = Family("svcmap_traffic_bytes_total",
                                "Bytes between two addresses, to a destination port, both "
                                "directions (NETWORK_TRAFFIC).",
                                MetricType::Counter);
  std::vector<int64_t> traffic_created;
  for (const auto* kv : Sorted(ledgers.traffic)) {
    if (!room()) continue;
    const std::vector<std::string>& k = kv->first;
    traffic.metric.push_back(Sample({{"src_ip", k[0]}, {"dst_ip", k[1]}, {"dst_port", k[2]}},
                                    static_cast<double>(kv->second.total[0]), MetricType::Counter));
    traffic_created.push_back(wall_ms(kv->second.created_ns));
  }

  // The agent itself.
  MetricFamily backend = Family("svcmap_backend_info", "The capture backend in use; always 1.",
                                MetricType::Gauge);
  backend.metric.push_back(Sample({{"backend", health.backend}}, 1, MetricType::Gauge));
  // The node_exporter convention: a fleet's versions are one query away
  // (count by (version) (svcmap_build_info)).
  MetricFamily build = Family("svcmap_build_info",
                              "The svcmap release and git revision this agent runs; always 1.",
                              MetricType::Gauge);
  build.metric.push_back(Sample({{"version", std::string(base::Version())},
                                 {"revision", std::string(base::Revision())}},
                                1, MetricType::Gauge));
  MetricFamily events = Family("svcmap_events_total", "Socket lifecycle events, by type.",
                               MetricType::Counter);
  for (const auto& [type, n] : health.events)
    events.metric.push_back(Sample({{"type", type}}, static_cast<double>(n), MetricType::Counter));
  MetricFamily drops = Family("svcmap_drops_total", "What could not be counted, by stage.",
                              MetricType::Counter);
  for (const auto& [stage, n] :
       std::vector<std::pair<std::string, uint64_t>>{{"kernel_ringbuf", health.ringbuf_drops},
                                                     {"kernel_socket_table", health.socks_full},
                                                     {"kernel_socket_track", health.track_errors},
                                                     {"kernel_recursion", health.recursion_misses},
                                                     {"decode", health.decode_errors},
                                                     {"user_traffic_table", health.traffic_overflow},
                                                     {"scan", health.scan_errors}})
    drops.metric.push_back(Sample({{"stage", stage}}, static_cast<double>(n), MetricType::Counter));
  if (health.remote_write)
    drops.metric.push_back(
        Sample({{"stage", "export_remote_write"}},
               static_cast<double>(health.rw_dropped_samples + health.rw_rejected_samples),
               MetricType::Counter));
  MetricFamily capped = Family("svcmap_export_series_dropped",
                               "Connection and traffic series not exported now: over --max-series.",
                               MetricType::Gauge);
  capped.metric.push_back(Sample({}, static_cast<double>(out.series_dropped), MetricType::Gauge));
  MetricFamily accounting = Family(
      "svcmap_accounting_total",
      "How the flow tables accounted for what they were told, by event (docs/metrics.md).",
      MetricType::Counter);
  for (const auto& [event, n] : health.accounting)
    accounting.metric.push_back(
        Sample({{"event", event}}, static_cast<double>(n), MetricType::Counter));
  MetricFamily tables = Family("svcmap_table_entries",
                               "Entries in each of the agent's long-lived tables.",
                               MetricType::Gauge);
  for (const auto& [table, n] : health.tables)
    tables.metric.push_back(Sample({{"table", table}}, static_cast<double>(n), MetricType::Gauge));
  MetricFamily flows = Family("svcmap_flows", "Flows tracked.", MetricType::Gauge);
  flows.metric.push_back(Sample({}, static_cast<double>(health.flows), MetricType::Gauge));
  MetricFamily expired = Family("svcmap_flows_expired_total",
                                "Flow groups removed after --flow-idle-timeout without traffic or "
                                "open connections; their series end when no other flow feeds them.",
                                MetricType::Counter);
  expired.metric.push_back(
      Sample({}, static_cast<double>(health.expired_flows), MetricType::Counter));

  auto add = [&](MetricFamily& f, std::vector<int64_t> created) {
    if (created.empty()) created.assign(f.metric.size(), 0);
    out.families.push_back(std::move(f));
    out.created_ms.push_back(std::move(created));
  };
  add(info, {});
  add(ports, {});
  add(sent, conn_created);
  add(received, conn_created);
  add(conns, conn_created);
  add(failed, conn_created);
  for (CounterFamily* f : {&attempts, &resets, &retransmits, &rtt, &connect})
    add(f->family, std::move(f->created));
  add(traffic, std::move(traffic_created));
  for (MetricFamily* f : {&backend, &build, &events, &drops, &capped, &accounting, &tables, &flows, &expired})
    add(*f, {});
  if (health.remote_write) {
    MetricFamily samples = Family("svcmap_remote_write_samples_total",
                                  "Samples pushed by remote write, by outcome: sent, dropped "
                                  "(backlog over its bound) or rejected (4xx from the store).",
                                  MetricType::Counter);
    for (const auto& [result, n] : std::vector<std::pair<std::string, uint64_t>>{
             {"sent", health.rw_sent_samples},
             {"dropped", health.rw_dropped_samples},
             {"rejected", health.rw_rejected_samples}})
      samples.metric.push_back(
          Sample({{"result", result}}, static_cast<double>(n), MetricType::Counter));
    MetricFamily failures = Family("svcmap_remote_write_failed_requests_total",
                                   "Remote-write requests that failed and will be retried.",
                                   MetricType::Counter);
    failures.metric.push_back(
        Sample({}, static_cast<double>(health.rw_failed_requests), MetricType::Counter));
    MetricFamily pending = Family("svcmap_remote_write_pending_samples",
                                  "Samples waiting for the store.", MetricType::Gauge);
    pending.metric.push_back(
        Sample({}, static_cast<double>(health.rw_pending_samples), MetricType::Gauge));
    add(samples, {});
    add(failures, {});
    add(pending, {});
  }
  return out;
}

std::string MetricsText(const Metrics& m) {
  return prometheus::TextSerializer().Serialize(m.families);
}

}  // namespace svcmap::exporter
