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
// Closing a tracepoint or trampoline link waits for an RCU grace period
// (tracepoint_synchronize_unregister(), synchronize_rcu_tasks()): 50-100 ms
// each on the 6.18 host, seconds under qemu's emulation. Waiters that
// overlap share a grace period, so N links cost about one.
void DetachAll(std::vector<LinkPtr>& links);

}  // namespace svcmap::kernel

#endif  // SVCMAP_KERNEL_LINKS_H_
