#ifndef SVCMAP_APP_HEALTH_H_
#define SVCMAP_APP_HEALTH_H_

// What the agent's /healthz says is wrong. Pure: the session's and the
// remote writer's state in, one line per problem out (none: healthy).

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "svcmap/export/remote_write.h"
#include "svcmap/node/session.h"

namespace svcmap::app {

// `drain_stall`: how long the event drain may go without coming back to
// the ring buffer (it polls every 100 ms; a scan backend every interval).
std::vector<std::string> Unhealthy(const node::SessionHealth& session,
                                   const std::optional<exporter::RemoteWriteStats>& remote_write,
                                   absl::Duration drain_stall, absl::Time now);

}  // namespace svcmap::app

#endif  // SVCMAP_APP_HEALTH_H_
