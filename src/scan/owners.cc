#include "svcmap/scan/owners.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fmt/format.h"
#include "svcmap/scan/proc_parse.h"

namespace svcmap::scan {
namespace {

std::optional<uint32_t> PidOf(const char* name) {
  uint32_t pid = 0;
  if (*name == '\0') return std::nullopt;
  for (const char* p = name; *p; ++p) {
    if (*p < '0' || *p > '9') return std::nullopt;
    pid = pid * 10 + static_cast<uint32_t>(*p - '0');
  }
  return pid;
}

bool ReadSmallFile(int dirfd, const char* name, std::string& out) {
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  out.clear();
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return !out.empty();
}

// cgroup v2: "0::/system.slice/x.service" -> the id of that cgroup, which
// is its directory's inode number (what bpf_get_current_cgroup_id returns).
uint64_t CgroupId(int piddir, std::string_view proc_root) {
  std::string text;
  if (!ReadSmallFile(piddir, "cgroup", text)) return 0;
  size_t at = text.find("0::");
  if (at == std::string::npos || (at != 0 && text[at - 1] != '\n')) return 0;
  size_t end = text.find('\n', at);
  std::string path = "/sys/fs/cgroup" + text.substr(at + 3, end - at - 3);
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

}  // namespace

flow::ProcessKey ProcessKeyFromTicks(uint32_t pid, uint64_t start_ticks) {
  return flow::ProcessKey{pid, start_ticks * flow::kNsPerClockTick};
}

namespace {

// Reads one process's socket fds into `out`; false if it vanished.
void WalkProcess(int procfd, uint32_t pid, const char* name,
                 const absl::flat_hash_set<uint64_t>* wanted, std::string_view proc_root,
                 SocketOwners& out, std::vector<uint64_t>& found, std::string& stat_text) {
  ++out.processes;
  int piddir = openat(procfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (piddir < 0) {
    ++out.vanished;
    return;
  }
  int fddir = openat(piddir, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fddir < 0) {
    (errno == ENOENT ? out.vanished : out.unreadable)++;
    close(piddir);
    return;
  }
  DIR* fds = fdopendir(fddir);
  found.clear();
  char link[64];
  while (dirent* f = fds ? readdir(fds) : nullptr) {
    if (f->d_name[0] == '.') continue;
    ssize_t n = readlinkat(fddir, f->d_name, link, sizeof(link));
    if (n <= 0 || n >= static_cast<ssize_t>(sizeof(link))) continue;
    std::optional<uint64_t> ino = ParseSocketLink(std::string_view(link, static_cast<size_t>(n)));
    if (!ino || (wanted && !wanted->contains(*ino)) || out.by_inode.contains(*ino)) continue;
    found.push_back(*ino);
  }
  if (fds)
    closedir(fds);
  else
    close(fddir);
  if (!found.empty()) {
    absl::StatusOr<ProcStat> st = ReadSmallFile(piddir, "stat", stat_text)
                                      ? ParseProcStat(stat_text)
                                      : absl::NotFoundError("gone");
    if (!st.ok()) {
      ++out.vanished;
    } else {
      flow::Owner owner;
      owner.process = ProcessKeyFromTicks(pid, st->start_ticks);
      // The kernel's comm is at most 15 bytes; /proc shows the same.
      owner.comm = std::move(st->comm);
      owner.cgroup_id = CgroupId(piddir, proc_root);
      for (uint64_t ino : found) out.by_inode.emplace(ino, owner);
    }
  }
  close(piddir);
}

}  // namespace

SocketOwners ScanSocketOwners(const absl::flat_hash_set<uint64_t>* wanted,
                              std::string_view proc_root, const std::vector<uint32_t>& first) {
  SocketOwners out;
  std::string root(proc_root);
  DIR* proc = opendir(root.c_str());
  if (proc == nullptr) return out;
  std::vector<uint64_t> found;
  std::string stat_text;
  auto done = [&] { return wanted != nullptr && out.by_inode.size() >= wanted->size(); };
  absl::flat_hash_set<uint32_t> walked;
  for (uint32_t pid : first) {
    if (done()) break;
    if (!walked.insert(pid).second) continue;
    WalkProcess(dirfd(proc), pid, std::to_string(pid).c_str(), wanted, proc_root, out, found,
                stat_text);
  }
  while (dirent* e = done() ? nullptr : readdir(proc)) {
    std::optional<uint32_t> pid = PidOf(e->d_name);
    if (!pid || walked.contains(*pid)) continue;
    WalkProcess(dirfd(proc), *pid, e->d_name, wanted, proc_root, out, found, stat_text);
  }
  closedir(proc);
  return out;
}

}  // namespace svcmap::scan
