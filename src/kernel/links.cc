#include "svcmap/kernel/links.h"

#include <bpf/libbpf.h>

#include <thread>

namespace svcmap::kernel {

void LinkDeleter::operator()(bpf_link* l) const { bpf_link__destroy(l); }

void DetachAll(std::vector<LinkPtr>& links) {
  if (links.size() < 2) {
    links.clear();
    return;
  }
  std::vector<std::jthread> detachers;
  detachers.reserve(links.size());
  for (LinkPtr& link : links)
    detachers.emplace_back([l = std::move(link)]() mutable { l.reset(); });
  detachers.clear();  // joins
  links.clear();
}

}  // namespace svcmap::kernel
