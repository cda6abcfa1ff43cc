#include "svcmap/topology/writers.h"

#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "fmt/format.h"

namespace svcmap::topology {
namespace {

// For DOT's double-quoted strings.
std::string DotQuote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// Mermaid labels are double-quoted; a quote inside is written as an entity.
std::string MermaidText(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"') out += "#quot;";
    else if (c == '\n') out += "<br/>";
    else out.push_back(c);
  }
  return out;
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

std::string Ports(const std::vector<uint16_t>& ports) {
  std::string out;
  for (uint16_t p : ports) out += fmt::format(":{} ", p);
  if (!out.empty()) out.pop_back();
  return out;
}

std::string NodeLabel(const Node& n) {
  if (n.external) return n.id;
  std::string label = n.service.empty() ? n.id : n.service;
  if (!n.listen_ports.empty()) label += "\n" + Ports(n.listen_ports);
  return label;
}

std::string Micros(uint64_t us) {
  if (us < 1000) return fmt::format("{} us", us);
  if (us < 1'000'000) return fmt::format("{:.1f} ms", us / 1000.0);
  return fmt::format("{:.2f} s", us / 1e6);
}

std::string EdgeLabel(const Edge& e) {
  std::string_view proto = GuessProtocol(e.dst_port);
  std::string label = HumanBytes(e.bytes_sent + e.bytes_received);
  if (!proto.empty()) label = fmt::format("{} {}", proto, label);
  const Health& h = e.health;
  if (h.rtt_samples) label += ", rtt " + Micros(h.rtt_us());
  if (h.failed()) label += fmt::format(", {} failed", h.failed());
  if (h.resets()) label += fmt::format(", {} reset{}", h.resets(), h.resets() == 1 ? "" : "s");
  return label;
}

// How an edge is drawn: red when connections failed or were reset, orange
// when TCP had to retransmit; empty when healthy.
std::string_view EdgeColour(const Edge& e) {
  if (e.health.failed() || e.health.resets()) return "red";
  if (e.health.retransmits) return "orange";
  return "";
}

void AddHealth(nlohmann::ordered_json& row, const Health& h) {
  using Json = nlohmann::ordered_json;
  row["failed"] = h.failed();
  row["attempts_refused"] = h.refused;
  row["attempts_timed_out"] = h.timed_out;
  row["attempts_error"] = h.error;
  row["resets_received"] = h.resets_received;
  row["resets_sent"] = h.resets_sent;
  row["retransmits"] = h.retransmits;
  row["rtt_us"] = h.rtt_samples ? Json(h.rtt_us()) : nullptr;
  row["rtt_min_us"] = h.rtt_min_us ? Json(h.rtt_min_us) : nullptr;
  row["connect_latency_us"] = h.connect_samples ? Json(h.connect_us()) : nullptr;
}

// Machine -> the nodes on it; external nodes under "".
std::map<std::string, std::vector<size_t>> ByMachine(const Graph& g) {
  std::map<std::string, std::vector<size_t>> m;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    m[g.nodes[i].external ? "" : g.nodes[i].machine].push_back(i);
  return m;
}

// The address shown with a machine's name: its nodes' one address, if any.
std::string MachineTitle(const Graph& g, const std::string& machine,
                         const std::vector<size_t>& members) {
  std::set<std::string> ips;
  for (size_t i : members)
    if (!g.nodes[i].instance_ip.empty()) ips.insert(g.nodes[i].instance_ip);
  if (machine.empty()) return "external";
  if (ips.size() == 1 && *ips.begin() != machine) return fmt::format("{} ({})", machine, *ips.begin());
  return machine;
}

}  // namespace

absl::StatusOr<Format> ParseFormat(std::string_view text) {
  if (text == "json") return Format::kJson;
  if (text == "dot") return Format::kDot;
  if (text == "mermaid") return Format::kMermaid;
  if (text == "svg") return Format::kSvg;
  if (text == "html") return Format::kHtml;
  return absl::InvalidArgumentError(
      fmt::format("--format {:?}: want json, dot, mermaid, svg or html", std::string(text)));
}

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(kUnits)) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", v, kUnits[u]);
}

nlohmann::ordered_json GraphJson(const Graph& g) {
  using Json = nlohmann::ordered_json;
  Json nodes = Json::array(), edges = Json::array(), unmatched = Json::array();
  for (const Node& n : g.nodes) {
    nodes.push_back({{"id", n.id},
                     {"service", n.service},
                     {"instance_id", n.instance_id},
                     {"instance_ip", n.instance_ip},
                     {"machine", n.machine},
                     {"listen_ports", n.listen_ports},
                     {"external", n.external}});
  }
  for (const Edge& e : g.edges) {
    edges.push_back({{"src", e.src},
                     {"dst", e.dst},
                     {"src_service", e.src_service},
                     {"dst_service", e.dst_service},
                     {"dst_ip", e.dst_ip},
                     {"dst_port", e.dst_port},
                     {"bytes_sent", e.bytes_sent},
                     {"bytes_received", e.bytes_received},
                     {"connections", e.connections}});
    AddHealth(edges.back(), e.health);
  }
  for (const Unmatched& u : g.unmatched) {
    unmatched.push_back({{"src_instance_id", u.src_instance_id},
                         {"src_service_name", u.src_service_name},
                         {"dst_ip", u.dst_ip},
                         {"dst_port", u.dst_port},
                         {"reason", u.reason},
                         {"candidates", u.candidates},
                         {"bytes_sent", u.bytes_sent},
                         {"bytes_received", u.bytes_received},
                         {"connections", u.connections}});
  }
  return {{"nodes", std::move(nodes)}, {"edges", std::move(edges)},
          {"unmatched", std::move(unmatched)}};
}

std::string GraphDot(const Graph& g) {
  std::string out = "digraph svcmap {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n";
  std::map<std::string, std::string> dot_id;  // node id -> n<index>
  for (size_t i = 0; i < g.nodes.size(); ++i) dot_id[g.nodes[i].id] = fmt::format("n{}", i);
  int cluster = 0;
  for (const auto& [machine, members] : ByMachine(g)) {
    const bool boxed = !machine.empty();
    if (boxed)
      out += fmt::format("  subgraph cluster_{} {{\n    label={};\n", cluster++,
                         DotQuote(MachineTitle(g, machine, members)));
    for (size_t i : members) {
      const Node& n = g.nodes[i];
      out += fmt::format("  {}{} [label={}{}];\n", boxed ? "  " : "", dot_id[n.id],
                         DotQuote(NodeLabel(n)), n.external ? ", style=dashed" : "");
    }
    if (boxed) out += "  }\n";
  }
  for (size_t i = 0; i < g.edges.size(); ++i) {
    const Edge& e = g.edges[i];
    std::string_view colour = EdgeColour(e);
    out += fmt::format("  {} -> {} [id=\"e{}\", label={}{}];\n", dot_id[e.src], dot_id[e.dst], i,
                       DotQuote(EdgeLabel(e)),
                       colour.empty() ? ""
                                      : fmt::format(", color={0}, fontcolor={0}, penwidth=2", colour));
  }
  out += "}\n";
  return out;
}

std::string GraphMermaid(const Graph& g) {
  std::string out = "flowchart LR\n";
  std::map<std::string, std::string> mid;
  for (size_t i = 0; i < g.nodes.size(); ++i) mid[g.nodes[i].id] = fmt::format("n{}", i);
  int machine_no = 0;
  for (const auto& [machine, members] : ByMachine(g)) {
    const bool boxed = !machine.empty();
    if (boxed)
      out += fmt::format("    subgraph m{}[\"{}\"]\n", machine_no++,
                         MermaidText(MachineTitle(g, machine, members)));
    for (size_t i : members) {
      const Node& n = g.nodes[i];
      out += fmt::format("    {}{}[\"{}\"]\n", boxed ? "    " : "", mid[n.id],
                         MermaidText(NodeLabel(n)));
    }
    if (boxed) out += "    end\n";
  }
  for (const Edge& e : g.edges)
    out += fmt::format("    {} -->|\"{}\"| {}\n", mid[e.src], MermaidText(EdgeLabel(e)), mid[e.dst]);
  // Links are numbered in the order they were written.
  for (size_t i = 0; i < g.edges.size(); ++i)
    if (std::string_view colour = EdgeColour(g.edges[i]); !colour.empty())
      out += fmt::format("    linkStyle {} stroke:{},stroke-width:2px,color:{}\n", i, colour, colour);
  return out;
}

absl::StatusOr<std::string> GraphSvg(const Graph& g) {
  // Graphviz keeps global state (its error buffer, the plugin registry):
  // one layout at a time.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  struct GvcDeleter {
    void operator()(GVC_t* c) const { gvFreeContext(c); }
  };
  struct GraphDeleter {
    void operator()(Agraph_t* a) const { agclose(a); }
  };
  static std::unique_ptr<GVC_t, GvcDeleter> gvc(gvContext());
  if (!gvc) return absl::InternalError("graphviz: no context");
  const std::string dot = GraphDot(g);
  std::unique_ptr<Agraph_t, GraphDeleter> graph(agmemread(dot.c_str()));
  if (!graph) return absl::InternalError("graphviz: the DOT did not parse");
  if (gvLayout(gvc.get(), graph.get(), "dot") != 0)
    return absl::InternalError("graphviz: dot layout failed (is the dot plugin installed?)");
  char* data = nullptr;
  unsigned int len = 0;
  int rc = gvRenderData(gvc.get(), graph.get(), "svg", &data, &len);
  std::string svg = rc == 0 && data ? std::string(data, len) : std::string();
  if (data) gvFreeRenderData(data);
  gvFreeLayout(gvc.get(), graph.get());
  if (rc != 0) return absl::InternalError("graphviz: svg rendering failed");
  return svg;
}

absl::StatusOr<std::string> GraphHtml(const Graph& g, std::string_view title) {
  absl::StatusOr<std::string> svg = GraphSvg(g);
  if (!svg.ok()) return svg.status();
  // The SVG goes inline; its XML prolog and doctype are not HTML.
  std::string_view body = *svg;
  if (size_t at = body.find("<svg"); at != std::string_view::npos) body.remove_prefix(at);
  std::string out = fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<title>{0}</title><style>"
      "body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}"
      "td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}"
      "td.n{{text-align:right}}tr.bad td{{color:#c00}}tr.warn td{{color:#c60}}</style></head><body>\n<h1>{0}</h1>\n<div id=\"graph\">{1}</div>\n",
      HtmlEscape(title), body);
  out += "<h2>Edges</h2>\n<table id=\"edges\"><tr><th>from</th><th>to</th><th>port</th>"
         "<th>sent</th><th>received</th><th>connections</th><th>failed</th><th>resets</th>"
         "<th>retransmits</th><th>rtt</th><th>connect</th></tr>\n";
  for (const Edge& e : g.edges) {
    const Health& h = e.health;
    std::string_view colour = EdgeColour(e);
    out += fmt::format(
        "<tr{}><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>"
        "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>"
        "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>"
        "<td class=\"n\">{}</td></tr>\n",
        colour.empty() ? "" : fmt::format(" class=\"{}\"", colour == "red" ? "bad" : "warn"),
        HtmlEscape(e.src), HtmlEscape(e.dst), e.dst_port, e.bytes_sent, e.bytes_received,
        e.connections, h.failed(), h.resets(), h.retransmits,
        h.rtt_samples ? Micros(h.rtt_us()) : "", h.connect_samples ? Micros(h.connect_us()) : "");
  }
  out += "</table>\n";
  if (!g.unmatched.empty()) {
    out += "<h2>Not joined</h2>\n<table id=\"unmatched\"><tr><th>from</th><th>to</th>"
           "<th>why</th><th>candidates</th></tr>\n";
    for (const Unmatched& u : g.unmatched) {
      std::string candidates;
      for (const std::string& c : u.candidates) candidates += HtmlEscape(c) + " ";
      out += fmt::format("<tr><td>{}</td><td>{}:{}</td><td>{}</td><td>{}</td></tr>\n",
                         HtmlEscape(u.src_instance_id), HtmlEscape(u.dst_ip), u.dst_port,
                         HtmlEscape(u.reason), candidates);
    }
    out += "</table>\n";
  }
  out += "</body></html>\n";
  return out;
}

absl::StatusOr<std::string> Render(const Graph& g, Format f) {
  switch (f) {
    case Format::kJson: return GraphJson(g).dump(2) + "\n";
    case Format::kDot: return GraphDot(g);
    case Format::kMermaid: return GraphMermaid(g);
    case Format::kSvg: return GraphSvg(g);
    case Format::kHtml: return GraphHtml(g, "svcmap topology");
  }
  return absl::InternalError("unknown format");
}

}  // namespace svcmap::topology
