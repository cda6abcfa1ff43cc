#include "svcmap/kernel/libbpf_error.h"

#include <bpf/libbpf.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "fmt/format.h"

namespace svcmap::kernel {
namespace {

std::atomic<bool> g_verbose{false};

int PrintLibbpf(enum libbpf_print_level level, const char* format, va_list args) {
  if (!g_verbose.load(std::memory_order_relaxed)) return 0;
  return std::vfprintf(stderr, format, args);
}

absl::StatusCode CodeFor(int err) {
  switch (err) {
    case EPERM:
    case EACCES: return absl::StatusCode::kPermissionDenied;
    case ENOENT: return absl::StatusCode::kNotFound;
    case EINVAL: return absl::StatusCode::kInvalidArgument;
    case E2BIG:
    case ENOMEM:
    case ENOSPC: return absl::StatusCode::kResourceExhausted;
    case EOPNOTSUPP: return absl::StatusCode::kUnimplemented;
    default: return absl::StatusCode::kInternal;
  }
}

}  // namespace

std::string ErrnoText(int err) {
  err = std::abs(err);
  const char* name = strerrorname_np(err);
  return fmt::format("{} ({})", name ? name : fmt::format("errno {}", err),
                     std::strerror(err));
}

absl::Status LibbpfError(int err, std::string_view what) {
  err = std::abs(err);
  return absl::Status(CodeFor(err), fmt::format("{}: {}", what, ErrnoText(err)));
}

void SetLibbpfVerbose(bool verbose) {
  g_verbose.store(verbose, std::memory_order_relaxed);
  libbpf_set_print(PrintLibbpf);
}

}  // namespace svcmap::kernel
