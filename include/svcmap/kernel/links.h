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

// Detaches every link, one after another, the last attached first.
// Closing a tracepoint or trampoline link waits for RCU grace periods
// (50-100 ms each on the 6.18 host), and detaching them side by side from
// threads halved that. It also crashed Debian's 6.12.95 under qemu: with two
// svcmap processes starting and stopping at once, a syscall's exit met the
// int3 of a text patch whose descriptor was already gone ("Oops: int3" in
// syscall_exit_to_user_mode_prepare, the sys_exit tracepoint's static call;
// twice in one CI run, and scripts/attach-stress at its 48th round).
// Serially, 80 rounds passed. A tracer must not risk its node to start faster.
void DetachAll(std::vector<LinkPtr>& links);

}  // namespace svcmap::kernel

#endif  // SVCMAP_KERNEL_LINKS_H_
