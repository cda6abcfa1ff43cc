#include "svcmap/scan/process_facts.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "fmt/format.h"
#include "svcmap/scan/proc_parse.h"

namespace svcmap::scan {
namespace {

std::string ReadAll(int dirfd, const char* name) {
  std::string out;
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || out.size() > (1u << 20)) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

}  // namespace

identity::ProcessFacts ReadProcessFacts(const flow::ProcessKey& key, std::string_view proc_root) {
  identity::ProcessFacts f;
  std::string dir = fmt::format("{}/{}", proc_root, key.pid);
  int d = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d < 0) return f;
  // Everything is read through one directory fd, and the start time is
  // checked first: a PID reused meanwhile would be another process.
  absl::StatusOr<ProcStat> st = ParseProcStat(ReadAll(d, "stat"));
  if (!st.ok() || st->start_ticks * flow::kNsPerClockTick != key.start_ns) {
    close(d);
    return f;
  }
  // cmdline before exe, and nothing of either unless both were read: a
  // process exiting between the two reads (its mm gone) would otherwise be
  // named by its exe where a --name-rule on its cmdline names it (seen in
  // the kernel matrix: "svcmap-peer" for "e2e-client"). Without them the
  // namer falls back to the comm, which the kernel handed us.
  f.cmdline = ReadAll(d, "cmdline");
  std::replace(f.cmdline.begin(), f.cmdline.end(), '\0', ' ');
  while (!f.cmdline.empty() && f.cmdline.back() == ' ') f.cmdline.pop_back();
  char exe[4096];
  ssize_t n = readlinkat(d, "exe", exe, sizeof(exe) - 1);
  if (n > 0 && !f.cmdline.empty()) f.exe.assign(exe, static_cast<size_t>(n));
  std::string cgroup = ReadAll(d, "cgroup");
  // cgroup v2: the "0::<path>" line.
  for (size_t at = 0; at < cgroup.size();) {
    size_t nl = cgroup.find('\n', at);
    std::string_view line = std::string_view(cgroup).substr(at, nl - at);
    if (line.substr(0, 3) == "0::") f.cgroup = std::string(line.substr(3));
    at = nl == std::string::npos ? cgroup.size() : nl + 1;
  }
  close(d);
  return f;
}

}  // namespace svcmap::scan
