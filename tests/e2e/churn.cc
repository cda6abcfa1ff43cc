// svcmap-churn: load in the shapes that stress an agent's accounting, with
// every byte counted by the load itself: short connections at a rate,
// long-lived ones that keep talking, and new processes of the same service
// (forked children: same cmdline, so the same service name, new PIDs).
//
//   svcmap-churn serve --bind IP --port P [--name N]
//   svcmap-churn load  --host IP --port P --seconds S [--rate R] [--threads T]
//                      [--long L] [--interval-ms I] [--procs P] [--size B] [--name N]
//
// Every request is an 8-byte header (payload length, then 1 if the server
// is to close after answering) and the payload; the server answers with as
// many bytes. A short connection is one request, then the server closes
// first, so the client never holds a TIME_WAIT and its ports never run out.
// Long connections send one request every I ms each, and end with a
// shutdown(SHUT_WR) the server answers by closing. `load` prints one JSON
// line: bytes it sent and received (headers included, what the kernel
// moved), connections, processes, failures. Bounded: S is at most 7200,
// every wait at most 10 s. The server runs until SIGTERM/SIGINT.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string mode, host = "127.0.0.1", bind = "127.0.0.1", name;
  int port = 0;
  double seconds = 10;
  double rate = 100;  // short connections per second, all threads
  int threads = 2;
  int long_conns = 0;
  int interval_ms = 200;
  double procs = 0;  // new processes per second
  uint32_t size = 1000;
};

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "svcmap-churn: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

bool Resolve(const std::string& host, int port, sockaddr_storage& ss, socklen_t& len) {
  std::memset(&ss, 0, sizeof(ss));
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(*v4);
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(*v6);
    return true;
  }
  return false;
}

// ---- server: epoll, one state machine per connection ----

struct Conn {
  uint8_t header[8];
  uint32_t have_header = 0;
  uint32_t to_read = 0;   // payload still to read
  uint32_t to_write = 0;  // answer still to write
  bool close_after = false;
};

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

int Serve(const Args& a) {
  sockaddr_storage ss;
  socklen_t len;
  if (!Resolve(a.bind, a.port, ss, len)) Die("bad --bind");
  int lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) Die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(lfd, reinterpret_cast<sockaddr*>(&ss), len) != 0) Die("bind");
  if (listen(lfd, 4096) != 0) Die("listen");
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  signal(SIGPIPE, SIG_IGN);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  std::printf("ready\n");
  std::fflush(stdout);
  std::unordered_map<int, Conn> conns;
  static char zeros[65536];
  static char sink[65536];
  auto drop = [&](int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    conns.erase(fd);
  };
  epoll_event events[256];
  while (!g_stop) {
    int n = epoll_wait(ep, events, 256, 200);
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          epoll_event cev{};
          cev.events = EPOLLIN;
          cev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
          conns[c] = Conn{};
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      Conn& c = it->second;
      bool gone = false;
      // Read what there is: header, then payload; answer once it is all in.
      while (!gone && c.to_write == 0) {
        if (c.have_header < 8) {
          ssize_t r = read(fd, c.header + c.have_header, 8 - c.have_header);
          if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            gone = true;  // EOF: the client is done
            break;
          }
          if (r < 0) break;
          c.have_header += static_cast<uint32_t>(r);
          if (c.have_header < 8) continue;
          uint32_t len_be, close_be;
          std::memcpy(&len_be, c.header, 4);
          std::memcpy(&close_be, c.header + 4, 4);
          c.to_read = ntohl(len_be);
          c.close_after = ntohl(close_be) != 0;
        }
        while (c.to_read > 0) {
          ssize_t r = read(fd, sink, std::min<uint32_t>(c.to_read, sizeof(sink)));
          if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            gone = true;
            break;
          }
          if (r < 0) break;
          c.to_read -= static_cast<uint32_t>(r);
        }
        if (gone || c.to_read > 0) break;
        // The whole request is in: the answer, as many bytes.
        uint32_t len_be;
        std::memcpy(&len_be, c.header, 4);
        c.to_write = ntohl(len_be);
        c.have_header = 0;
      }
      while (!gone && c.to_write > 0) {
        ssize_t w = write(fd, zeros, std::min<uint32_t>(c.to_write, sizeof(zeros)));
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
          // Wait for room (rare: answers are small).
          pollfd p{fd, POLLOUT, 0};
          poll(&p, 1, 1000);
          continue;
        }
        if (w <= 0) {
          gone = true;
          break;
        }
        c.to_write -= static_cast<uint32_t>(w);
        if (c.to_write == 0 && c.close_after) gone = true;  // the server closes first
      }
      if (gone) drop(fd);
    }
  }
  for (auto& [fd, c] : conns) close(fd);
  close(lfd);
  return 0;
}

// ---- client ----

struct Totals {
  std::atomic<uint64_t> sent{0}, received{0}, connections{0}, failed{0}, processes{0};
};

bool SendAll(int fd, const char* p, size_t n, uint64_t& sent) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    sent += static_cast<uint64_t>(w);
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool RecvN(int fd, size_t n, uint64_t& received) {
  char buf[16384];
  while (n > 0) {
    ssize_t r = recv(fd, buf, std::min(n, sizeof(buf)), 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    received += static_cast<uint64_t>(r);
    n -= static_cast<size_t>(r);
  }
  return true;
}

int Dial(const sockaddr_storage& ss, socklen_t len) {
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// One request; with `last`, the server closes after answering and we read
// its EOF. Counts what the kernel moved, whatever happens.
// Zero-initialised, no guard: forked children of this threaded process
// use it too, and a function-local static's guard may be held at fork.
char g_payload[65536];

bool Request(int fd, uint32_t size, bool last, uint64_t& sent, uint64_t& received) {
  uint32_t header[2] = {htonl(size), htonl(last ? 1 : 0)};
  if (!SendAll(fd, reinterpret_cast<const char*>(header), sizeof(header), sent)) return false;
  for (uint32_t left = size; left > 0;) {
    uint32_t chunk = std::min<uint32_t>(left, sizeof(g_payload));
    if (!SendAll(fd, g_payload, chunk, sent)) return false;
    left -= chunk;
  }
  if (!RecvN(fd, size, received)) return false;
  if (last) {
    char c;
    return recv(fd, &c, 1, 0) == 0;
  }
  return true;
}

// A whole short connection: its bytes go into `sent`/`received` even when
// it fails half way.
bool ShortConnection(const sockaddr_storage& ss, socklen_t len, uint32_t size, uint64_t& sent,
                     uint64_t& received) {
  int fd = Dial(ss, len);
  if (fd < 0) return false;
  bool ok = Request(fd, size, true, sent, received);
  close(fd);
  return ok;
}

int Load(const Args& a) {
  sockaddr_storage ss;
  socklen_t len;
  if (!Resolve(a.host, a.port, ss, len)) Die("bad --host");
  signal(SIGPIPE, SIG_IGN);
  Totals t;
  const auto start = Clock::now();
  const auto end = start + std::chrono::milliseconds(static_cast<int64_t>(a.seconds * 1000));
  std::atomic<bool> stop{false};

  // Short connections, paced: each thread its share of the rate.
  std::vector<std::thread> workers;
  const double per_thread = a.rate / std::max(1, a.threads);
  for (int i = 0; i < a.threads && a.rate > 0; ++i) {
    workers.emplace_back([&, i] {
      const auto period = std::chrono::duration<double>(1.0 / per_thread);
      auto next = start + std::chrono::duration_cast<Clock::duration>(period * (i / double(a.threads)));
      while (!stop && Clock::now() < end) {
        std::this_thread::sleep_until(next);
        next += std::chrono::duration_cast<Clock::duration>(period);
        // Behind (the machine is slower than the rate): catch up by running
        // at full speed, never by bursting past the schedule.
        if (next < Clock::now() - std::chrono::seconds(1)) next = Clock::now();
        uint64_t s = 0, r = 0;
        bool ok = ShortConnection(ss, len, a.size, s, r);
        t.sent += s;
        t.received += r;
        t.connections += 1;
        if (!ok) t.failed += 1;
      }
    });
  }

  // Long-lived connections, each sending one request every interval.
  std::thread longs;
  if (a.long_conns > 0) {
    longs = std::thread([&] {
      std::vector<int> fds;
      uint64_t s = 0, r = 0;
      for (int i = 0; i < a.long_conns; ++i) {
        int fd = Dial(ss, len);
        if (fd < 0) {
          t.failed += 1;
          continue;
        }
        fds.push_back(fd);
        t.connections += 1;
      }
      const auto gap = std::chrono::milliseconds(a.interval_ms) / std::max<size_t>(1, fds.size());
      auto next = Clock::now();
      size_t k = 0;
      while (!stop && Clock::now() < end && !fds.empty()) {
        std::this_thread::sleep_until(next);
        next += gap;
        if (!Request(fds[k % fds.size()], a.size, false, s, r)) t.failed += 1;
        ++k;
      }
      // The end: the server answers a shutdown by closing.
      for (int fd : fds) {
        shutdown(fd, SHUT_WR);
        char c;
        while (recv(fd, &c, 1, 0) > 0) r += 1;
        close(fd);
      }
      t.sent += s;
      t.received += r;
    });
  }

  // New processes of the same service: forked children, one short
  // connection each, their totals back through a pipe.
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) Die("pipe");
  std::thread forker, collector;
  std::atomic<uint64_t> children{0};
  if (a.procs > 0) {
    // Children's totals read as they come: a pipe holds 64 KiB, and a
    // child blocked on a full one never exits.
    collector = std::thread([&] {
      for (;;) {
        uint64_t res[3];
        ssize_t n = read(pipefd[0], res, sizeof(res));
        if (n != sizeof(res)) break;  // EOF: every writer is gone
        t.sent += res[0];
        t.received += res[1];
        t.connections += 1;
        t.processes += 1;
        if (res[2] != 0) t.failed += 1;
      }
    });
    forker = std::thread([&] {
      const auto period = std::chrono::duration<double>(1.0 / a.procs);
      auto next = start;
      while (!stop && Clock::now() < end) {
        std::this_thread::sleep_until(next);
        next += std::chrono::duration_cast<Clock::duration>(period);
        if (next < Clock::now() - std::chrono::seconds(1)) next = Clock::now();
        pid_t pid = fork();
        if (pid == 0) {
          uint64_t res[3] = {0, 0, 0};
          res[2] = ShortConnection(ss, len, a.size, res[0], res[1]) ? 0 : 1;
          ssize_t w = write(pipefd[1], res, sizeof(res));
          _exit(w == sizeof(res) ? 0 : 1);
        }
        if (pid > 0) children += 1;
        while (waitpid(-1, nullptr, WNOHANG) > 0) {
        }
      }
    });
  }

  while (Clock::now() < end) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  stop = true;
  for (std::thread& w : workers) w.join();
  if (longs.joinable()) longs.join();
  if (forker.joinable()) forker.join();
  // Every child's totals (each writes one record, atomically: < PIPE_BUF),
  // once the last child has exited and our write end is closed.
  while (waitpid(-1, nullptr, 0) > 0) {
  }
  close(pipefd[1]);
  if (collector.joinable()) collector.join();
  close(pipefd[0]);
  std::printf(
      "{\"sent\": %llu, \"received\": %llu, \"connections\": %llu, \"processes\": %llu, "
      "\"forked\": %llu, \"failed\": %llu, \"seconds\": %.3f}\n",
      static_cast<unsigned long long>(t.sent.load()),
      static_cast<unsigned long long>(t.received.load()),
      static_cast<unsigned long long>(t.connections.load()),
      static_cast<unsigned long long>(t.processes.load()),
      static_cast<unsigned long long>(children.load()),
      static_cast<unsigned long long>(t.failed.load()),
      std::chrono::duration<double>(Clock::now() - start).count());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: svcmap-churn serve|load [flags] (see the source's header)\n");
    return 2;
  }
  Args a;
  a.mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--host") a.host = v;
    else if (k == "--bind") a.bind = v;
    else if (k == "--port") a.port = std::atoi(v.c_str());
    else if (k == "--seconds") a.seconds = std::min(7200.0, std::atof(v.c_str()));
    else if (k == "--rate") a.rate = std::atof(v.c_str());
    else if (k == "--threads") a.threads = std::max(1, std::atoi(v.c_str()));
    else if (k == "--long") a.long_conns = std::atoi(v.c_str());
    else if (k == "--interval-ms") a.interval_ms = std::max(1, std::atoi(v.c_str()));
    else if (k == "--procs") a.procs = std::atof(v.c_str());
    else if (k == "--size") a.size = static_cast<uint32_t>(std::atol(v.c_str()));
    else if (k == "--name") a.name = v;  // for naming rules; unused here
    else {
      std::fprintf(stderr, "svcmap-churn: unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  if (a.port <= 0) {
    std::fprintf(stderr, "svcmap-churn: --port is required\n");
    return 2;
  }
  if (a.mode == "serve") return Serve(a);
  if (a.mode == "load") return Load(a);
  std::fprintf(stderr, "svcmap-churn: unknown mode %s\n", a.mode.c_str());
  return 2;
}
