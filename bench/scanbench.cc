// svcmap-scanbench: what a scan of the kernel's socket tables costs, next
// to iproute2's `ss -tinp` on the same sockets, and what the scanner and
// the flow table keep per socket.
//
//   sudo svcmap-scanbench [--conns N] [--rounds R]   # scan cost, N connections
//   svcmap-scanbench --memory [--flows N]             # bytes per tracked flow
//
// The scan phase opens N loopback connections (2N established sockets) in
// this process, then alternates: a cold svcmap scan (fresh state: netns
// walk, sock_diag dump with tcp_info, /proc/<pid>/fd walk, tracker), then
// `ss -tinp` with its output thrown away. Rounds are paired so both see the
// same machine state; it prints medians and their ratio as JSON.
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "svcmap/flow/flow_table.h"
#include "svcmap/kernel/procfs_backend.h"
#include "svcmap/scan/netns.h"
#include "svcmap/scan/owners.h"
#include "svcmap/scan/sock_diag.h"
#include "svcmap/scan/tracker.h"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "svcmap-scanbench: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// N client sockets connected to one listener, all accepted: 2N established.
std::vector<int> OpenConnections(int n) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);  // up to the hard limit; never fatal
  if (rl.rlim_cur < static_cast<rlim_t>(2 * n + 64)) {
    errno = EMFILE;
    Die("RLIMIT_NOFILE hard limit too low for --conns");
  }
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (lfd < 0 || bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      listen(lfd, 4096) != 0)
    Die("listen");
  socklen_t len = sizeof(a);
  getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  std::vector<int> fds{lfd};
  for (int i = 0; i < n; ++i) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || connect(c, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) Die("connect");
    int s = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (s < 0) Die("accept");
    fds.push_back(c);
    fds.push_back(s);
  }
  return fds;
}

double RunSs() {
  auto t0 = Clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    execlp("ss", "ss", "-tinp", static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "svcmap-scanbench: ss -tinp failed\n");
    std::exit(1);
  }
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

int ScanBench(int conns, int rounds) {
  std::vector<int> fds = OpenConnections(conns);
  const double sockets = 2.0 * conns;
  std::vector<double> cold, ss, warm;
  size_t found = 0;
  svcmap::kernel::ProcfsOptions opts;
  auto warm_backend = svcmap::kernel::ProcfsBackend::Create(opts);
  if (!warm_backend.ok()) Die("procfs backend");
  (void)(*warm_backend)->ReadLive();
  for (int r = 0; r < rounds; ++r) {
    auto b = svcmap::kernel::ProcfsBackend::Create(opts);
    auto t0 = Clock::now();
    auto live = (*b)->ReadLive();
    cold.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    if (!live.ok()) Die("scan");
    found = live->size();
    ss.push_back(RunSs());
    t0 = Clock::now();
    (void)(*warm_backend)->ReadLive();
    warm.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  std::vector<double> ratio;
  for (int r = 0; r < rounds; ++r) ratio.push_back(cold[r] / ss[r]);
  // Where a cold scan's time goes, stage by stage.
  std::vector<double> t_ns, t_dump, t_owners, t_apply;
  for (int r = 0; r < rounds; ++r) {
    auto t0 = Clock::now();
    svcmap::scan::NetnsList list = svcmap::scan::ListNetns();
    auto t1 = Clock::now();
    std::vector<svcmap::scan::NetnsScan> scans;
    for (const auto& ns : list.namespaces) {
      svcmap::scan::NetnsSockets got;
      (void)svcmap::scan::RunInNetns(ns.path, [&] { got = svcmap::scan::ReadCurrentNetns(true); });
      scans.push_back({ns.inode, std::move(got.socks)});
    }
    auto t2 = Clock::now();
    svcmap::scan::SocketTracker tracker;
    absl::flat_hash_set<uint64_t> unknown = tracker.UnknownInodes(scans);
    svcmap::scan::SocketOwners owners = svcmap::scan::ScanSocketOwners(&unknown);
    auto t3 = Clock::now();
    tracker.Apply(scans, owners.by_inode, {}, 1);
    auto live = tracker.Live();
    auto t4 = Clock::now();
    auto us = [](auto a, auto b) { return std::chrono::duration<double, std::micro>(b - a).count(); };
    t_ns.push_back(us(t0, t1));
    t_dump.push_back(us(t1, t2));
    t_owners.push_back(us(t2, t3));
    t_apply.push_back(us(t3, t4));
  }
  std::fprintf(stderr,
               "cold scan stages (median us): netns list %.0f, sock_diag dumps %.0f, "
               "/proc fd walk %.0f, tracker %.0f\n",
               Median(t_ns), Median(t_dump), Median(t_owners), Median(t_apply));
  std::printf(
      "{\"established_sockets\": %.0f, \"owned_sockets_found\": %zu, \"rounds\": %d, "
      "\"svcmap_cold_us_per_socket\": %.3f, \"svcmap_warm_us_per_socket\": %.3f, "
      "\"ss_tinp_us_per_socket\": %.3f, \"median_pair_ratio_cold_over_ss\": %.3f}\n",
      sockets, found, rounds, Median(cold) / sockets, Median(warm) / sockets,
      Median(ss) / sockets, Median(ratio));
  for (int fd : fds) close(fd);
  return 0;
}

// Small chunks (uordblks) and the big ones malloc mmaps (hblkhd): the hash
// tables are mostly the latter.
size_t HeapInUse() {
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

int MemoryBench(int flows) {
  using svcmap::flow::IpAddr;
  // The scanner: `flows` established client sockets of one process.
  std::vector<svcmap::scan::NetnsScan> scan(1);
  scan[0].netns = 1;
  absl::flat_hash_map<uint64_t, svcmap::flow::Owner> owners;
  svcmap::flow::Owner o;
  o.process = {42, 1'000'000'000};
  o.comm = "loadgen";
  for (int i = 0; i < flows; ++i) {
    svcmap::scan::DiagSock s;
    s.family = AF_INET;
    s.state = 1;
    s.local_ip = IpAddr::V4(10, 0, static_cast<uint8_t>(i >> 16), 1);
    s.remote_ip = IpAddr::V4(10, 1, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i));
    s.local_port = static_cast<uint16_t>(i);
    s.remote_port = 5432;
    s.cookie = 1000 + i;
    s.inode = 5000 + i;
    s.bytes_acked = 100;
    s.bytes_received = 100;
    scan[0].socks.push_back(s);
    owners.emplace(s.inode, o);
  }
  size_t before = HeapInUse();
  svcmap::scan::SocketTracker tracker;
  tracker.Apply(scan, owners, {}, 1);
  size_t tracker_bytes = HeapInUse() - before;

  // The flow table: `flows` distinct closed flows (distinct processes, so
  // that none aggregate) and their NETWORK_TRAFFIC rows.
  before = HeapInUse();
  svcmap::flow::FlowTableOptions fo;
  fo.max_traffic_rows = static_cast<size_t>(flows);
  svcmap::flow::FlowTable table(fo);
  for (int i = 0; i < flows; ++i) {
    svcmap::flow::SockRecord s;
    s.sock_id = 1000 + i;
    s.open_ns = 1;
    s.netns = 1;
    s.role = svcmap::flow::Role::kClient;
    s.established = true;
    s.owner.process = {static_cast<uint32_t>(i + 1), 1};
    s.local_ip = scan[0].socks[i].local_ip;
    s.remote_ip = scan[0].socks[i].remote_ip;
    s.local_port = scan[0].socks[i].local_port;
    s.remote_port = 5432;
    s.bytes_sent = 100;
    if (table.BeginClose(s.key())) table.ApplyClose(s, s.role, 2);
  }
  size_t table_bytes = HeapInUse() - before;
  std::printf(
      "{\"flows\": %d, \"scanner_bytes_per_socket\": %.1f, "
      "\"flow_table_bytes_per_flow\": %.1f, \"tracked_sockets\": %zu}\n",
      flows, static_cast<double>(tracker_bytes) / flows,
      static_cast<double>(table_bytes) / flows, tracker.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int conns = 5000, rounds = 15, flows = 65536;
  bool memory = false;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--memory") memory = true;
    else if (k == "--conns" && i + 1 < argc) conns = std::clamp(std::atoi(argv[++i]), 1, 9000);
    else if (k == "--rounds" && i + 1 < argc) rounds = std::clamp(std::atoi(argv[++i]), 1, 200);
    else if (k == "--flows" && i + 1 < argc) flows = std::clamp(std::atoi(argv[++i]), 1, 1 << 22);
    else {
      std::fprintf(stderr, "usage: svcmap-scanbench [--conns N] [--rounds R] | --memory [--flows N]\n");
      return 2;
    }
  }
  return memory ? MemoryBench(flows) : ScanBench(conns, rounds);
}
