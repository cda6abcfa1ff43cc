#ifndef SVCMAP_APP_COMMANDS_H_
#define SVCMAP_APP_COMMANDS_H_

#include "absl/status/status.h"
#include "svcmap/app/options.h"

namespace svcmap::app {

// Runs the subcommand in `options`. SIGINT and SIGTERM must already be
// blocked in every thread (main does it first thing): commands wait for them
// with sigtimedwait and then shut down cleanly, detaching every program.
absl::Status RunCommand(const Options& options);

// `svcmap topology` (src/app/topology_command.cc).
absl::Status RunTopology(const Options& options);

// `svcmap agent` (src/app/agent_command.cc).
absl::Status RunAgent(const Options& options);

}  // namespace svcmap::app

#endif  // SVCMAP_APP_COMMANDS_H_
