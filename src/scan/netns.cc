#include "svcmap/scan/netns.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "fmt/format.h"

namespace svcmap::scan {
namespace {

bool IsPid(const char* name) {
  if (*name == '\0') return false;
  for (const char* p = name; *p; ++p)
    if (*p < '0' || *p > '9') return false;
  return true;
}

}  // namespace

uint32_t NetnsInodeOf(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint32_t>(st.st_ino);
}

NetnsList ListNetns(std::string_view proc_root, std::string_view run_netns) {
  NetnsList out;
  absl::flat_hash_map<uint32_t, std::string> seen;
  std::string self = fmt::format("{}/self/ns/net", proc_root);
  uint32_t own = NetnsInodeOf(self);
  if (own != 0) seen.emplace(own, fmt::format("{}/{}/ns/net", proc_root, getpid()));

  auto add = [&](std::string path) {
    uint32_t ino = NetnsInodeOf(path);
    if (ino == 0) {
      ++out.unreadable;
      return;
    }
    seen.try_emplace(ino, std::move(path));
  };
  if (DIR* d = opendir(std::string(proc_root).c_str())) {
    while (dirent* e = readdir(d))
      if (IsPid(e->d_name)) add(fmt::format("{}/{}/ns/net", proc_root, e->d_name));
    closedir(d);
  }
  if (DIR* d = opendir(std::string(run_netns).c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') add(fmt::format("{}/{}", run_netns, e->d_name));
    closedir(d);
  }
  for (auto& [ino, path] : seen) out.namespaces.push_back(NetnsRef{ino, std::move(path)});
  std::sort(out.namespaces.begin(), out.namespaces.end(),
            [own](const NetnsRef& a, const NetnsRef& b) {
              if ((a.inode == own) != (b.inode == own)) return a.inode == own;
              return a.inode < b.inode;
            });
  return out;
}

absl::Status RunInNetns(const std::string& path, absl::FunctionRef<void()> fn) {
  // Our own namespace needs no thread, and no CAP_SYS_ADMIN for setns().
  static const uint32_t own = NetnsInodeOf("/proc/thread-self/ns/net");
  if (own != 0 && NetnsInodeOf(path) == own) {
    fn();
    return absl::OkStatus();
  }
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return absl::NotFoundError(fmt::format("{}: {}", path, std::strerror(errno)));
  int err = 0;
  std::thread t([&] {
    if (setns(fd, CLONE_NEWNET) != 0) {
      err = errno;
      return;
    }
    fn();
  });
  t.join();
  close(fd);
  if (err != 0)
    return absl::PermissionDeniedError(fmt::format("setns {}: {}", path, std::strerror(err)));
  return absl::OkStatus();
}

}  // namespace svcmap::scan
