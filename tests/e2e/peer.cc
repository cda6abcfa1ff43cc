// svcmap-peer: a TCP client or server that moves exactly the bytes it is
// told to, so that tests can demand exact figures from svcmap.
//
//   svcmap-peer serve   --bind IP --port P --reply M [--conns K] [--name N]
//                       [--expect N] [--peek 1] [--hold-ms T]
//   svcmap-peer connect --host IP --port P --send N [--count K] [--name N]
//                       [--expect M] [--hold-ms T]
//   Many idle connections at once (both ends print "held" once all are up,
//   then keep them until file F exists):
//     serve   ... --conns K --keep 1 --wait-file F
//     connect ... --count K --keep 1 --wait-file F
//   Connects that must fail (no listener, or SYNs dropped): each failure
//   counts, its errno in the report; a success is an error:
//     connect ... --count K --fail 1
//   A server that aborts (SO_LINGER 0: a reset instead of a FIN) after its
//   answer, and a client that expects that reset after reading its answer:
//     serve   ... --expect N --hold-ms T --linger0 1
//     connect ... --expect M --reset 1
//   Two phases (a connection that predates the tracer):
//     serve   ... --expect N --expect2 N2 --reply2 M2
//     connect ... --expect M --wait-file F --send2 N2 --expect2 M2
//
// The client sends N bytes, shuts down its write side, then reads to EOF;
// the server reads to EOF, answers M bytes and closes. With --expect, a side
// reads exactly that many bytes instead of waiting for EOF (and the client
// does not shut down), so that with --hold-ms both can keep the connection
// open for T ms before closing. --peek 1 makes the server MSG_PEEK the data
// before reading it. In two-phase mode the client prints "phase1" after the
// first exchange, waits for file F to exist, then sends N2 and reads M2;
// the server answers the second request with M2. Each prints one JSON line with its pid and totals, the
// server also "ready" once listening and "held" once every exchange is done.
// SIGUSR1 ends a --hold-ms early, so a test that has seen what it needed does
// not sit out the hold. Every wait is bounded (30 s; the wait for file F,
// 180 s).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr int kTimeoutMs = 30000;
// The test creates the go-file after svcmap has started, seeded and
// stopped, which for 20,000 held sockets in an emulated guest sharing the
// host's cores took more than 30 s (kernel matrix, 6.1).
constexpr int kWaitFileMs = 180000;

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "svcmap-peer: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

struct Args {
  std::string mode, host = "127.0.0.1", name;
  int port = 0;
  long long bytes = 0;  // --send or --reply
  long count = 1;       // --count or --conns
  long long expect = -1;  // read exactly this many bytes, not to EOF
  bool peek = false;
  long hold_ms = 0;
  long long bytes2 = -1;   // --send2 or --reply2: a second exchange
  long long expect2 = -1;
  std::string wait_file;
  bool keep = false;
  bool fail = false;     // connect: every attempt must fail
  bool linger0 = false;  // serve: close with SO_LINGER 0 (a reset)
  bool reset = false;    // connect: the server resets after answering
};

Args Parse(int argc, char** argv) {
  Args a;
  if (argc < 2) {
    std::fprintf(stderr, "usage: svcmap-peer serve|connect [options]\n");
    std::exit(2);
  }
  a.mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--bind" || k == "--host") a.host = v;
    else if (k == "--port") a.port = std::atoi(v.c_str());
    else if (k == "--send" || k == "--reply") a.bytes = std::atoll(v.c_str());
    else if (k == "--count" || k == "--conns") a.count = std::atol(v.c_str());
    else if (k == "--name") a.name = v;
    else if (k == "--expect") a.expect = std::atoll(v.c_str());
    else if (k == "--peek") a.peek = v == "1";
    else if (k == "--hold-ms") a.hold_ms = std::atol(v.c_str());
    else if (k == "--send2" || k == "--reply2") a.bytes2 = std::atoll(v.c_str());
    else if (k == "--expect2") a.expect2 = std::atoll(v.c_str());
    else if (k == "--wait-file") a.wait_file = v;
    else if (k == "--keep") a.keep = v == "1";
    else if (k == "--fail") a.fail = v == "1";
    else if (k == "--linger0") a.linger0 = v == "1";
    else if (k == "--reset") a.reset = v == "1";
    else {
      std::fprintf(stderr, "svcmap-peer: unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

socklen_t MakeAddr(const std::string& host, int port, sockaddr_storage* ss) {
  std::memset(ss, 0, sizeof(*ss));
  auto* v4 = reinterpret_cast<sockaddr_in*>(ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    return sizeof(*v4);
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    return sizeof(*v6);
  }
  errno = EINVAL;
  Die("bad address");
}

void WaitFor(int fd, short events) {
  pollfd p{fd, events, 0};
  int n = poll(&p, 1, kTimeoutMs);
  if (n == 0) {
    errno = ETIMEDOUT;
    Die("poll");
  }
  if (n < 0) Die("poll");
}

void SendAll(int fd, long long n) {
  static char buf[65536];
  std::memset(buf, 'x', sizeof(buf));
  while (n > 0) {
    WaitFor(fd, POLLOUT);
    ssize_t w = send(fd, buf, n < (long long)sizeof(buf) ? n : sizeof(buf), MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      Die("send");
    }
    n -= w;
  }
}

long long ReadToEof(int fd) {
  static char buf[65536];
  long long total = 0;
  for (;;) {
    WaitFor(fd, POLLIN);
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      Die("recv");
    }
    if (r == 0) return total;
    total += r;
  }
}

long long ReadExactly(int fd, long long n) {
  static char buf[65536];
  long long total = 0;
  while (total < n) {
    WaitFor(fd, POLLIN);
    long long want = n - total < (long long)sizeof(buf) ? n - total : sizeof(buf);
    ssize_t r = recv(fd, buf, want, 0);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      Die("recv");
    }
    if (r == 0) break;
    total += r;
  }
  return total;
}

long long Receive(int fd, long long expect) {
  return expect >= 0 ? ReadExactly(fd, expect) : ReadToEof(fd);
}

void WaitForFile(const std::string& path) {
  for (int i = 0; i < kWaitFileMs / 10; ++i) {
    if (access(path.c_str(), F_OK) == 0) return;
    usleep(10000);
  }
  errno = ETIMEDOUT;
  Die("wait-file");
}

volatile sig_atomic_t g_release = 0;

void Hold(long ms) {
  if (ms > 30000) ms = 30000;
  for (long left = ms; left > 0 && !g_release; left -= 10) usleep(10000);
}

void RaiseFdLimit() {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
}

// --keep: open (or accept) every connection, report, hold them all.
int Keep(const Args& a, int lfd, const sockaddr_storage& ss, socklen_t len) {
  RaiseFdLimit();
  std::vector<int> fds;
  for (long i = 0; i < a.count; ++i) {
    int fd;
    if (lfd >= 0) {
      WaitFor(lfd, POLLIN);
      fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) Die("accept");
    } else {
      fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) Die("socket");
      if (connect(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0) Die("connect");
    }
    fds.push_back(fd);
  }
  std::printf("held\n");
  std::fflush(stdout);
  if (!a.wait_file.empty()) WaitForFile(a.wait_file);
  for (int fd : fds) close(fd);
  std::printf("{\"pid\": %d, \"sent\": 0, \"received\": 0, \"conns\": %ld}\n", getpid(),
              a.count);
  return 0;
}

int Serve(const Args& a) {
  sockaddr_storage ss;
  socklen_t len = MakeAddr(a.host, a.port, &ss);
  int lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0) Die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(lfd, reinterpret_cast<sockaddr*>(&ss), len) != 0) Die("bind");
  if (listen(lfd, 4096) != 0) Die("listen");
  std::printf("ready\n");
  std::fflush(stdout);
  if (a.keep) {
    int rc = Keep(a, lfd, ss, len);
    close(lfd);
    return rc;
  }
  long long received = 0, sent = 0;
  for (long i = 0; i < a.count; ++i) {
    WaitFor(lfd, POLLIN);
    int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) Die("accept");
    if (a.peek) {
      // Looking is not reading: svcmap must not count these bytes.
      char buf[4096];
      WaitFor(fd, POLLIN);
      if (recv(fd, buf, sizeof(buf), MSG_PEEK) < 0) Die("recv(MSG_PEEK)");
    }
    received += Receive(fd, a.expect);
    SendAll(fd, a.bytes);
    sent += a.bytes;
    if (a.bytes2 >= 0) {
      received += Receive(fd, a.expect2);
      SendAll(fd, a.bytes2);
      sent += a.bytes2;
    }
    if (a.hold_ms > 0) {
      std::printf("held\n");
      std::fflush(stdout);
      Hold(a.hold_ms);
    }
    if (a.linger0) {
      linger l{1, 0};
      if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) != 0) Die("SO_LINGER");
    }
    close(fd);
  }
  close(lfd);
  std::printf("{\"pid\": %d, \"sent\": %lld, \"received\": %lld, \"conns\": %ld}\n", getpid(),
              sent, received, a.count);
  return 0;
}

// --fail: every connect must fail; reports how many did, and the last errno.
int ConnectFailing(const Args& a, const sockaddr_storage& ss, socklen_t len) {
  long failed = 0;
  int last = 0;
  for (long i = 0; i < a.count; ++i) {
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) Die("socket");
    timeval tv{kTimeoutMs / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, reinterpret_cast<const sockaddr*>(&ss), len) == 0) {
      errno = EISCONN;
      Die("connect succeeded");
    }
    last = errno;
    ++failed;
    close(fd);
  }
  std::printf("{\"pid\": %d, \"failed\": %ld, \"errno\": \"%s\"}\n", getpid(), failed,
              strerrorname_np(last));
  return 0;
}

// --reset: after the answer the next read must fail with ECONNRESET.
void ExpectReset(int fd) {
  char buf[4096];
  for (;;) {
    WaitFor(fd, POLLIN);
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r < 0 && errno == ECONNRESET) return;
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r < 0) Die("recv, expecting a reset");
    errno = EPROTO;
    Die(r == 0 ? "EOF, expecting a reset" : "data, expecting a reset");
  }
}

int Connect(const Args& a) {
  sockaddr_storage ss;
  socklen_t len = MakeAddr(a.host, a.port, &ss);
  if (a.keep) return Keep(a, -1, ss, len);
  if (a.fail) return ConnectFailing(a, ss, len);
  long long received = 0, sent = 0;
  for (long i = 0; i < a.count; ++i) {
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) Die("socket");
    timeval tv{kTimeoutMs / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) Die("connect");
    SendAll(fd, a.bytes);
    sent += a.bytes;
    if (a.expect < 0) shutdown(fd, SHUT_WR);
    received += Receive(fd, a.expect);
    if (a.bytes2 >= 0) {
      std::printf("phase1\n");
      std::fflush(stdout);
      if (!a.wait_file.empty()) WaitForFile(a.wait_file);
      SendAll(fd, a.bytes2);
      sent += a.bytes2;
      received += Receive(fd, a.expect2);
    }
    if (a.reset) ExpectReset(fd);
    if (a.hold_ms > 0) {
      // For a test that reads the socket (ss -ti) while it is open.
      std::fprintf(stderr, "held\n");
      Hold(a.hold_ms);
    }
    close(fd);
  }
  std::printf("{\"pid\": %d, \"sent\": %lld, \"received\": %lld, \"conns\": %ld}\n", getpid(),
              sent, received, a.count);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = Parse(argc, argv);
  struct sigaction release {};
  release.sa_handler = [](int) { g_release = 1; };
  sigaction(SIGUSR1, &release, nullptr);
  // The comm is what svcmap names services by; give each role its own.
  if (!a.name.empty()) prctl(PR_SET_NAME, a.name.c_str(), 0, 0, 0);
  if (a.mode == "serve") return Serve(a);
  if (a.mode == "connect") return Connect(a);
  std::fprintf(stderr, "svcmap-peer: unknown mode %s\n", a.mode.c_str());
  return 2;
}
