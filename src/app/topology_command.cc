// `svcmap topology`: what the agents saw, read from one source, joined into
// the service graph and written in one format.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <tuple>

#include "fmt/format.h"
#include "nlohmann/json.hpp"
#include "svcmap/app/commands.h"
#include "svcmap/topology/graph.h"
#include "svcmap/topology/sources.h"
#include "svcmap/topology/writers.h"

namespace svcmap::app {
namespace {

absl::StatusOr<topology::Observations> Load(const Options& o, const topology::Window& w) {
  topology::Observations all;
  if (!o.tsdb_url.empty()) return topology::QueryTsdb(o.tsdb_url, w, o.tsdb_http);
  for (const std::string& url : o.agent_urls) {
    absl::StatusOr<topology::Observations> one = topology::FetchAgent(url, o.agents_http);
    if (!one.ok()) return one.status();
    topology::Merge(all, *std::move(one));
  }
  for (const std::string& path : o.snapshot_paths) {
    absl::StatusOr<topology::Observations> one = topology::ReadSnapshotFile(path);
    if (!one.ok()) return one.status();
    topology::Merge(all, *std::move(one));
  }
  return all;
}

absl::Status Write(const Options& o, const std::string& text) {
  if (o.output_path.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return absl::OkStatus();
  }
  std::ofstream out(o.output_path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InvalidArgumentError(fmt::format("-o {}: {}", o.output_path, std::strerror(errno)));
  out << text;
  out.close();
  if (!out) return absl::UnavailableError(fmt::format("-o {}: write failed", o.output_path));
  return absl::OkStatus();
}

// The edges of `b` not in `a`, by (src, dst, dst_port).
nlohmann::ordered_json EdgesNotIn(const topology::Graph& b, const topology::Graph& a) {
  std::map<std::tuple<std::string, std::string, uint16_t>, bool> in_a;
  for (const topology::Edge& e : a.edges) in_a[{e.src, e.dst, e.dst_port}] = true;
  topology::Graph only;
  for (const topology::Edge& e : b.edges)
    if (!in_a.contains({e.src, e.dst, e.dst_port})) only.edges.push_back(e);
  return topology::GraphJson(only)["edges"];
}

}  // namespace

absl::Status RunTopology(const Options& o) {
  absl::StatusOr<topology::GroupBy> group_by = topology::ParseGroupBy(o.group_by);
  if (!group_by.ok()) return group_by.status();
  absl::StatusOr<topology::Format> format = topology::ParseFormat(o.format);
  if (!format.ok()) return format.status();
  const absl::Time now = absl::Now();

  if (!o.diff.empty()) {
    std::vector<topology::Graph> graphs;
    for (const std::string& text : o.diff) {
      absl::StatusOr<topology::Window> w = topology::ParseWindow(text, now);
      if (!w.ok()) return w.status();
      absl::StatusOr<topology::Observations> obs = Load(o, *w);
      // An empty window is a graph without edges here, not an error: the
      // point of a diff is that things come and go.
      if (!obs.ok() && !absl::IsNotFound(obs.status())) return obs.status();
      graphs.push_back(topology::Join(obs.ok() ? *obs : topology::Observations{}, *group_by));
    }
    nlohmann::ordered_json doc = {{"a", o.diff[0]},
                                  {"b", o.diff[1]},
                                  {"appeared", EdgesNotIn(graphs[1], graphs[0])},
                                  {"disappeared", EdgesNotIn(graphs[0], graphs[1])}};
    return Write(o, doc.dump(2) + "\n");
  }

  absl::StatusOr<topology::Window> w = topology::ParseWindow(o.window, now);
  if (!w.ok()) return w.status();
  absl::StatusOr<topology::Observations> obs = Load(o, *w);
  if (!obs.ok()) return obs.status();
  if (obs->instances.empty() && obs->connections.empty())
    return absl::NotFoundError("topology: the sources hold no services and no connections");
  topology::Graph g = topology::Join(*obs, *group_by);
  absl::StatusOr<std::string> text = topology::Render(g, *format);
  if (!text.ok()) return text.status();
  return Write(o, *text);
}

}  // namespace svcmap::app
