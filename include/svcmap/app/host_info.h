#ifndef SVCMAP_APP_HOST_INFO_H_
#define SVCMAP_APP_HOST_INFO_H_

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace svcmap::app {

std::string Hostname();

// The machine an agent reports: the host name, or "<host>/<netns>" when it
// watches one network namespace by --netns (several agents on one host,
// one per namespace, are then several machines to the topology).
std::string MachineName(const std::string& netns_path);

// The inode that identifies a network namespace: of the file at `path`
// (e.g. /run/netns/web), or of this process's own namespace when empty.
absl::StatusOr<uint32_t> NetnsInode(const std::string& path);

// The first non-loopback, non-link-local address of a namespace, IPv4
// preferred: of `netns_path`, or of our own when empty. Entering the
// namespace happens on a short-lived thread, so the process stays put.
absl::StatusOr<std::string> FirstAddress(const std::string& netns_path);

// The address of every other network namespace that has one, by inode:
// where a pod's or container's services are reached.
absl::flat_hash_map<uint32_t, std::string> NetnsAddresses();

}  // namespace svcmap::app

#endif  // SVCMAP_APP_HOST_INFO_H_
