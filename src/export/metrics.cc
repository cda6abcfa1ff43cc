#include "svcmap/export/metrics.h"

#include <utility>

#include "absl/container/flat_hash_map.h"
#include "fmt/format.h"
#include "prometheus/text_serializer.h"
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

}  // namespace

Metrics BuildMetrics(const flow::ServiceGraph& graph, const std::string& instance_ip,
                     const AgentHealth& health, const MetricsOptions& options) {
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
  // client's ephemeral port).
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
  // Several processes of one service to one destination: one series.
  struct Sum {
    uint64_t sent = 0, received = 0, connections = 0, failed = 0;
  };
  std::map<std::vector<std::string>, Sum> by_dest;
  for (const flow::ConnectionRow& c : graph.connections) {
    Sum& sum = by_dest[{c.src_instance_id, c.src_service_name, c.dst_ip.ToString(),
                        std::to_string(c.dst_port),
                        c.actual_dst_port ? c.actual_dst_ip.ToString() : "",
                        c.actual_dst_port ? std::to_string(c.actual_dst_port) : ""}];
    sum.sent += c.stats.bytes_sent;
    sum.received += c.stats.bytes_received;
    sum.connections += c.stats.connections;
    sum.failed += c.stats.failed;
  }
  for (const auto& [k, sum] : by_dest) {
    if (!room()) continue;
    std::vector<ClientMetric::Label> labels = {{"src_instance_id", k[0]},
                                               {"src_service_name", k[1]},
                                               {"dst_ip", k[2]},
                                               {"dst_port", k[3]}};
    // Behind a DNAT: where it really went, for the topology join.
    if (!k[5].empty()) {
      labels.push_back({"actual_dst_ip", k[4]});
      labels.push_back({"actual_dst_port", k[5]});
    }
    sent.metric.push_back(Sample(labels, static_cast<double>(sum.sent), MetricType::Counter));
    received.metric.push_back(
        Sample(labels, static_cast<double>(sum.received), MetricType::Counter));
    conns.metric.push_back(
        Sample(labels, static_cast<double>(sum.connections), MetricType::Counter));
    failed.metric.push_back(Sample(labels, static_cast<double>(sum.failed), MetricType::Counter));
  }

  // NETWORK_TRAFFIC, without the source port.
  MetricFamily traffic = Family("svcmap_traffic_bytes_total",
                                "Bytes between two addresses, to a destination port, both "
                                "directions (NETWORK_TRAFFIC).",
                                MetricType::Counter);
  std::map<std::tuple<std::string, std::string, uint16_t>, uint64_t> by_pair;
  for (const flow::TrafficRow& t : graph.traffic)
    by_pair[{t.src_ip.ToString(), t.dst_ip.ToString(), t.dst_port}] +=
        t.bytes_to_dst + t.bytes_to_src;
  for (const auto& [k, bytes] : by_pair) {
    if (!room()) continue;
    traffic.metric.push_back(Sample({{"src_ip", std::get<0>(k)},
                                     {"dst_ip", std::get<1>(k)},
                                     {"dst_port", std::to_string(std::get<2>(k))}},
                                    static_cast<double>(bytes), MetricType::Counter));
  }

  // The agent itself.
  MetricFamily backend = Family("svcmap_backend_info", "The capture backend in use; always 1.",
                                MetricType::Gauge);
  backend.metric.push_back(Sample({{"backend", health.backend}}, 1, MetricType::Gauge));
  MetricFamily events = Family("svcmap_events_total", "Socket lifecycle events, by type.",
                               MetricType::Counter);
  for (const auto& [type, n] : health.events)
    events.metric.push_back(Sample({{"type", type}}, static_cast<double>(n), MetricType::Counter));
  MetricFamily drops = Family("svcmap_drops_total", "What could not be counted, by stage.",
                              MetricType::Counter);
  for (const auto& [stage, n] :
       std::vector<std::pair<std::string, uint64_t>>{{"kernel_ringbuf", health.ringbuf_drops},
                                                     {"kernel_socket_table", health.socks_full},
                                                     {"decode", health.decode_errors},
                                                     {"user_traffic_table", health.traffic_overflow},
                                                     {"scan", health.scan_errors},
                                                     {"export_series_cap", out.series_dropped}})
    drops.metric.push_back(Sample({{"stage", stage}}, static_cast<double>(n), MetricType::Counter));
  if (health.remote_write)
    drops.metric.push_back(
        Sample({{"stage", "export_remote_write"}},
               static_cast<double>(health.rw_dropped_samples + health.rw_rejected_samples),
               MetricType::Counter));
  MetricFamily flows = Family("svcmap_flows", "Flows tracked.", MetricType::Gauge);
  flows.metric.push_back(Sample({}, static_cast<double>(health.flows), MetricType::Gauge));
  MetricFamily expired = Family("svcmap_flows_expired_total",
                                "Closed flows dropped after --flow-idle-timeout without traffic; "
                                "their series end.",
                                MetricType::Counter);
  expired.metric.push_back(
      Sample({}, static_cast<double>(health.expired_flows), MetricType::Counter));

  for (MetricFamily* f : {&info, &ports, &sent, &received, &conns, &failed, &traffic, &backend,
                          &events, &drops, &flows, &expired})
    out.families.push_back(std::move(*f));
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
    out.families.push_back(std::move(samples));
    out.families.push_back(std::move(failures));
    out.families.push_back(std::move(pending));
  }
  return out;
}

std::string MetricsText(const Metrics& m) {
  return prometheus::TextSerializer().Serialize(m.families);
}

}  // namespace svcmap::exporter
