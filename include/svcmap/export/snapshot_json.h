#ifndef SVCMAP_EXPORT_SNAPSHOT_JSON_H_
#define SVCMAP_EXPORT_SNAPSHOT_JSON_H_

#include <cstdint>
#include <string>

#include "nlohmann/json.hpp"
#include "svcmap/flow/service_view.h"

namespace svcmap::exporter {

// The snapshot document's "schema_version" (topology::ParseSnapshot reads
// only this one).
inline constexpr int kSnapshotSchemaVersion = 1;

struct InstanceInfo {
  std::string hostname;
  std::string instance_ip;
  std::string netns;      // the --netns path, or "host"
  uint32_t netns_inode = 0;
  std::string backend;
  double duration_s = 0;
  // What the topology calls this machine: the host name, and the netns
  // when only one is watched (app::MachineName).
  std::string machine;
};

struct SnapshotStats {
  uint64_t ringbuf_drops = 0;
  uint64_t socks_full = 0;
  uint64_t decode_errors = 0;
  uint64_t tcp_corrected = 0;
  uint64_t traffic_overflow = 0;
  uint64_t unowned_closes = 0;  // accepted, then closed before any I/O
  uint64_t seeded_sockets = 0;  // found at start-up, already open
  uint64_t seeded_listeners = 0;
  uint64_t seed_unowned = 0;    // open at start-up, no process holds them
  uint64_t seed_rescued = 0;    // found only by a second iterator walk
  uint64_t scans = 0;           // procfs backend
  uint64_t scan_errors = 0;
  uint64_t track_errors = 0;         // kernel: socks map update failed, socket not tracked
  uint64_t recursion_misses = 0;     // kernel: program runs skipped, one already on that CPU
  uint64_t connect_ends_unseen = 0;  // failed connects whose ending was not seen
  uint64_t established_unseen = 0;   // connects whose ESTABLISHED was not seen, found at close
};

// How many of the connections the kernel opened while we watched we saw:
// the kernel's ActiveOpens + PassiveOpens (per netns, /proc/net/snmp) against
// the sockets the backend reported.
struct Completeness {
  bool known = false;  // the counters could be read
  uint64_t active_opens = 0;
  uint64_t passive_opens = 0;
  uint64_t seen = 0;
};

// Converts since-boot nanoseconds to wall-clock time for output.
struct Clock {
  int64_t realtime_minus_boottime_ns = 0;
  std::string Rfc3339(uint64_t boot_ns) const;
  // Same text, appended; remembers the last second it formatted, since
  // events come in bursts within one second.
  void AppendRfc3339(std::string& out, uint64_t boot_ns) const;
};

// The snapshot document: instance, services (SERVICE), connections
// (SERVICE_CONNECTION) and traffic (NETWORK_TRAFFIC), with the data model's
// field names. Pure: same input, same bytes.
nlohmann::ordered_json SnapshotJson(const InstanceInfo& instance,
                                    const flow::ServiceGraph& graph,
                                    const SnapshotStats& stats, const Completeness& completeness,
                                    const Clock& clock);

// The same document as text (`indent` as nlohmann's dump: -1 compact),
// with the traffic rows written straight into the string: as a DOM, the
// rows of 65,536 connections took ~60 MB.
std::string SnapshotText(const InstanceInfo& instance, const flow::ServiceGraph& graph,
                         const SnapshotStats& stats, const Completeness& completeness,
                         const Clock& clock, int indent);

}  // namespace svcmap::exporter

#endif  // SVCMAP_EXPORT_SNAPSHOT_JSON_H_
