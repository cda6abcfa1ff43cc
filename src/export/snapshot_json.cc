#include "svcmap/export/snapshot_json.h"

#include <ctime>

#include "fmt/format.h"

namespace svcmap::exporter {

std::string Clock::Rfc3339(uint64_t boot_ns) const {
  std::string out;
  AppendRfc3339(out, boot_ns);
  return out;
}

void Clock::AppendRfc3339(std::string& out, uint64_t boot_ns) const {
  if (boot_ns == 0) return;
  int64_t wall = static_cast<int64_t>(boot_ns) + realtime_minus_boottime_ns;
  time_t secs = static_cast<time_t>(wall / 1'000'000'000);
  int millis = static_cast<int>((wall % 1'000'000'000) / 1'000'000);
  thread_local time_t cached_secs = -1;
  thread_local char cached[32];
  if (secs != cached_secs) {
    std::tm tm{};
    gmtime_r(&secs, &tm);
    *fmt::format_to_n(cached, sizeof(cached) - 1, "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                      tm.tm_sec)
         .out = '\0';
    cached_secs = secs;
  }
  out.append(cached);
  char ms[6] = {'.', static_cast<char>('0' + millis / 100), static_cast<char>('0' + millis / 10 % 10),
                static_cast<char>('0' + millis % 10), 'Z', '\0'};
  out.append(ms);
}

namespace {

// The health fields of a connection or accepted row (names in
// docs/metrics.md); a mean with no sample is null, not 0.
void AddHealth(nlohmann::ordered_json& row, const flow::FlowStats& stats) {
  const flow::FlowHealth& h = stats.health;
  row["attempts_refused"] = h.refused;
  row["attempts_timed_out"] = h.timed_out;
  row["attempts_error"] = h.error;
  row["resets_received"] = h.resets_received;
  row["resets_sent"] = h.resets_sent;
  row["retransmits"] = h.retransmits;
  row["rtt_us"] = h.rtt.count ? nlohmann::ordered_json(h.rtt.mean_us()) : nullptr;
  row["rtt_min_us"] = h.rtt_min_us ? nlohmann::ordered_json(h.rtt_min_us) : nullptr;
  row["connect_latency_us"] =
      h.connect.count ? nlohmann::ordered_json(h.connect.mean_us()) : nullptr;
  // How many connections the means are over, so that readers can add rows.
  row["rtt_samples"] = h.rtt.count;
  row["connect_samples"] = h.connect.count;
}

nlohmann::ordered_json Document(const InstanceInfo& instance, const flow::ServiceGraph& graph,
                                const SnapshotStats& stats, const Completeness& completeness,
                                const Clock& clock, bool with_traffic) {
  using Json = nlohmann::ordered_json;
  Json doc;
  // Bumped whenever a field changes meaning or goes; readers refuse others.
  doc["schema_version"] = kSnapshotSchemaVersion;
  doc["instance"] = {{"hostname", instance.hostname},
                     {"machine", instance.machine.empty() ? instance.hostname : instance.machine},
                     {"instance_ip", instance.instance_ip},
                     {"netns", instance.netns},
                     {"netns_inode", instance.netns_inode},
                     {"backend", instance.backend},
                     {"duration_s", instance.duration_s}};
  // The health fields this backend cannot see (docs/metrics.md): a reader
  // tells them from a measured 0. The scanner sees a socket only while it
  // is open, so neither how a connect ended nor a reset, nor a connect's
  // duration; its failed connects all count as attempts_error.
  doc["instance"]["health_unseen"] =
      instance.backend == "procfs"
          ? Json::array({"attempts_refused", "attempts_timed_out", "resets_received",
                         "resets_sent", "connect_latency_us"})
          : Json::array();

  Json services = Json::array();
  for (const flow::ServiceRow& s : graph.services) {
    Json accepted = Json::array();
    for (const flow::AcceptedRow& a : s.accepted) {
      accepted.push_back({{"pid", a.pid},
                          {"comm", a.comm},
                          {"local_ip", a.local_ip.ToString()},
                          {"listen_port", a.local_port},
                          {"peer_ip", a.peer_ip.ToString()},
                          {"bytes_sent", a.stats.bytes_sent},
                          {"bytes_received", a.stats.bytes_received},
                          {"connections", a.stats.connections},
                          {"active", a.stats.active},
                          {"time", clock.Rfc3339(a.stats.last_seen_ns)}});
      AddHealth(accepted.back(), a.stats);
    }
    services.push_back({{"instance_id", s.instance_id},
                        {"instance_ip", s.instance_ip.empty() ? instance.instance_ip : s.instance_ip},
                        {"name", s.name},
                        {"pid", s.pids.empty() ? 0 : s.pids.front()},
                        {"pids", s.pids},
                        {"exe", s.exe},
                        {"name_source", s.name_source},
                        {"listen_ports", Json(std::vector<uint16_t>(
                                             s.listen_ports.begin(), s.listen_ports.end()))},
                        {"accepted", std::move(accepted)}});
  }
  doc["services"] = std::move(services);

  Json connections = Json::array();
  for (const flow::ConnectionRow& c : graph.connections) {
    Json actual = nullptr, actual_port = nullptr;
    if (c.actual_dst_port != 0) {
      actual = c.actual_dst_ip.ToString();
      actual_port = c.actual_dst_port;
    }
    connections.push_back({{"src_instance_id", c.src_instance_id},
                           {"src_service_name", c.src_service_name},
                           {"src_pid", c.src_pid},
                           {"src_comm", c.src_comm},
                           {"src_ip", c.src_ip.ToString()},
                           {"dst_ip", c.dst_ip.ToString()},
                           {"dst_port", c.dst_port},
                           {"actual_dst_ip", std::move(actual)},
                           {"actual_dst_port", std::move(actual_port)},
                           {"bytes", c.stats.bytes_sent + c.stats.bytes_received},
                           {"bytes_sent", c.stats.bytes_sent},
                           {"bytes_received", c.stats.bytes_received},
                           {"connections", c.stats.connections},
                           {"active", c.stats.active},
                           {"failed", c.stats.failed},
                           {"time", clock.Rfc3339(c.stats.last_seen_ns)}});
    AddHealth(connections.back(), c.stats);
  }
  doc["connections"] = std::move(connections);

  Json traffic = Json::array();
  for (const flow::TrafficRow& t : with_traffic ? graph.traffic : std::vector<flow::TrafficRow>{}) {
    traffic.push_back({{"src_ip", t.src_ip.ToString()},
                       {"src_port", t.src_port},
                       {"dst_ip", t.dst_ip.ToString()},
                       {"dst_port", t.dst_port},
                       {"bytes", t.bytes_to_dst + t.bytes_to_src},
                       {"bytes_to_dst", t.bytes_to_dst},
                       {"bytes_to_src", t.bytes_to_src},
                       {"observed_as", flow::RoleName(t.observed_as)},
                       {"pid", t.pid}});
  }
  if (with_traffic) doc["traffic"] = std::move(traffic);

  doc["stats"] = {{"ringbuf_drops", stats.ringbuf_drops},
                  {"socks_full", stats.socks_full},
                  {"decode_errors", stats.decode_errors},
                  {"tcp_corrected", stats.tcp_corrected},
                  {"traffic_overflow", stats.traffic_overflow},
                  {"unowned_closes", stats.unowned_closes},
                  {"track_errors", stats.track_errors},
                  {"recursion_misses", stats.recursion_misses},
                  {"connect_ends_unseen", stats.connect_ends_unseen},
                  {"established_unseen", stats.established_unseen},
                  {"seeded_sockets", stats.seeded_sockets},
                  {"seeded_listeners", stats.seeded_listeners},
                  {"seed_unowned", stats.seed_unowned},
                  {"seed_rescued", stats.seed_rescued},
                  {"scans", stats.scans},
                  {"scan_errors", stats.scan_errors}};
  if (completeness.known) {
    const uint64_t opens = completeness.active_opens + completeness.passive_opens;
    // A connection opened between the last scan and the counters' read can
    // be seen without being counted yet: never report a negative miss.
    const uint64_t missed = opens > completeness.seen ? opens - completeness.seen : 0;
    doc["completeness"] = {{"active_opens", completeness.active_opens},
                           {"passive_opens", completeness.passive_opens},
                           {"opens", opens},
                           {"seen", completeness.seen},
                           {"missed", missed},
                           {"ratio", opens == 0 ? 1.0
                                                : static_cast<double>(opens - missed) /
                                                      static_cast<double>(opens)}};
  } else {
    doc["completeness"] = nullptr;
  }
  return doc;
}

}  // namespace

nlohmann::ordered_json SnapshotJson(const InstanceInfo& instance,
                                    const flow::ServiceGraph& graph,
                                    const SnapshotStats& stats, const Completeness& completeness,
                                    const Clock& clock) {
  return Document(instance, graph, stats, completeness, clock, true);
}

std::string SnapshotText(const InstanceInfo& instance, const flow::ServiceGraph& graph,
                         const SnapshotStats& stats, const Completeness& completeness,
                         const Clock& clock, int indent) {
  // Process names are arbitrary bytes: never throw on invalid UTF-8.
  std::string out = Document(instance, graph, stats, completeness, clock, false)
                        .dump(indent, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  out.pop_back();  // the closing brace; the rows go in before it
  out.reserve(out.size() + graph.traffic.size() * (indent >= 0 ? 330 : 230) + 64);
  const bool pretty = indent >= 0;
  const std::string nl = pretty ? "\n" : "", in1(pretty ? indent : 0, ' '),
                    in2(pretty ? 2 * indent : 0, ' '), in3(pretty ? 3 * indent : 0, ' ');
  const char* colon = pretty ? ": " : ":";
  while (pretty && !out.empty() && out.back() == '\n') out.pop_back();
  out += "," + nl + in1 + "\"traffic\"" + colon + "[";
  bool first = true;
  for (const flow::TrafficRow& t : graph.traffic) {
    out += first ? nl : "," + nl;
    first = false;
    // Addresses, numbers and role names: nothing here needs escaping.
    fmt::format_to(std::back_inserter(out),
                   "{0}{{{1}{2}\"src_ip\"{3}\"{4}\",{1}{2}\"src_port\"{3}{5},{1}{2}\"dst_ip\"{3}"
                   "\"{6}\",{1}{2}\"dst_port\"{3}{7},{1}{2}\"bytes\"{3}{8},{1}{2}\"bytes_to_dst\"{3}{9},"
                   "{1}{2}\"bytes_to_src\"{3}{10},{1}{2}\"observed_as\"{3}\"{11}\",{1}{2}\"pid\"{3}{12}{1}{0}}}",
                   in2, nl, in3, colon, t.src_ip.ToString(), t.src_port, t.dst_ip.ToString(),
                   t.dst_port, t.bytes_to_dst + t.bytes_to_src, t.bytes_to_dst, t.bytes_to_src,
                   flow::RoleName(t.observed_as), t.pid);
  }
  out += first ? "]" : nl + in1 + "]";
  out += nl + "}";
  return out;
}

}  // namespace svcmap::exporter
