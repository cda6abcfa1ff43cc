#ifndef SVCMAP_KERNEL_LINKS_H_
#define SVCMAP_KERNEL_LINKS_H_

#include <memory>
#include <vector>

struct bpf_link;

namespace svcmap::kernel {

struct LinkDeleter {
  void operator()(bpf_link* l) const;
};
using LinkPtr = std::unique_ptr<bpf_link, LinkDeleter>;

// Detaches every link, side by side, and returns once all are gone.
// Closing a tracepoint or trampoline link waits for RCU grace periods
// (tracepoint_synchronize_unregister(), synchronize_rcu_tasks()): 50-100 ms
// each on the 6.18 host, more under qemu's emulation. Overlapping waits
// share grace periods: the probe's programs detach in about half the time
// (svcmap probe 0.68 -> 0.31 s on the host).
void DetachAll(std::vector<LinkPtr>& links);

}  // namespace svcmap::kernel

#endif  // SVCMAP_KERNEL_LINKS_H_
