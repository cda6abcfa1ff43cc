// svcmap-loadgen: a loopback load generator for the overhead benchmark.
//
//   svcmap-loadgen crr    [--threads T] [--seconds S] [--size B] [--port P]
//                         [--rate R]
//   svcmap-loadgen rr     [--conns C] [--seconds S] [--size B] [--port P]
//   svcmap-loadgen stream [--seconds S] [--chunk B] [--port P]
//   svcmap-loadgen hold   --conns N [--seconds S] [--size B]
//   (--pin 1 on crr or stream: clients on CPU 0, servers on the last CPU)
//
// crr: T client threads each loop connect, send B bytes, read B bytes back,
// close, against T server threads on 127.0.0.1; --rate caps the total at R
// connections per second. rr: C kept-alive connections (a connection
// pool, HTTP keep-alive), each a client thread that sends B bytes and reads
// B bytes back, in a loop, against its own server thread; the rate is round
// trips per second. stream: one connection, the client writes B-byte
// chunks for S seconds. hold: N connections on 127.0.0.1 opened and kept
// open (B bytes each way first), spread over child processes so that no
// process needs more than 16,384 descriptors; prints "held" once all are up,
// then holds them S seconds or until stdin closes. Prints one JSON line with
// the operation rate. Bounded: it stops after S seconds (at most 60, or 300
// for hold).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string mode;
  int threads = 2;
  double seconds = 3;
  int size = 64;
  int chunk = 65536;
  int port = 0;
  bool pin = false;  // clients on CPU 0, servers on the last CPU
  double rate = 0;   // crr: connections per second in all, 0 for as fast as possible
  long conns = 0;    // hold
};

// Pinning keeps the scheduler from moving the two ends around, which on a
// small VM is most of the run-to-run noise.
void Pin(bool enabled, bool server) {
  if (!enabled) return;
  int ncpu = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(server ? ncpu - 1 : 0, &set);
  sched_setaffinity(0, sizeof(set), &set);
}

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "svcmap-loadgen: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

sockaddr_in Addr(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int Listen(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a = Addr(port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) Die("bind");
  if (listen(fd, 4096) != 0) Die("listen");
  return fd;
}

int BoundPort(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

bool ReadN(int fd, char* buf, int n) {
  while (n > 0) {
    ssize_t r = recv(fd, buf, n, 0);
    if (r <= 0) return false;
    n -= r;
  }
  return true;
}

bool WriteN(int fd, const char* buf, int n) {
  while (n > 0) {
    ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    n -= w;
  }
  return true;
}

int Crr(const Args& a) {
  int lfd = Listen(a.port);
  int port = BoundPort(lfd);
  std::atomic<bool> stop{false};
  std::atomic<long> done{0};
  std::vector<std::thread> servers, clients;
  for (int i = 0; i < a.threads; ++i) {
    servers.emplace_back([&] {
      Pin(a.pin, true);
      std::vector<char> buf(a.size);
      for (;;) {
        int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;  // listener shut down
        if (ReadN(fd, buf.data(), a.size)) {
          WriteN(fd, buf.data(), a.size);
          char c;
          recv(fd, &c, 1, 0);  // wait for the client's close
        }
        close(fd);
      }
    });
  }
  auto end = Clock::now() + std::chrono::duration<double>(a.seconds);
  for (int i = 0; i < a.threads; ++i) {
    clients.emplace_back([&] {
      Pin(a.pin, false);
      std::vector<char> buf(a.size, 'x');
      sockaddr_in addr = Addr(port);
      long n = 0;
      const auto t0 = Clock::now();
      const double per_thread = a.rate / a.threads;
      while (Clock::now() < end) {
        if (per_thread > 0) {
          // On a fixed schedule from the start, so a slow spell is made up.
          auto due = t0 + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(n / per_thread));
          if (due > Clock::now()) std::this_thread::sleep_until(due);
        }
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) Die("connect");
        if (!WriteN(fd, buf.data(), a.size) || !ReadN(fd, buf.data(), a.size)) Die("exchange");
        close(fd);
        ++n;
      }
      done += n;
    });
  }
  auto start = Clock::now();
  for (auto& t : clients) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  stop = true;
  shutdown(lfd, SHUT_RDWR);
  for (auto& t : servers) t.join();
  close(lfd);
  std::printf("{\"mode\": \"crr\", \"threads\": %d, \"ops\": %ld, \"seconds\": %.3f, \"rate\": %.1f}\n",
              a.threads, done.load(), secs, done.load() / secs);
  return 0;
}

int Rr(const Args& a) {
  int lfd = Listen(a.port);
  int port = BoundPort(lfd);
  const int conns = static_cast<int>(a.conns > 0 ? a.conns : 1);
  std::vector<std::thread> servers, clients;
  for (int i = 0; i < conns; ++i) {
    servers.emplace_back([&] {
      Pin(a.pin, true);
      int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) Die("accept");
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      std::vector<char> buf(a.size);
      while (ReadN(fd, buf.data(), a.size) && WriteN(fd, buf.data(), a.size)) {}
      close(fd);
    });
  }
  std::atomic<long> done{0};
  auto end = Clock::now() + std::chrono::duration<double>(a.seconds);
  for (int i = 0; i < conns; ++i) {
    clients.emplace_back([&] {
      Pin(a.pin, false);
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr = Addr(port);
      if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) Die("connect");
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      std::vector<char> buf(a.size, 'x');
      long n = 0;
      while (Clock::now() < end) {
        if (!WriteN(fd, buf.data(), a.size) || !ReadN(fd, buf.data(), a.size)) Die("exchange");
        ++n;
      }
      close(fd);
      done += n;
    });
  }
  auto start = Clock::now();
  for (auto& t : clients) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto& t : servers) t.join();
  close(lfd);
  std::printf("{\"mode\": \"rr\", \"conns\": %d, \"size\": %d, \"ops\": %ld, "
              "\"seconds\": %.3f, \"rate\": %.1f}\n",
              conns, a.size, done.load(), secs, done.load() / secs);
  return 0;
}

int Stream(const Args& a) {
  int lfd = Listen(a.port);
  int port = BoundPort(lfd);
  std::thread server([&] {
    Pin(a.pin, true);
    int fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) Die("accept");
    std::vector<char> buf(1 << 20);
    while (recv(fd, buf.data(), buf.size(), 0) > 0) {}
    close(fd);
  });
  Pin(a.pin, false);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = Addr(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) Die("connect");
  std::vector<char> buf(a.chunk, 'x');
  auto start = Clock::now();
  auto end = start + std::chrono::duration<double>(a.seconds);
  long long bytes = 0;
  long writes = 0;
  while (Clock::now() < end) {
    ssize_t w = send(fd, buf.data(), buf.size(), MSG_NOSIGNAL);
    if (w <= 0) Die("send");
    bytes += w;
    ++writes;
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  close(fd);
  server.join();
  close(lfd);
  std::printf("{\"mode\": \"stream\", \"ops\": %ld, \"bytes\": %lld, \"seconds\": %.3f, "
              "\"rate\": %.1f}\n",
              writes, bytes, secs, bytes / secs);
  return 0;
}

// One child's share of hold: n connections to its own listener, both ends
// here. Writes "1" on `ready` once they are up, then waits for `release` to
// close (or for the deadline).
void HoldShare(long n, int size, int ready, int release, double seconds) {
  int lfd = Listen(0);
  sockaddr_in addr = Addr(BoundPort(lfd));
  std::vector<int> fds;
  std::vector<char> buf(size, 'x');
  fds.reserve(2 * n);
  for (long i = 0; i < n; ++i) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0) Die("socket");
    if (connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) Die("connect");
    int s = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (s < 0) Die("accept");
    if (!WriteN(c, buf.data(), size) || !ReadN(s, buf.data(), size) ||
        !WriteN(s, buf.data(), size) || !ReadN(c, buf.data(), size))
      Die("exchange");
    fds.push_back(c);
    fds.push_back(s);
  }
  char one = '1';
  if (write(ready, &one, 1) != 1) Die("write");
  pollfd p{release, POLLIN, 0};
  poll(&p, 1, static_cast<int>(seconds * 1000));
  for (int fd : fds) close(fd);
  close(lfd);
}

int Hold(const Args& a) {
  constexpr long kPerChild = 8192;  // 16,384 descriptors: under the usual 20,000
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  int ready[2], release[2];
  if (pipe(ready) != 0 || pipe(release) != 0) Die("pipe");
  std::vector<pid_t> kids;
  for (long left = a.conns; left > 0; left -= kPerChild) {
    pid_t pid = fork();
    if (pid < 0) Die("fork");
    if (pid == 0) {
      close(ready[0]);
      close(release[1]);
      HoldShare(std::min(left, kPerChild), a.size, ready[1], release[0], a.seconds);
      _exit(0);
    }
    kids.push_back(pid);
  }
  close(ready[1]);
  close(release[0]);
  auto start = Clock::now();
  for (size_t i = 0; i < kids.size(); ++i) {
    char c;
    if (read(ready[0], &c, 1) != 1) Die("a child failed");
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("held\n");
  std::fflush(stdout);
  // Until stdin closes or the time is up.
  pollfd p{0, POLLIN, 0};
  auto end = start + std::chrono::duration<double>(a.seconds);
  while (Clock::now() < end) {
    int left_ms = static_cast<int>(
        std::chrono::duration<double, std::milli>(end - Clock::now()).count());
    if (poll(&p, 1, std::max(left_ms, 1)) != 0) {
      char c;
      if (read(0, &c, 1) <= 0) break;
    }
  }
  close(release[1]);  // every child closes its connections and exits
  for (pid_t k : kids) waitpid(k, nullptr, 0);
  std::printf("{\"mode\": \"hold\", \"ops\": %ld, \"seconds\": %.3f, \"rate\": %.1f}\n",
              a.conns, secs, a.conns / secs);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: svcmap-loadgen crr|rr|stream|hold [--threads T] [--seconds S] "
                         "[--size B] [--chunk B] [--port P] [--pin 1] [--rate R] [--conns N]\n");
    return 2;
  }
  Args a;
  a.mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    double v = std::atof(argv[i + 1]);
    if (k == "--threads") a.threads = static_cast<int>(v);
    else if (k == "--seconds") a.seconds = v;
    else if (k == "--size") a.size = static_cast<int>(v);
    else if (k == "--chunk") a.chunk = static_cast<int>(v);
    else if (k == "--port") a.port = static_cast<int>(v);
    else if (k == "--pin") a.pin = v != 0;
    else if (k == "--rate") a.rate = v;
    else if (k == "--conns") a.conns = static_cast<long>(v);
    else {
      std::fprintf(stderr, "svcmap-loadgen: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  const double max_seconds = a.mode == "hold" ? 300 : 60;
  if (a.seconds <= 0 || a.seconds > max_seconds || a.threads < 1 || a.threads > 64 ||
      a.size < 1 || a.chunk < 1 || a.rate < 0 ||
      (a.mode == "hold" && (a.conns < 1 || a.conns > 1'000'000)) ||
      (a.mode == "rr" && (a.conns < 0 || a.conns > 64))) {
    std::fprintf(stderr, "svcmap-loadgen: option out of range\n");
    return 2;
  }
  if (a.mode == "crr") return Crr(a);
  if (a.mode == "stream") return Stream(a);
  if (a.mode == "rr") return Rr(a);
  if (a.mode == "hold") return Hold(a);
  std::fprintf(stderr, "svcmap-loadgen: unknown mode %s\n", a.mode.c_str());
  return 2;
}
