#ifndef SVCMAP_EXPORT_OBSERVATIONS_H_
#define SVCMAP_EXPORT_OBSERVATIONS_H_

// This node's service graph as the topology join's input, directly: what
// topology::ParseSnapshot would read back from SnapshotText, without the
// JSON in between (svcmap top and the agent's /map join their own node on
// every refresh).

#include "svcmap/export/snapshot_json.h"
#include "svcmap/flow/service_view.h"
#include "svcmap/topology/model.h"

namespace svcmap::exporter {

topology::Observations ToObservations(const InstanceInfo& instance, const flow::ServiceGraph& graph);

}  // namespace svcmap::exporter

#endif  // SVCMAP_EXPORT_OBSERVATIONS_H_
