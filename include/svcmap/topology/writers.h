#ifndef SVCMAP_TOPOLOGY_WRITERS_H_
#define SVCMAP_TOPOLOGY_WRITERS_H_

// The service graph as JSON, Graphviz DOT, a Mermaid flowchart (the seed's
// picture), SVG (rendered by Graphviz's library) and one self-contained
// HTML page. All but SVG and HTML are pure.

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "svcmap/topology/graph.h"

namespace svcmap::topology {

enum class Format { kJson, kDot, kMermaid, kSvg, kHtml };
absl::StatusOr<Format> ParseFormat(std::string_view text);

// {"nodes":[...],"edges":[...],"unmatched":[...]}, field names as in
// docs/topology.md.
nlohmann::ordered_json GraphJson(const Graph& g);

// A cluster per machine, external destinations apart; each edge labelled
// with its protocol guess and bytes, and given the id "e<index>" so that a
// page can find it in the rendered SVG.
std::string GraphDot(const Graph& g);

// flowchart LR with a subgraph per machine, as in the seed.
std::string GraphMermaid(const Graph& g);

// GraphDot laid out by Graphviz's dot engine (libgvc).
absl::StatusOr<std::string> GraphSvg(const Graph& g);

// The SVG, the edge table and the unmatched list in one page with no
// external resources.
absl::StatusOr<std::string> GraphHtml(const Graph& g, std::string_view title);

absl::StatusOr<std::string> Render(const Graph& g, Format f);

// 1536 -> "1.5 KiB".
std::string HumanBytes(uint64_t bytes);

}  // namespace svcmap::topology

#endif  // SVCMAP_TOPOLOGY_WRITERS_H_
