// svcmap: flags -> validated Options -> one subcommand. The only place that
// sees argv, and the only place that turns a Status into an exit code.
#include <signal.h>

#include <string>
#include <vector>

#include "fmt/format.h"
#include "svcmap/app/commands.h"
#include "svcmap/app/options.h"

namespace {

int ExitCode(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk: return 0;
    case absl::StatusCode::kInvalidArgument: return 2;
    case absl::StatusCode::kPermissionDenied: return 77;   // EX_NOPERM
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kUnimplemented: return 69;      // EX_UNAVAILABLE
    default: return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists, so every thread inherits the mask and the
  // commands can wait for these with sigtimedwait.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);  // the agent's reload; ignored by the other commands
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::vector<std::string> args(argv, argv + argc);
  absl::StatusOr<svcmap::app::ParseResult> parsed = svcmap::app::ParseOptions(args);
  if (!parsed.ok()) {
    fmt::print(stderr, "svcmap: {} (see svcmap --help)\n", std::string(parsed.status().message()));
    return ExitCode(parsed.status());
  }
  if (parsed->help) {
    fmt::print("{}", parsed->help_text);
    return 0;
  }
  absl::Status s = svcmap::app::RunCommand(parsed->options);
  if (!s.ok()) {
    fmt::print(stderr, "svcmap: {}\n", std::string(s.message()));
    return ExitCode(s);
  }
  return 0;
}
