#ifndef SVCMAP_APP_MAP_PAGE_H_
#define SVCMAP_APP_MAP_PAGE_H_

#include <string>
#include <string_view>

namespace svcmap::app {

// The agent's /map: one self-contained page that fetches /api/map (the
// graph and its Graphviz SVG) every few seconds, draws it, and puts each
// edge's byte rate (from the last two fetches) on the edge and in a table.
std::string MapPage(std::string_view machine);

}  // namespace svcmap::app

#endif  // SVCMAP_APP_MAP_PAGE_H_
