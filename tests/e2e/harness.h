#ifndef SVCMAP_TESTS_E2E_HARNESS_H_
#define SVCMAP_TESTS_E2E_HARNESS_H_

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace svcmap::e2e {

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs argv to completion, capturing stdout and stderr; killed after
// `timeout`.
RunResult RunCmd(const std::vector<std::string>& argv,
              std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A child process with piped stdout/stderr, killed (SIGKILL) if still
// running when destroyed.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv);
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();

  pid_t pid() const { return pid_; }
  // Reads stdout (or stderr) until a line containing `needle` has been seen.
  bool WaitForLine(bool from_stderr, const std::string& needle,
                   std::chrono::milliseconds timeout);
  void Signal(int sig);
  // Waits for exit, collecting the rest of the output.
  RunResult Wait(std::chrono::milliseconds timeout = std::chrono::seconds(60));

 private:
  void Pump(int timeout_ms);

  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string out_, err_;
  std::optional<int> exit_code_;
};

// Two network namespaces ("machines") joined by a veth pair, with IPv4 and
// IPv6 addresses, removed again on destruction. Names carry our pid, and
// stale ones from a crashed run are removed first.
class TwoHosts {
 public:
  TwoHosts();
  ~TwoHosts();
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

  std::string a, b;              // namespace names
  std::string a_path, b_path;    // /run/netns/<name>
  std::string a_ip4, b_ip4, a_ip6, b_ip6;

  // argv prefixed to run inside a namespace.
  static std::vector<std::string> In(const std::string& ns, std::vector<std::string> argv);

 private:
  bool Sh(const std::vector<std::string>& argv);
  bool ok_ = false;
  std::string error_;
};

// Why a privileged test cannot run here, or empty if it can.
std::string PrivilegeProblem();

}  // namespace svcmap::e2e

#endif  // SVCMAP_TESTS_E2E_HARNESS_H_
