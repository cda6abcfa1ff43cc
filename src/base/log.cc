#include "svcmap/base/log.h"

#include <atomic>

namespace svcmap {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
constexpr const char* kNames[] = {"error", "warn", "info", "debug"};

}  // namespace

std::optional<LogLevel> ParseLogLevel(std::string_view text) {
  for (int i = 0; i < 4; ++i)
    if (text == kNames[i]) return static_cast<LogLevel>(i);
  return std::nullopt;
}

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }

bool LogEnabled(LogLevel level) { return static_cast<int>(level) <= g_level.load(); }

void LogLine(LogLevel level, std::string_view message) {
  // One write per line, so lines from several threads do not interleave.
  std::string line = fmt::format("svcmap: {}: {}\n", kNames[static_cast<int>(level)], message);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace svcmap
