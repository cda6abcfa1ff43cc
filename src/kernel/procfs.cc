#include "svcmap/kernel/procfs.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "fmt/format.h"

namespace svcmap::kernel {

absl::StatusOr<uint64_t> ParseStatStartTicks(std::string_view stat) {
  size_t close = stat.rfind(')');
  if (close == std::string_view::npos)
    return absl::InvalidArgumentError("stat: no ')' after comm");
  // After ") " come fields 3 (state) onwards; starttime is field 22.
  // Debian's Abseil is built with its own string_view, not std's.
  std::string_view rest = stat.substr(close + 1);
  std::vector<absl::string_view> fields = absl::StrSplit(
      absl::string_view(rest.data(), rest.size()), ' ', absl::SkipEmpty());
  constexpr size_t kStartTimeIndex = 22 - 3;
  if (fields.size() <= kStartTimeIndex)
    return absl::InvalidArgumentError(
        fmt::format("stat: {} fields after comm, want > {}", fields.size(), kStartTimeIndex));
  uint64_t ticks = 0;
  if (!absl::SimpleAtoi(fields[kStartTimeIndex], &ticks))
    return absl::InvalidArgumentError("stat: starttime is not a number");
  return ticks;
}

uint64_t StartNsToTicks(uint64_t start_ns, long ticks_per_second) {
  if (ticks_per_second <= 0) return 0;
  return start_ns / (1'000'000'000ULL / static_cast<uint64_t>(ticks_per_second));
}

std::string ReadExe(const flow::ProcessKey& key, std::string_view proc_root) {
  std::string dir = fmt::format("{}/{}", proc_root, key.pid);
  std::ifstream in(dir + "/stat");
  std::stringstream buf;
  buf << in.rdbuf();
  absl::StatusOr<uint64_t> ticks = ParseStatStartTicks(buf.str());
  static const long kTicks = sysconf(_SC_CLK_TCK);
  if (!ticks.ok() || *ticks != StartNsToTicks(key.start_ns, kTicks)) return {};
  char exe[4096];
  ssize_t n = readlink((dir + "/exe").c_str(), exe, sizeof(exe) - 1);
  if (n <= 0) return {};
  return std::string(exe, static_cast<size_t>(n));
}

}  // namespace svcmap::kernel
