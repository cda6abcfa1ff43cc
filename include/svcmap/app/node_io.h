#ifndef SVCMAP_APP_NODE_IO_H_
#define SVCMAP_APP_NODE_IO_H_

#include <memory>

#include "svcmap/node/session.h"

namespace svcmap::app {

// The real node under a session: /proc for process facts and exits,
// rtnetlink for namespace addresses, conntrack for NATs (`conntrack` false:
// every destination is taken as it was dialled).
std::unique_ptr<node::NodeIo> RealNodeIo(bool conntrack);

}  // namespace svcmap::app

#endif  // SVCMAP_APP_NODE_IO_H_
