#include "svcmap/topology/sources.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace svcmap::topology {
namespace {

using Json = nlohmann::json;

// Debian's Abseil has its own string_view, not std's.
absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Bad(std::string_view origin, std::string_view why) {
  return absl::InvalidArgumentError(fmt::format("{}: {}", origin, why));
}

// Typed field reads that never throw: a missing or mistyped field is empty.
std::string Str(const Json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}
uint64_t U64(const Json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}
bool Port(const Json& v, uint16_t& out) {
  if (!v.is_number_unsigned() || v.get<uint64_t>() > 65535) return false;
  out = static_cast<uint16_t>(v.get<uint64_t>());
  return true;
}

bool ParsePort(std::string_view s, uint16_t& out) {
  uint32_t v = 0;
  if (!absl::SimpleAtoi(A(s), &v) || v > 65535) return false;
  out = static_cast<uint16_t>(v);
  return true;
}

// A series' identity: its labels but the metric name.
std::string SeriesKey(const std::map<std::string, std::string>& labels) {
  std::string k;
  for (const auto& [n, v] : labels) {
    if (n == "__name__") continue;
    k += n;
    k.push_back('\x01');
    k += v;
    k.push_back('\x02');
  }
  return k;
}

std::string Label(const PromSample& s, const char* name) {
  auto it = s.labels.find(name);
  return it == s.labels.end() ? std::string() : it->second;
}

// A counter's increase over the window, from its value at each end.
double Increase(double end, double start) { return end >= start ? end - start : end; }

uint64_t Round(double v) { return v <= 0 || !std::isfinite(v) ? 0 : static_cast<uint64_t>(std::llround(v)); }

// A snapshot row's health fields (absent in older snapshots: none).
Health HealthOf(const Json& row) {
  Health h;
  h.refused = U64(row, "attempts_refused");
  h.timed_out = U64(row, "attempts_timed_out");
  h.error = U64(row, "attempts_error");
  h.resets_received = U64(row, "resets_received");
  h.resets_sent = U64(row, "resets_sent");
  h.retransmits = U64(row, "retransmits");
  h.rtt_samples = U64(row, "rtt_samples");
  h.rtt_sum_us = U64(row, "rtt_us") * h.rtt_samples;
  h.rtt_min_us = U64(row, "rtt_min_us");
  h.connect_samples = U64(row, "connect_samples");
  h.connect_sum_us = U64(row, "connect_latency_us") * h.connect_samples;
  return h;
}

}  // namespace

absl::StatusOr<Observations> ParseSnapshot(std::string_view text, std::string_view origin) {
  Json doc = Json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return Bad(origin, "not a JSON object");
  auto version = doc.find("schema_version");
  if (version == doc.end() || !version->is_number_integer())
    return Bad(origin, "no schema_version: not an svcmap snapshot (or one older than version 1)");
  if (version->get<int64_t>() != kSnapshotSchemaVersion)
    return Bad(origin, fmt::format("snapshot schema_version {}, this svcmap reads {}",
                                   version->dump(), kSnapshotSchemaVersion));
  auto inst = doc.find("instance");
  auto services = doc.find("services");
  auto connections = doc.find("connections");
  if (inst == doc.end() || !inst->is_object() || services == doc.end() || !services->is_array() ||
      connections == doc.end() || !connections->is_array())
    return Bad(origin, "want \"instance\", \"services\" and \"connections\"");
  // "machine" tells apart agents on one host that watch different network
  // namespaces; older snapshots have only the host name.
  std::string machine = Str(*inst, "machine");
  if (machine.empty()) machine = Str(*inst, "hostname");
  const std::string node_ip = Str(*inst, "instance_ip");

  Observations obs;
  std::map<std::string, std::string> ip_of;  // instance id -> its address
  std::map<std::pair<uint32_t, std::string>, Process> procs;  // (pid, service)
  for (const Json& s : *services) {
    if (!s.is_object()) return Bad(origin, "a service is not an object");
    Instance in;
    in.instance_id = Str(s, "instance_id");
    in.instance_ip = Str(s, "instance_ip");
    in.name = Str(s, "name");
    in.machine = machine;
    in.pid = static_cast<uint32_t>(std::min<uint64_t>(U64(s, "pid"), UINT32_MAX));
    if (in.instance_id.empty() || in.name.empty())
      return Bad(origin, "a service without instance_id or name");
    if (in.instance_ip.empty()) in.instance_ip = node_ip;
    if (auto ports = s.find("listen_ports"); ports != s.end()) {
      if (!ports->is_array()) return Bad(origin, "listen_ports is not an array");
      for (const Json& p : *ports) {
        uint16_t port;
        if (!Port(p, port)) return Bad(origin, "a listen port out of range");
        in.listen_ports.push_back(port);
      }
    }
    std::sort(in.listen_ports.begin(), in.listen_ports.end());
    ip_of[in.instance_id] = in.instance_ip;
    if (auto acc = s.find("accepted"); acc != s.end() && acc->is_array()) {
      for (const Json& a : *acc) {
        if (!a.is_object()) return Bad(origin, "an accepted row is not an object");
        Process& p = procs[{static_cast<uint32_t>(U64(a, "pid")), in.name}];
        if (p.comm.empty()) p.comm = Str(a, "comm");
        p.bytes_sent += U64(a, "bytes_sent");
        p.bytes_received += U64(a, "bytes_received");
        p.connections += U64(a, "connections");
        p.active += U64(a, "active");
      }
    }
    obs.instances.push_back(std::move(in));
  }
  for (const Json& c : *connections) {
    if (!c.is_object()) return Bad(origin, "a connection is not an object");
    Connection conn;
    conn.src_instance_id = Str(c, "src_instance_id");
    conn.src_service_name = Str(c, "src_service_name");
    conn.src_machine = machine;
    conn.src_ip = ip_of.contains(conn.src_instance_id) ? ip_of[conn.src_instance_id] : node_ip;
    conn.dst_ip = Str(c, "dst_ip");
    auto dp = c.find("dst_port");
    if (conn.src_instance_id.empty() || conn.dst_ip.empty() || dp == c.end() ||
        !Port(*dp, conn.dst_port))
      return Bad(origin, "a connection without src_instance_id, dst_ip or dst_port");
    conn.actual_dst_ip = Str(c, "actual_dst_ip");
    if (auto ap = c.find("actual_dst_port");
        ap != c.end() && !ap->is_null() && !Port(*ap, conn.actual_dst_port))
      return Bad(origin, "actual_dst_port out of range");
    conn.bytes_sent = U64(c, "bytes_sent");
    conn.bytes_received = U64(c, "bytes_received");
    conn.connections = U64(c, "connections");
    conn.active = U64(c, "active");
    conn.health = HealthOf(c);
    // Per process, for `svcmap top`.
    std::pair<uint32_t, std::string> pk{static_cast<uint32_t>(U64(c, "src_pid")),
                                        conn.src_service_name};
    Process& p = procs[pk];
    p.comm = Str(c, "src_comm");
    p.bytes_sent += conn.bytes_sent;
    p.bytes_received += conn.bytes_received;
    p.connections += conn.connections;
    p.active += conn.active;
    obs.connections.push_back(std::move(conn));
  }
  for (auto& [key, p] : procs) {
    if (key.first == 0) continue;
    p.machine = machine;
    p.pid = key.first;
    p.service = key.second;
    obs.processes.push_back(std::move(p));
  }
  if (auto traffic = doc.find("traffic"); traffic != doc.end() && traffic->is_array()) {
    for (const Json& t : *traffic) {
      if (!t.is_object()) return Bad(origin, "a traffic row is not an object");
      Traffic row;
      row.src_ip = Str(t, "src_ip");
      row.dst_ip = Str(t, "dst_ip");
      auto dp = t.find("dst_port");
      if (dp == t.end() || !Port(*dp, row.dst_port)) return Bad(origin, "a traffic row's dst_port");
      row.bytes = U64(t, "bytes");
      obs.traffic.push_back(std::move(row));
    }
  }
  return obs;
}

absl::StatusOr<std::vector<PromSample>> ParsePromVector(std::string_view text) {
  Json doc = Json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return absl::InvalidArgumentError("not JSON");
  if (Str(doc, "status") != "success") {
    std::string err = Str(doc, "error");
    return absl::InvalidArgumentError(
        fmt::format("query failed: {}", err.empty() ? "no \"status\":\"success\"" : err));
  }
  auto data = doc.find("data");
  if (data == doc.end() || !data->is_object() || Str(*data, "resultType") != "vector")
    return absl::InvalidArgumentError("want a \"vector\" result");
  auto result = data->find("result");
  if (result == data->end() || !result->is_array())
    return absl::InvalidArgumentError("no result array");
  std::vector<PromSample> out;
  for (const Json& r : *result) {
    auto metric = r.find("metric");
    auto value = r.find("value");
    if (!r.is_object() || metric == r.end() || !metric->is_object() || value == r.end() ||
        !value->is_array() || value->size() != 2 || !(*value)[1].is_string())
      return absl::InvalidArgumentError("a sample is not {metric, value: [t, \"v\"]}");
    PromSample s;
    for (const auto& [k, v] : metric->items()) {
      if (!v.is_string()) return absl::InvalidArgumentError("a label value is not a string");
      s.labels[k] = v.get<std::string>();
    }
    const std::string v = (*value)[1].get<std::string>();
    if (!absl::SimpleAtod(v, &s.value)) return absl::InvalidArgumentError("a value is not a number");
    out.push_back(std::move(s));
  }
  return out;
}

namespace {

// absl::ParseDuration, and whole days ("30d"), which windows often are.
bool ParseSpan(std::string_view s, absl::Duration* d) {
  if (!s.empty() && s.back() == 'd') {
    int64_t days;
    if (!absl::SimpleAtoi(A(s.substr(0, s.size() - 1)), &days) || days < 0) return false;
    *d = absl::Hours(24 * days);
    return true;
  }
  return absl::ParseDuration(A(s), d);
}

}  // namespace

absl::StatusOr<Window> ParseWindow(std::string_view text, absl::Time now) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(fmt::format("window {:?}: {}", std::string(text), why));
  };
  auto instant = [&](std::string_view s, absl::Time& out) -> bool {
    if (s == "now") {
      out = now;
      return true;
    }
    if (s.substr(0, 4) == "now-") {
      absl::Duration d;
      if (!ParseSpan(s.substr(4), &d) || d < absl::ZeroDuration()) return false;
      out = now - d;
      return true;
    }
    int64_t secs;
    if (absl::SimpleAtoi(A(s), &secs)) {
      out = absl::FromUnixSeconds(secs);
      return true;
    }
    std::string err;
    return absl::ParseTime(absl::RFC3339_full, std::string(s), &out, &err);
  };
  Window w;
  size_t dots = text.find("..");
  if (dots == std::string_view::npos) {
    absl::Duration d;
    if (!ParseSpan(text, &d) || d <= absl::ZeroDuration())
      return bad("want a duration (5m) or START..END");
    w.end_ms = absl::ToUnixMillis(now);
    w.start_ms = absl::ToUnixMillis(now - d);
    return w;
  }
  absl::Time a, b;
  if (!instant(text.substr(0, dots), a) || !instant(text.substr(dots + 2), b))
    return bad("each end is now, now-DURATION, RFC 3339 or Unix seconds");
  if (b <= a) return bad("it ends before it starts");
  w.start_ms = absl::ToUnixMillis(a);
  w.end_ms = absl::ToUnixMillis(b);
  return w;
}

namespace {
int64_t RangeSeconds(const Window& w) {
  return std::max<int64_t>(1, (w.end_ms - w.start_ms + 999) / 1000);
}
}  // namespace

// ~200 points per window, and at least 15 s, the agent's default push
// interval.
int64_t TsdbStepSeconds(const Window& w) { return std::max<int64_t>(15, RangeSeconds(w) / 200); }

// The health series topology --tsdb reads: query name, selector, and the
// label that splits them (summed away).
struct HealthSeries {
  const char* name;
  const char* selector;
  std::string_view label;
};
constexpr HealthSeries kTsdbHealthSeries[] = {
    {"refused", R"(svcmap_connection_attempts_total{outcome="refused"})", "outcome"},
    {"timed_out", R"(svcmap_connection_attempts_total{outcome="timed_out"})", "outcome"},
    {"error", R"(svcmap_connection_attempts_total{outcome="error"})", "outcome"},
    {"resets_received",
     R"(svcmap_connection_resets_total{direction="received",src_instance_id!=""})", "direction"},
    {"resets_sent", R"(svcmap_connection_resets_total{direction="sent",src_instance_id!=""})",
     "direction"},
    {"retransmits", R"(svcmap_connection_retransmits_total{src_instance_id!=""})", ""},
    {"rtt_sum", R"(svcmap_connection_rtt_seconds_sum{src_instance_id!=""})", ""},
    {"rtt_count", R"(svcmap_connection_rtt_seconds_count{src_instance_id!=""})", ""},
    {"connect_sum", R"(svcmap_connection_connect_seconds_sum{src_instance_id!=""})", ""},
    {"connect_count", R"(svcmap_connection_connect_seconds_count{src_instance_id!=""})", ""},
};

std::vector<TsdbQuery> TsdbQueries(const Window& w) {
  // Ranges in whole seconds.
  const int64_t range_s = RangeSeconds(w);
  const int64_t step_s = TsdbStepSeconds(w);
  const std::string range = fmt::format("{}s", range_s);
  const std::string sub = fmt::format("{}s:{}s", range_s, step_s);
  // The value a counter had at the window's start: its last sample in the
  // 5 minutes before (Prometheus' default lookback).
  const std::string before = "5m";
  std::vector<TsdbQuery> q = {
      {"services", fmt::format("last_over_time(svcmap_service_info[{}])", range)},
      {"ports", fmt::format("last_over_time(svcmap_service_listen_port_info[{}])", range)},
      {"ports_first", fmt::format("min_over_time(timestamp(svcmap_service_listen_port_info)[{}])", sub)},
      {"ports_last", fmt::format("max_over_time(timestamp(svcmap_service_listen_port_info)[{}])", sub)},
      {"conn_first", fmt::format("min_over_time(timestamp(svcmap_connection_sent_bytes_total)[{}])", sub)},
      {"conn_last", fmt::format("max_over_time(timestamp(svcmap_connection_sent_bytes_total)[{}])", sub)},
  };
  for (const auto& [name, metric] : std::vector<std::pair<std::string, std::string>>{
           {"sent", "svcmap_connection_sent_bytes_total"},
           {"received", "svcmap_connection_received_bytes_total"},
           {"conns", "svcmap_connections_total"},
           {"traffic", "svcmap_traffic_bytes_total"}}) {
    q.push_back({name + "_end", fmt::format("last_over_time({}[{}])", metric, range), false});
    q.push_back({name + "_start", fmt::format("last_over_time({}[{}])", metric, before), true});
  }
  // Health, on the caller's side: by the SERVICE_CONNECTION series, the
  // outcome or direction label summed away so that each lines up with its
  // bytes series.
  // A series without a splitting label is read as it is: a bare sum() would
  // add every edge into one sample without labels.
  for (const auto& series : kTsdbHealthSeries) {
    // Plain names, not a structured binding: clang 14 (the fuzz build)
    // cannot capture those in a lambda (P1091 came in clang 16).
    const std::string name = series.name;
    const std::string_view selector = series.selector, label = series.label;
    auto read = [&](const std::string& over) {
      const std::string last = fmt::format("last_over_time({}[{}])", selector, over);
      return label.empty() ? last : fmt::format("sum without ({}) ({})", label, last);
    };
    q.push_back({name + "_end", read(range), false});
    q.push_back({name + "_start", read(before), true});
  }
  return q;
}

absl::StatusOr<Observations> ObservationsFromTsdb(
    const std::map<std::string, std::vector<PromSample>>& answers) {
  auto get = [&](const char* name) -> const std::vector<PromSample>& {
    static const std::vector<PromSample> kNone;
    auto it = answers.find(name);
    return it == answers.end() ? kNone : it->second;
  };
  // By series (labels but the name): a value.
  auto by_series = [&](const char* name) {
    std::map<std::string, double> m;
    for (const PromSample& s : get(name)) m[SeriesKey(s.labels)] = s.value;
    return m;
  };

  Observations obs;
  std::map<std::string, Instance> instances;  // by instance_id
  for (const PromSample& s : get("services")) {
    Instance& in = instances[Label(s, "instance_id")];
    in.instance_id = Label(s, "instance_id");
    in.instance_ip = Label(s, "instance_ip");
    in.name = Label(s, "name");
    in.machine = Label(s, "machine");
    uint32_t pid = 0;
    if (absl::SimpleAtoi(Label(s, "pid"), &pid)) in.pid = pid;
  }
  const auto first = by_series("ports_first"), last = by_series("ports_last");
  for (const PromSample& s : get("ports")) {
    const std::string id = Label(s, "instance_id");
    uint16_t port;
    if (id.empty() || !ParsePort(Label(s, "port"), port))
      return absl::InvalidArgumentError("svcmap_service_listen_port_info without instance_id or port");
    Instance& in = instances[id];
    in.instance_id = id;
    if (in.instance_ip.empty()) in.instance_ip = Label(s, "instance_ip");
    if (in.name.empty()) in.name = Label(s, "name");
    if (in.machine.empty()) in.machine = Label(s, "machine");
    in.listen_ports.push_back(port);
    const std::string key = SeriesKey(s.labels);
    auto f = first.find(key), l = last.find(key);
    // Seconds (timestamp()) to ms; an instance is seen from its first port
    // to its last.
    if (f != first.end()) {
      int64_t ms = static_cast<int64_t>(f->second * 1000);
      if (in.first_seen_ms == 0 || ms < in.first_seen_ms) in.first_seen_ms = ms;
    }
    if (l != last.end()) in.last_seen_ms = std::max(in.last_seen_ms, static_cast<int64_t>(l->second * 1000));
  }
  for (auto& [id, in] : instances) {
    std::sort(in.listen_ports.begin(), in.listen_ports.end());
    in.listen_ports.erase(std::unique(in.listen_ports.begin(), in.listen_ports.end()),
                          in.listen_ports.end());
    obs.instances.push_back(in);
  }

  const auto sent_start = by_series("sent_start"), recv_end = by_series("received_end"),
             recv_start = by_series("received_start"), conns_end = by_series("conns_end"),
             conns_start = by_series("conns_start"), conn_first = by_series("conn_first"),
             conn_last = by_series("conn_last");
  auto at = [](const std::map<std::string, double>& m, const std::string& k) {
    auto it = m.find(k);
    return it == m.end() ? 0.0 : it->second;
  };
  std::map<std::string, std::map<std::string, double>> health;
  for (const HealthSeries& hs : kTsdbHealthSeries)
    for (const char* end : {"_end", "_start"}) {
      const std::string name = std::string(hs.name) + end;
      health[name] = by_series(name.c_str());
    }
  for (const PromSample& s : get("sent_end")) {
    const std::string key = SeriesKey(s.labels);
    Connection c;
    c.src_instance_id = Label(s, "src_instance_id");
    c.src_service_name = Label(s, "src_service_name");
    c.dst_ip = Label(s, "dst_ip");
    if (c.src_instance_id.empty() || c.dst_ip.empty() || !ParsePort(Label(s, "dst_port"), c.dst_port))
      return absl::InvalidArgumentError(
          "svcmap_connection_sent_bytes_total without src_instance_id, dst_ip or dst_port");
    c.actual_dst_ip = Label(s, "actual_dst_ip");
    if (!c.actual_dst_ip.empty() && !ParsePort(Label(s, "actual_dst_port"), c.actual_dst_port))
      return absl::InvalidArgumentError("actual_dst_ip without a valid actual_dst_port");
    if (auto it = instances.find(c.src_instance_id); it != instances.end()) {
      c.src_machine = it->second.machine;
      c.src_ip = it->second.instance_ip;
    }
    c.bytes_sent = Round(Increase(s.value, at(sent_start, key)));
    c.bytes_received = Round(Increase(at(recv_end, key), at(recv_start, key)));
    c.connections = Round(Increase(at(conns_end, key), at(conns_start, key)));
    c.first_seen_ms = static_cast<int64_t>(at(conn_first, key) * 1000);
    c.last_seen_ms = static_cast<int64_t>(at(conn_last, key) * 1000);
    auto grew = [&](const std::map<std::string, double>& end,
                    const std::map<std::string, double>& start) {
      return Increase(at(end, key), at(start, key));
    };
    Health& h = c.health;
    h.refused = Round(grew(health.at("refused_end"), health.at("refused_start")));
    h.timed_out = Round(grew(health.at("timed_out_end"), health.at("timed_out_start")));
    h.error = Round(grew(health.at("error_end"), health.at("error_start")));
    h.resets_received =
        Round(grew(health.at("resets_received_end"), health.at("resets_received_start")));
    h.resets_sent = Round(grew(health.at("resets_sent_end"), health.at("resets_sent_start")));
    h.retransmits = Round(grew(health.at("retransmits_end"), health.at("retransmits_start")));
    h.rtt_samples = Round(grew(health.at("rtt_count_end"), health.at("rtt_count_start")));
    h.rtt_sum_us = Round(grew(health.at("rtt_sum_end"), health.at("rtt_sum_start")) * 1e6);
    h.connect_samples =
        Round(grew(health.at("connect_count_end"), health.at("connect_count_start")));
    h.connect_sum_us =
        Round(grew(health.at("connect_sum_end"), health.at("connect_sum_start")) * 1e6);
    // A flow idle for the whole window moved nothing in it. One whose
    // connects all failed moved no byte but is the edge an operator looks
    // for; so is one whose only news is resets or retransmits.
    if (c.bytes_sent == 0 && c.bytes_received == 0 && c.connections == 0 && h.failed() == 0 &&
        h.resets() == 0 && h.retransmits == 0)
      continue;
    obs.connections.push_back(std::move(c));
  }
  const auto traffic_start = by_series("traffic_start");
  for (const PromSample& s : get("traffic_end")) {
    Traffic t;
    t.src_ip = Label(s, "src_ip");
    t.dst_ip = Label(s, "dst_ip");
    if (!ParsePort(Label(s, "dst_port"), t.dst_port)) continue;
    t.bytes = Round(Increase(s.value, at(traffic_start, SeriesKey(s.labels))));
    if (t.bytes > 0) obs.traffic.push_back(std::move(t));
  }
  return obs;
}

}  // namespace svcmap::topology
