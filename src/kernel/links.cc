#include "svcmap/kernel/links.h"

#include <bpf/libbpf.h>

namespace svcmap::kernel {

void LinkDeleter::operator()(bpf_link* l) const { bpf_link__destroy(l); }

void DetachAll(std::vector<LinkPtr>& links) {
  // Last attached, first detached; one at a time (see the header).
  while (!links.empty()) links.pop_back();
}

}  // namespace svcmap::kernel
