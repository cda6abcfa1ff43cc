#ifndef SVCMAP_APP_TRACE_FORMAT_H_
#define SVCMAP_APP_TRACE_FORMAT_H_

#include <string>

#include "svcmap/export/snapshot_json.h"
#include "svcmap/flow/sock.h"

namespace svcmap::app {

// One line of `svcmap trace`, under 100 columns.
std::string TraceHeader();
std::string TraceLine(const flow::SockEvent& ev, const exporter::Clock& clock);
// One JSON object (no newline) of `svcmap trace --json`.
std::string TraceJson(const flow::SockEvent& ev, const exporter::Clock& clock);
// The same, appended to `out`, which callers reuse across events.
void AppendTraceJson(std::string& out, const flow::SockEvent& ev, const exporter::Clock& clock);

}  // namespace svcmap::app

#endif  // SVCMAP_APP_TRACE_FORMAT_H_
