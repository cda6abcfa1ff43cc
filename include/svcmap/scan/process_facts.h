#ifndef SVCMAP_SCAN_PROCESS_FACTS_H_
#define SVCMAP_SCAN_PROCESS_FACTS_H_

#include <string_view>

#include "svcmap/flow/sock.h"
#include "svcmap/identity/naming.h"

namespace svcmap::scan {

// exe, cmdline and cgroup v2 path of a process, if it is still the process
// we mean (same PID and start time, compared in clock ticks); all empty
// otherwise. `comm` is left to the caller, who has the kernel's.
identity::ProcessFacts ReadProcessFacts(const flow::ProcessKey& key,
                                        std::string_view proc_root = "/proc");

}  // namespace svcmap::scan

#endif  // SVCMAP_SCAN_PROCESS_FACTS_H_
