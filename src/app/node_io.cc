#include "svcmap/app/node_io.h"

#include <fcntl.h>
#include <unistd.h>

#include "fmt/format.h"
#include "svcmap/app/host_info.h"
#include "svcmap/nat/conntrack.h"
#include "svcmap/scan/netns.h"
#include "svcmap/scan/proc_parse.h"
#include "svcmap/scan/process_facts.h"

namespace svcmap::app {
namespace {

class RealIo final : public node::NodeIo {
 public:
  explicit RealIo(bool conntrack) : conntrack_(conntrack) {}

  identity::ProcessFacts ReadFacts(const flow::ProcessKey& p) override {
    return scan::ReadProcessFacts(p);
  }

  bool Alive(const flow::ProcessKey& p) override {
    // The same PID with another start time is another process; a zombie
    // has exited (its sockets are closed), whenever its parent reaps it.
    std::string path = fmt::format("/proc/{}/stat", p.pid);
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno != ENOENT && errno != ESRCH;
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n <= 0) return false;
    absl::StatusOr<scan::ProcStat> st = scan::ParseProcStat(std::string_view(buf, n));
    return st.ok() && st->start_ticks * flow::kNsPerClockTick == p.start_ns &&
           st->state != 'Z' && st->state != 'X';
  }

  absl::flat_hash_map<uint32_t, std::string> NetnsAddresses() override { return app::NetnsAddresses(); }

  flow::NatAnswer PeekNat(const flow::SockRecord& s) override {
    if (!conntrack_ || resolver_.KnownPlain(s)) return flow::NatAnswer::Plain();
    return flow::NatAnswer::Unknown();
  }

  flow::NatAnswer ResolveNat(const flow::SockRecord& s) override {
    if (!conntrack_) return flow::NatAnswer::Plain();
    std::optional<nat::Endpoint> e = resolver_.Resolve(s);
    if (!e) return flow::NatAnswer::Plain();
    return flow::NatAnswer::Translated(e->ip, e->port);
  }

  void Prune() override {
    if (!conntrack_) return;
    std::vector<uint32_t> alive;
    for (const scan::NetnsRef& ns : scan::ListNetns().namespaces) alive.push_back(ns.inode);
    resolver_.Prune(alive);
  }

  std::vector<std::pair<std::string, uint64_t>> TableSizes() override {
    return {{"conntrack_handles", resolver_.handles()},
            {"conntrack_answers", resolver_.answers()}};
  }

 private:
  const bool conntrack_;
  nat::ConntrackResolver resolver_;
};

}  // namespace

std::unique_ptr<node::NodeIo> RealNodeIo(bool conntrack) { return std::make_unique<RealIo>(conntrack); }

}  // namespace svcmap::app
