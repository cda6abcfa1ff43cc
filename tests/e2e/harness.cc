#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace svcmap::e2e {
namespace {

std::vector<char*> Argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const std::string& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

bool ReadSome(int& fd, std::string& into) {
  if (fd < 0) return false;
  char buf[65536];
  ssize_t n = read(fd, buf, sizeof(buf));
  if (n > 0) {
    into.append(buf, static_cast<size_t>(n));
    return true;
  }
  if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
    close(fd);
    fd = -1;
  }
  return false;
}

}  // namespace

Child::Child(const std::vector<std::string>& argv) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The child must not inherit a blocked SIGINT/SIGTERM from gtest.
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> av = Argv(argv);
  if (posix_spawnp(&pid_, av[0], &fa, &attr, av.data(), environ) != 0) pid_ = -1;
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(out[1]);
  close(err[1]);
  out_fd_ = out[0];
  err_fd_ = err[0];
  fcntl(out_fd_, F_SETFL, O_NONBLOCK);
  fcntl(err_fd_, F_SETFL, O_NONBLOCK);
}

Child::~Child() {
  if (pid_ > 0 && !exit_code_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (err_fd_ >= 0) close(err_fd_);
}

void Child::Pump(int timeout_ms) {
  pollfd p[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  if (out_fd_ < 0 && err_fd_ < 0) {
    usleep(timeout_ms * 1000);
    return;
  }
  poll(p, 2, timeout_ms);
  while (ReadSome(out_fd_, out_)) {}
  while (ReadSome(err_fd_, err_)) {}
}

bool Child::WaitForLine(bool from_stderr, const std::string& needle,
                        std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string& s = from_stderr ? err_ : out_;
    if (s.find(needle) != std::string::npos) return true;
    if ((from_stderr ? err_fd_ : out_fd_) < 0) return false;  // EOF
    Pump(50);
  }
  return false;
}

void Child::Signal(int sig) {
  if (pid_ > 0 && !exit_code_) kill(pid_, sig);
}

RunResult Child::Wait(std::chrono::milliseconds timeout) {
  RunResult r;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (pid_ > 0 && !exit_code_) {
    int status = 0;
    pid_t w = waitpid(pid_, &status, WNOHANG);
    if (w == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      continue;
    }
    Pump(50);
  }
  while (out_fd_ >= 0 || err_fd_ >= 0) Pump(50);
  r.exit_code = exit_code_.value_or(-1);
  r.out = out_;
  r.err = err_;
  return r;
}

RunResult RunCmd(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  Child c(argv);
  return c.Wait(timeout);
}

std::vector<std::string> TwoHosts::In(const std::string& ns, std::vector<std::string> argv) {
  std::vector<std::string> out = {"ip", "netns", "exec", ns};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

namespace {

// Runs a set-up command; on failure says which and why into `error`.
bool SetUpStep(const std::vector<std::string>& argv, std::string& error) {
  RunResult r = RunCmd(argv, std::chrono::seconds(20));
  if (r.exit_code == 0) return true;
  std::ostringstream cmd;
  for (const auto& a : argv) cmd << a << ' ';
  error = cmd.str() + "-> " + std::to_string(r.exit_code) + ": " + r.err;
  return false;
}

// Namespaces "svcmap-t*-<pid>" whose process is gone.
void RemoveStaleNamespaces() {
  RunResult list = RunCmd({"ip", "netns", "list"});
  std::istringstream lines(list.out);
  for (std::string line; std::getline(lines, line);) {
    std::string name = line.substr(0, line.find(' '));
    if (name.rfind("svcmap-t", 0) == 0) {
      std::string pid = name.substr(name.rfind('-') + 1);
      if (kill(std::atoi(pid.c_str()), 0) != 0) RunCmd({"ip", "netns", "del", name});
    }
  }
}

}  // namespace

bool TwoHosts::Sh(const std::vector<std::string>& argv) { return SetUpStep(argv, error_); }

TwoHosts::TwoHosts() {
  RemoveStaleNamespaces();
  std::string id = std::to_string(getpid());
  a = "svcmap-ta-" + id;
  b = "svcmap-tb-" + id;
  a_path = "/run/netns/" + a;
  b_path = "/run/netns/" + b;
  // Addresses exist only inside these two namespaces, which nothing else
  // routes to.
  a_ip4 = "10.231.0.1";
  b_ip4 = "10.231.0.2";
  a_ip6 = "fd00:231::1";
  b_ip6 = "fd00:231::2";
  std::string va = "sva" + id, vb = "svb" + id;
  va = va.substr(0, 15);
  vb = vb.substr(0, 15);
  a_if = va;
  b_if = vb;
  ok_ = Sh({"ip", "netns", "add", a}) && Sh({"ip", "netns", "add", b}) &&
        Sh({"ip", "link", "add", va, "type", "veth", "peer", "name", vb}) &&
        Sh({"ip", "link", "set", va, "netns", a}) && Sh({"ip", "link", "set", vb, "netns", b}) &&
        Sh(In(a, {"ip", "link", "set", "lo", "up"})) &&
        Sh(In(b, {"ip", "link", "set", "lo", "up"})) &&
        Sh(In(a, {"ip", "addr", "add", a_ip4 + "/24", "dev", va})) &&
        Sh(In(b, {"ip", "addr", "add", b_ip4 + "/24", "dev", vb})) &&
        Sh(In(a, {"ip", "-6", "addr", "add", a_ip6 + "/64", "dev", va, "nodad"})) &&
        Sh(In(b, {"ip", "-6", "addr", "add", b_ip6 + "/64", "dev", vb, "nodad"})) &&
        Sh(In(a, {"ip", "link", "set", va, "up"})) && Sh(In(b, {"ip", "link", "set", vb, "up"}));
}

TwoHosts::~TwoHosts() {
  RunCmd({"ip", "netns", "del", a});
  RunCmd({"ip", "netns", "del", b});
}

bool Hosts::Sh(const std::vector<std::string>& argv) { return SetUpStep(argv, error_); }

Hosts::Hosts(const std::vector<std::string>& roles, int net) {
  RemoveStaleNamespaces();
  const std::string id = std::to_string(getpid());
  switch_ = "svcmap-tsw-" + id;
  ok_ = Sh({"ip", "netns", "add", switch_}) &&
        Sh(TwoHosts::In(switch_, {"ip", "link", "add", "br0", "type", "bridge"})) &&
        Sh(TwoHosts::In(switch_, {"ip", "link", "set", "br0", "up"}));
  for (size_t i = 0; ok_ && i < roles.size(); ++i) {
    Host h;
    h.name = "svcmap-tm" + roles[i] + "-" + id;
    h.path = "/run/netns/" + h.name;
    h.ip = "10." + std::to_string(net) + ".0." + std::to_string(i + 1);
    const std::string here = ("sm" + roles[i] + id).substr(0, 15);
    const std::string port = ("sp" + roles[i] + id).substr(0, 15);
    h.iface = here;
    ok_ = Sh({"ip", "netns", "add", h.name}) &&
          Sh({"ip", "link", "add", here, "type", "veth", "peer", "name", port}) &&
          Sh({"ip", "link", "set", here, "netns", h.name}) &&
          Sh({"ip", "link", "set", port, "netns", switch_}) &&
          Sh(TwoHosts::In(switch_, {"ip", "link", "set", port, "master", "br0"})) &&
          Sh(TwoHosts::In(switch_, {"ip", "link", "set", port, "up"})) &&
          Sh(TwoHosts::In(h.name, {"ip", "link", "set", "lo", "up"})) &&
          Sh(TwoHosts::In(h.name, {"ip", "addr", "add", h.ip + "/24", "dev", here})) &&
          Sh(TwoHosts::In(h.name, {"ip", "link", "set", here, "up"}));
    hosts_.push_back(std::move(h));
  }
}

Hosts::~Hosts() {
  for (const Host& h : hosts_) RunCmd({"ip", "netns", "del", h.name});
  RunCmd({"ip", "netns", "del", switch_});
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

std::string TempDir(const std::string& what) {
  std::string tmpl = "/tmp/svcmap-" + what + "-XXXXXX";
  char* d = mkdtemp(tmpl.data());
  return d ? d : "";
}

bool WaitHttp(const std::string& url, std::chrono::seconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (RunCmd({"curl", "-sf", "-o", "/dev/null", url}, std::chrono::seconds(5)).exit_code == 0)
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

std::string Which(const std::string& tool) {
  return RunCmd({"sh", "-c", "command -v " + tool}).out;
}

Store::Store(Kind kind) : kind_(kind), port_(FreePort()), dir_(TempDir("store")) { Start(); }

Store::~Store() {
  child_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string Store::base() const { return "http://127.0.0.1:" + std::to_string(port_); }

void Store::Start() {
  std::vector<std::string> argv;
  const std::string listen = "127.0.0.1:" + std::to_string(port_);
  if (kind_ == Kind::kVictoriaMetrics) {
    // latencyOffset: by default the newest 30 s are hidden from queries.
    argv = {"victoria-metrics", "-storageDataPath", dir_ + "/data", "-httpListenAddr", listen,
            "-search.latencyOffset=0s", "-loggerLevel", "ERROR"};
  } else {
    std::ofstream(dir_ + "/prometheus.yml") << "global: {}\n";
    argv = {"prometheus", "--config.file", dir_ + "/prometheus.yml", "--storage.tsdb.path",
            dir_ + "/data", "--web.listen-address", listen,
            "--web.enable-remote-write-receiver", "--log.level", "error"};
  }
  child_ = std::make_unique<Child>(argv);
  ready_ = WaitHttp(base() + (kind_ == Kind::kVictoriaMetrics ? "/health" : "/-/ready"),
                    std::chrono::seconds(60));
}

void Store::Stop() {
  child_->Signal(SIGTERM);
  child_->Wait(std::chrono::seconds(30));
  child_.reset();
}

std::string Store::QueryText(const std::string& promql) const {
  RunResult r = RunCmd({"curl", "-sf", base() + "/api/v1/query", "--data-urlencode",
                        "query=" + promql});
  return r.exit_code == 0 ? r.out : "";
}

HostTracefs::HostTracefs() {
  if (access("/sys/kernel/tracing/events", F_OK) == 0 ||
      access("/sys/kernel/debug/tracing/events", F_OK) == 0)
    return;
  ok_ = RunCmd({"mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"}).exit_code == 0;
  mounted_ = ok_;
}

HostTracefs::~HostTracefs() {
  if (mounted_) RunCmd({"umount", "/sys/kernel/tracing"});
}

std::string PrivilegeProblem() {
  if (geteuid() != 0) return "needs root (BPF programs and network namespaces)";
  if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) return "kernel has no BTF (/sys/kernel/btf/vmlinux)";
  return "";
}

TestPki MakeTestPki(const std::string& dir) {
  TestPki p;
  p.ca = dir + "/ca.pem";
  p.server_cert = dir + "/server.pem";
  p.server_key = dir + "/server.key";
  p.client_cert = dir + "/client.pem";
  p.client_key = dir + "/client.key";
  // EC keys: a few milliseconds each, where RSA takes a second.
  const std::string script = R"(set -e
cd "$0"
key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $key -keyout ca.key -out ca.pem -days 2 -subj /CN=svcmap-test-ca 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > client.ext
for who in server client; do
  openssl req $key -keyout $who.key -out $who.csr -subj /CN=svcmap-test-$who 2>/dev/null
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile $who.ext -out $who.pem 2>/dev/null
done
)";
  RunResult r = RunCmd({"/bin/sh", "-c", script, dir}, std::chrono::seconds(60));
  p.ok = r.exit_code == 0;
  p.error = r.err;
  return p;
}

void WriteFile(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  for (size_t done = 0; done < text.size();) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
}

}  // namespace svcmap::e2e
