#ifndef SVCMAP_SCAN_TRACKER_H_
#define SVCMAP_SCAN_TRACKER_H_

// Turns successive scans of the kernel's socket tables into the lifecycle
// events and live sockets the BPF backends produce: a socket seen for the
// first time opened, one no longer listed closed. Pure: scans in, events out.

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "svcmap/flow/sock.h"
#include "svcmap/scan/inet_diag.h"

namespace svcmap::scan {

struct NetnsScan {
  uint32_t netns = 0;
  std::vector<DiagSock> socks;
};

// TCP's own payload counts for a socket in `state`: tcp_info's bytes_acked
// counts the SYN of an active opener and an acknowledged FIN, and
// bytes_received counts a received FIN; neither is payload.
void PayloadBytes(const DiagSock& s, flow::Role role, uint64_t& sent, uint64_t& received);

class SocketTracker {
 public:
  // Inodes in `scans` whose owner is not known yet: only these need the
  // walk over /proc/<pid>/fd. An inode a walk could not place (held by a
  // process in another pid namespace, or by the kernel) is left out for
  // kRetryScans scans: otherwise every scan would walk every process.
  absl::flat_hash_set<uint64_t> UnknownInodes(const std::vector<NetnsScan>& scans) const;
  // Records which of `wanted` the walk did not find.
  void NoteUnresolved(const absl::flat_hash_set<uint64_t>& wanted,
                      const absl::flat_hash_map<uint64_t, flow::Owner>& found);
  static constexpr uint64_t kRetryScans = 30;

  // Applies one complete scan taken at `now_ns` (boot time). The first scan
  // only seeds: what it finds existed before svcmap. Sockets of a netns in
  // `failed_netns` (could not be read this time) are kept as they were.
  std::vector<flow::SockEvent> Apply(const std::vector<NetnsScan>& scans,
                                     const absl::flat_hash_map<uint64_t, flow::Owner>& owners,
                                     const absl::flat_hash_set<uint32_t>& failed_netns,
                                     uint64_t now_ns);

  // The processes that own tracked sockets, busiest first: where the
  // owners of new sockets are most likely to be found.
  std::vector<uint32_t> OwnerPids() const;

  // Every socket of the last scan.
  std::vector<flow::SockRecord> Live() const;
  size_t size() const { return socks_.size(); }
  uint64_t seeded() const { return seeded_; }
  uint64_t seeded_listeners() const { return seeded_listeners_; }
  uint64_t seed_unowned() const { return seed_unowned_; }

 private:
  struct Key {
    uint32_t netns;
    uint64_t id;  // socket cookie, or inode without sock_diag
    friend bool operator==(const Key&, const Key&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.netns, k.id);
    }
  };
  // Kept small: this is the scanner's per-socket memory. Process details
  // (comm, cgroup) live once per process in owners_.
  struct Entry {
    flow::IpAddr local_ip;
    flow::IpAddr remote_ip;
    uint16_t local_port = 0;
    uint16_t remote_port = 0;
    uint8_t state = 0;
    flow::Role role = flow::Role::kUnknown;
    bool owned = false;
    bool seeded = false;
    bool seen = false;  // in the scan being applied
    bool tcp_info = false;  // bytes are tcp_info's (sock_diag), not unknown
    uint64_t inode = 0;
    uint64_t open_ns = 0;
    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;
    // tcp_info's, as of the last scan that listed it; what its close says.
    uint32_t total_retrans = 0;
    uint32_t rtt_us = 0;
    uint32_t min_rtt_us = 0;
    flow::ProcessKey process;
  };
  flow::SockRecord Record(const Key& k, const Entry& e) const;

  absl::flat_hash_map<Key, Entry> socks_;
  absl::flat_hash_map<flow::ProcessKey, flow::Owner> owners_;
  bool first_ = true;
  uint64_t scan_number_ = 0;
  struct Unresolved {
    uint64_t marked;     // scan whose walk did not find it
    uint64_t last_seen;  // scan that last listed it
  };
  absl::flat_hash_map<uint64_t, Unresolved> unresolved_;  // by inode
  uint64_t seeded_ = 0, seeded_listeners_ = 0, seed_unowned_ = 0;
};

}  // namespace svcmap::scan

#endif  // SVCMAP_SCAN_TRACKER_H_
