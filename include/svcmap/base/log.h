#ifndef SVCMAP_BASE_LOG_H_
#define SVCMAP_BASE_LOG_H_

// Log lines on stderr, "svcmap: <level>: <message>", filtered by
// --log-level. Debian 12's Abseil predates absl/log, hence this.

#include <cstdio>
#include <optional>
#include <string_view>
#include <utility>

#include "fmt/format.h"

namespace svcmap {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

// "error", "warn", "info", "debug".
std::optional<LogLevel> ParseLogLevel(std::string_view text);
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, std::string_view message);

template <typename... Args>
void Log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  if (LogEnabled(level)) LogLine(level, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace svcmap

#endif  // SVCMAP_BASE_LOG_H_
