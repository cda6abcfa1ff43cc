#ifndef SVCMAP_SCAN_NETNS_ADDR_H_
#define SVCMAP_SCAN_NETNS_ADDR_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace svcmap::scan {

// The global-scope addresses of the network namespace at `netns_path`
// (IPv4 first, in the kernel's order), read over rtnetlink from here: the
// namespace gets an nsid if it has none, and RTM_GETADDR is asked with
// IFA_TARGET_NETNSID (4.20). Needs CAP_NET_ADMIN, not the CAP_SYS_ADMIN
// that setns() into it would: the agent's unit grants only the former.
absl::StatusOr<std::vector<std::string>> NetnsAddressesOverNetlink(const std::string& netns_path);

}  // namespace svcmap::scan

#endif  // SVCMAP_SCAN_NETNS_ADDR_H_
