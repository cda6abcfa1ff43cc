#include "svcmap/ui/top_model.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>
#include <map>
#include <tuple>

#include "fmt/format.h"
#include "svcmap/topology/writers.h"

namespace svcmap::ui {
namespace {

// Totals of one row, cumulative.
struct Totals {
  uint64_t out = 0, in = 0, connections = 0, active = 0;
  // Failed connects and resets, retransmitted segments, RTT samples.
  uint64_t errors = 0, retransmits = 0, rtt_samples = 0, rtt_sum_us = 0;

  void AddHealth(const topology::Health& h) {
    errors += h.failed() + h.resets();
    retransmits += h.retransmits;
    rtt_samples += h.rtt_samples;
    rtt_sum_us += h.rtt_sum_us;
  }
};

struct Keyed {
  std::vector<std::string> text;  // the leading text columns
  Totals totals;
};

double Seconds(const Sample* prev, const Sample& cur) {
  return prev ? static_cast<double>(cur.time_ms - prev->time_ms) / 1000.0 : 0.0;
}

std::string Ports(const std::vector<uint16_t>& ports) {
  std::string out;
  for (uint16_t p : ports) out += (out.empty() ? "" : ",") + std::to_string(p);
  return out;
}

std::map<std::string, Keyed> Rows(Mode mode, const Sample& s) {
  std::map<std::string, Keyed> rows;
  switch (mode) {
    case Mode::kEdges:
      for (const topology::Edge& e : s.graph.edges) {
        Keyed& k = rows[fmt::format("{}>{}:{}", e.src, e.dst, e.dst_port)];
        k.text = {e.src_service.empty() ? e.src : e.src_service,
                  e.dst_service.empty() ? e.dst : e.dst_service, std::to_string(e.dst_port)};
        k.totals.out += e.bytes_sent;
        k.totals.in += e.bytes_received;
        k.totals.connections += e.connections;
        k.totals.active += e.active;
        k.totals.AddHealth(e.health);
      }
      break;
    case Mode::kServices: {
      std::map<std::string, const topology::Node*> nodes;
      for (const topology::Node& n : s.graph.nodes) nodes[n.id] = &n;
      auto row = [&](const std::string& id) -> Keyed& {
        Keyed& k = rows[id];
        if (k.text.empty()) {
          auto it = nodes.find(id);
          const topology::Node* n = it == nodes.end() ? nullptr : it->second;
          k.text = {n && !n->service.empty() ? n->service : id, id,
                    n ? Ports(n->listen_ports) : ""};
        }
        return k;
      };
      for (const topology::Node& n : s.graph.nodes)
        if (!n.external) row(n.id);
      // A service sends what it sends as a caller and what it answers as
      // a callee.
      for (const topology::Edge& e : s.graph.edges) {
        Keyed& src = row(e.src);
        src.totals.out += e.bytes_sent;
        src.totals.in += e.bytes_received;
        src.totals.connections += e.connections;
        src.totals.active += e.active;
        src.totals.AddHealth(e.health);
        // An external destination is not a service of ours.
        auto it = nodes.find(e.dst);
        if (it == nodes.end() || it->second->external) continue;
        Keyed& dst = row(e.dst);
        dst.totals.out += e.bytes_received;
        dst.totals.in += e.bytes_sent;
        dst.totals.connections += e.connections;
        dst.totals.active += e.active;
        dst.totals.AddHealth(e.health);
      }
      break;
    }
    case Mode::kProcesses:
      for (const topology::Process& p : s.processes) {
        Keyed& k = rows[fmt::format("{}/{}", p.machine, p.pid)];
        k.text = {std::to_string(p.pid), p.comm, p.service};
        k.totals.out += p.bytes_sent;
        k.totals.in += p.bytes_received;
        k.totals.connections += p.connections;
        k.totals.active += p.active;
      }
      break;
  }
  return rows;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string Count(double per_s) {
  if (per_s == 0) return "0";
  return per_s < 10 ? fmt::format("{:.1f}", per_s) : fmt::format("{:.0f}", per_s);
}

std::string Latency(double us) {
  if (us < 1000) return fmt::format("{:.0f}us", us);
  if (us < 1'000'000) return fmt::format("{:.1f}ms", us / 1000);
  return fmt::format("{:.2f}s", us / 1e6);
}

// ncurses' codes, without including curses here (static_asserted in the
// view, which does).
constexpr int kKeyLeft = 0404, kKeyRight = 0405, kKeyBackspace = 0407, kKeyEnter = 0527;

}  // namespace

std::string_view ModeName(Mode m) {
  switch (m) {
    case Mode::kEdges: return "edges";
    case Mode::kServices: return "services";
    case Mode::kProcesses: return "processes";
  }
  return "?";
}

double Rate(uint64_t now, uint64_t before, double seconds) {
  if (seconds <= 0 || now < before) return 0;
  return static_cast<double>(now - before) / seconds;
}

std::string HumanRate(double bytes_per_s) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  size_t u = 0;
  while (bytes_per_s >= 1024 && u + 1 < std::size(kUnits)) {
    bytes_per_s /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B/s", bytes_per_s)
                : fmt::format("{:.1f} {}/s", bytes_per_s, kUnits[u]);
}

Table BuildTable(Mode mode, const Sample* prev, const Sample& cur) {
  Table t;
  switch (mode) {
    case Mode::kEdges:
      t.columns = {{"FROM", false, 12}, {"TO", false, 16}, {"PORT", true, 5}};
      break;
    case Mode::kServices:
      t.columns = {{"SERVICE", false, 12}, {"INSTANCE", false, 20}, {"PORTS", false, 6}};
      break;
    case Mode::kProcesses:
      t.columns = {{"PID", true, 7}, {"COMM", false, 15}, {"SERVICE", false, 12}};
      break;
  }
  for (const char* c : {"OUT/s", "IN/s", "CONN/s", "ACTIVE", "TOTAL"})
    t.columns.push_back({c, true, 10});
  // Failed connects and resets, retransmitted segments, and the mean RTT
  // of the connections that closed since the last sample (of all so far
  // when none did); processes carry none of it.
  for (const char* c : {"ERR/s", "RETR/s", "RTT"}) t.columns.push_back({c, true, 7, true});
  if (mode == Mode::kProcesses && !cur.has_processes) return t;

  const double secs = Seconds(prev, cur);
  std::map<std::string, Keyed> before;
  if (prev) before = Rows(mode, *prev);
  for (auto& [key, k] : Rows(mode, cur)) {
    const Totals* was = nullptr;
    if (auto it = before.find(key); it != before.end()) was = &it->second.totals;
    // A row new since the last sample started from zero within it.
    const Totals zero;
    const Totals& b = was ? *was : zero;
    const bool rated = prev != nullptr;
    const double out = rated ? Rate(k.totals.out, b.out, secs) : 0;
    const double in = rated ? Rate(k.totals.in, b.in, secs) : 0;
    const double conns = rated ? Rate(k.totals.connections, b.connections, secs) : 0;
    const double errors = rated ? Rate(k.totals.errors, b.errors, secs) : 0;
    const double retrans = rated ? Rate(k.totals.retransmits, b.retransmits, secs) : 0;
    double rtt_us = 0;
    if (k.totals.rtt_samples > b.rtt_samples && k.totals.rtt_sum_us >= b.rtt_sum_us)
      rtt_us = static_cast<double>(k.totals.rtt_sum_us - b.rtt_sum_us) /
               static_cast<double>(k.totals.rtt_samples - b.rtt_samples);
    else if (k.totals.rtt_samples > 0)
      rtt_us = static_cast<double>(k.totals.rtt_sum_us) / static_cast<double>(k.totals.rtt_samples);
    Row r;
    r.key = key;
    r.text = k.text;
    for (size_t i = 0; i < r.text.size(); ++i) {
      double v = 0;
      r.value.push_back(t.columns[i].numeric && !r.text[i].empty() ? std::atof(r.text[i].c_str())
                                                                  : v);
    }
    const uint64_t total = k.totals.out + k.totals.in;
    r.text.insert(r.text.end(), {HumanRate(out), HumanRate(in), Count(conns),
                                 std::to_string(k.totals.active), topology::HumanBytes(total)});
    r.value.insert(r.value.end(), {out, in, conns, static_cast<double>(k.totals.active),
                                   static_cast<double>(total)});
    r.text.insert(r.text.end(), {Count(errors), Count(retrans), rtt_us > 0 ? Latency(rtt_us) : "-"});
    r.value.insert(r.value.end(), {errors, retrans, rtt_us});
    t.rows.push_back(std::move(r));
  }
  return t;
}

void FilterAndSort(Table& t, std::string_view filter, size_t sort_column, bool descending) {
  if (!filter.empty()) {
    const std::string needle = Lower(filter);
    std::erase_if(t.rows, [&](const Row& r) {
      for (const std::string& cell : r.text)
        if (Lower(cell).find(needle) != std::string::npos) return false;
      return true;
    });
  }
  if (sort_column >= t.columns.size()) sort_column = 0;
  const bool numeric = t.columns[sort_column].numeric;
  std::sort(t.rows.begin(), t.rows.end(), [&](const Row& a, const Row& b) {
    int c = 0;
    if (numeric) {
      c = a.value[sort_column] < b.value[sort_column] ? -1 : a.value[sort_column] > b.value[sort_column];
    } else {
      c = a.text[sort_column].compare(b.text[sort_column]);
      c = c < 0 ? -1 : c > 0;
    }
    if (c != 0) return descending ? c > 0 : c < 0;
    return a.key < b.key;
  });
}

std::vector<std::string> FormatTable(const Table& t, size_t width, size_t sort_column,
                                     bool descending) {
  std::vector<size_t> w;
  for (const Column& c : t.columns) w.push_back(std::max<size_t>(c.width, c.title.size() + 1));
  for (const Row& r : t.rows)
    for (size_t i = 0; i < r.text.size() && i < w.size(); ++i)
      if (t.columns[i].numeric) w[i] = std::max(w[i], r.text[i].size());
  // Text columns take what is left, shared; they are cut, never the numbers.
  size_t fixed = 0, text_columns = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    if (t.columns[i].numeric)
      fixed += w[i] + 1;
    else
      ++text_columns;
  }
  // Optional columns go, last first, until the rest fits with the text
  // columns at their usual width.
  size_t text_width = 0;
  for (const Column& c : t.columns)
    if (!c.numeric) text_width += static_cast<size_t>(c.width) + 1;
  while (!w.empty() && t.columns[w.size() - 1].optional && fixed + text_width > width) {
    if (t.columns[w.size() - 1].numeric) fixed -= w.back() + 1;
    w.pop_back();
  }
  if (text_columns > 0 && width > fixed) {
    size_t share = (width - fixed) / text_columns;
    for (size_t i = 0; i < w.size(); ++i)
      if (!t.columns[i].numeric) {
        size_t want = t.columns[i].width;
        for (const Row& r : t.rows) want = std::max(want, r.text[i].size());
        w[i] = std::max<size_t>(std::min(want, share > 1 ? share - 1 : 1), 3);
      }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < cells.size() && i < w.size(); ++i) {
      std::string cell = cells[i];
      if (cell.size() > w[i]) cell = cell.substr(0, w[i] - 1) + "~";
      out += t.columns[i].numeric ? fmt::format("{:>{}}", cell, w[i]) : fmt::format("{:<{}}", cell, w[i]);
      if (i + 1 < cells.size()) out.push_back(' ');
    }
    if (out.size() > width) out.resize(width);
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
  };
  std::vector<std::string> titles;
  for (size_t i = 0; i < t.columns.size(); ++i)
    titles.push_back(t.columns[i].title + (i == sort_column ? (descending ? "v" : "^") : ""));
  std::vector<std::string> out = {line(titles)};
  for (const Row& r : t.rows) out.push_back(line(r.text));
  return out;
}

bool HandleKey(TopState& s, int key, size_t columns) {
  if (s.editing_filter) {
    if (key == '\n' || key == '\r' || key == kKeyEnter) {
      s.filter = s.filter_draft;
      s.editing_filter = false;
    } else if (key == 27) {  // Esc
      s.editing_filter = false;
    } else if (key == kKeyBackspace || key == 127 || key == 8) {
      if (!s.filter_draft.empty()) s.filter_draft.pop_back();
    } else if (key >= 32 && key < 127) {
      s.filter_draft.push_back(static_cast<char>(key));
    } else {
      return false;
    }
    return true;
  }
  switch (key) {
    case 'q': case 'Q': s.quit = true; return true;
    case '1': s.mode = Mode::kEdges; return true;
    case '2': s.mode = Mode::kServices; return true;
    case '3': s.mode = Mode::kProcesses; return true;
    case '\t':
      s.mode = s.mode == Mode::kEdges      ? Mode::kServices
               : s.mode == Mode::kServices ? Mode::kProcesses
                                           : Mode::kEdges;
      return true;
    case '<': case ',': case kKeyLeft:
      s.sort_column = s.sort_column == 0 ? columns - 1 : s.sort_column - 1;
      return true;
    case '>': case '.': case kKeyRight:
      s.sort_column = (s.sort_column + 1) % std::max<size_t>(columns, 1);
      return true;
    case 'r': s.descending = !s.descending; return true;
    case ' ': case 'p': s.paused = !s.paused; return true;
    case '/':
      s.editing_filter = true;
      s.filter_draft = s.filter;
      return true;
    case 27: s.filter.clear(); return true;  // Esc clears the filter
    default: return false;
  }
}

std::string FooterHint(const TopState& s) {
  if (s.editing_filter)
    return fmt::format("filter: {}_   (Enter apply, Esc cancel)", s.filter_draft);
  std::string views = "1 edges  2 services  3 processes";
  std::string hint = fmt::format("[{}] {}  </> sort  r reverse  / filter  space {}  q quit",
                                 ModeName(s.mode), views, s.paused ? "resume" : "pause");
  if (!s.filter.empty()) hint += fmt::format("   filter \"{}\" (Esc clears)", s.filter);
  return hint;
}

std::string HeaderLine(const Sample* prev, const Sample& cur, bool paused) {
  const double secs = Seconds(prev, cur);
  const double events = prev ? Rate(cur.events, prev->events, secs) : 0;
  std::time_t t = static_cast<std::time_t>(cur.time_ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  return fmt::format("svcmap top - {} - backend {} - {} events/s - {} drops - {:02}:{:02}:{:02}{}",
                     cur.host, cur.backend, Count(events), cur.drops, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, paused ? " - PAUSED" : "");
}

}  // namespace svcmap::ui
