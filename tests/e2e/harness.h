#ifndef SVCMAP_TESTS_E2E_HARNESS_H_
#define SVCMAP_TESTS_E2E_HARNESS_H_

#include <sys/types.h>

#include <chrono>
#include <memory>
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
  // What it has written so far (as far as the last WaitForLine read).
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }
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
  std::string a_if, b_if;        // each one's end of the veth

  // argv prefixed to run inside a namespace.
  static std::vector<std::string> In(const std::string& ns, std::vector<std::string> argv);

 private:
  bool Sh(const std::vector<std::string>& argv);
  bool ok_ = false;
  std::string error_;
};

// N network namespaces ("machines") on one switch: a bridge in a namespace
// of its own, a veth from each machine to it. Machine i has 10.<net>.0.<i+1>.
// Removed again on destruction, stale ones from a crashed run first.
class Hosts {
 public:
  struct Host {
    std::string name;  // namespace name
    std::string path;  // /run/netns/<name>
    std::string ip;
    std::string iface;  // its end of the veth to the switch
  };
  Hosts(const std::vector<std::string>& roles, int net);
  ~Hosts();
  Hosts(const Hosts&) = delete;
  Hosts& operator=(const Hosts&) = delete;
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  const Host& operator[](size_t i) const { return hosts_[i]; }

 private:
  bool Sh(const std::vector<std::string>& argv);
  std::vector<Host> hosts_;
  std::string switch_;
  bool ok_ = false;
  std::string error_;
};

// A free TCP port on 127.0.0.1 (free when asked).
int FreePort();
// A fresh directory under /tmp; the caller removes it.
std::string TempDir(const std::string& what);
// Polls `url` with curl until it answers 2xx.
bool WaitHttp(const std::string& url, std::chrono::seconds timeout);
// The path of `tool` on $PATH, or empty.
std::string Which(const std::string& tool);

// A Prometheus-compatible store run from its Debian binary on a free
// loopback port, its data in a temporary directory that goes with it.
class Store {
 public:
  enum class Kind { kVictoriaMetrics, kPrometheus };
  explicit Store(Kind kind);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  void Start();
  // SIGTERM: a store that acknowledged samples keeps them.
  void Stop();
  bool ready() const { return ready_; }
  std::string base() const;
  std::string write_url() const { return base() + "/api/v1/write"; }
  // An instant query's result vector as JSON text, or "" on any error.
  std::string QueryText(const std::string& promql) const;

 private:
  Kind kind_;
  int port_;
  std::string dir_;
  std::unique_ptr<Child> child_;
  bool ready_ = false;
};

// A CA, a server certificate for 127.0.0.1 and a client certificate, made
// by the openssl CLI in `dir`; `ok` false (and `error` set) if it failed.
struct TestPki {
  bool ok = false;
  std::string error;
  std::string ca, server_cert, server_key, client_cert, client_key;
};
TestPki MakeTestPki(const std::string& dir);

// Writes `text` to `path` (mode 0600), for secrets and configs.
void WriteFile(const std::string& path, const std::string& text);

// Why a privileged test cannot run here, or empty if it can.
std::string PrivilegeProblem();

// tracefs at /sys/kernel/tracing for the life of the object, as systemd
// mounts it at boot; unmounted again only if this object mounted it.
class HostTracefs {
 public:
  HostTracefs();
  ~HostTracefs();
  HostTracefs(const HostTracefs&) = delete;
  HostTracefs& operator=(const HostTracefs&) = delete;
  bool ok() const { return ok_; }

 private:
  bool mounted_ = false;
  bool ok_ = true;
};

}  // namespace svcmap::e2e

#endif  // SVCMAP_TESTS_E2E_HARNESS_H_
