// svcmap-e2e-app: the "app" of the seed's picture, for the topology test.
// An HTTP server that answers each request after one round trip to Redis
// and one query to PostgreSQL, over connections it keeps open; it counts
// every byte it moves, so that the test can demand exact figures.
//
//   svcmap-e2e-app --listen IP:PORT --redis IP:PORT --pg IP:PORT
//                  [--requests N] [--pg-user U] [--pg-db D]
//
// Prints "ready" once listening and connected to both stores, then after N
// requests (or SIGTERM) one JSON line: {"pid", "http": {"sent", "received",
// "requests"}, "redis": {...}, "pg": {...}}. Every wait is bounded (30 s).
// The PostgreSQL side speaks just enough of protocol 3.0 for trust
// authentication and simple queries; Redis, RESP.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr int kTimeoutMs = 30000;
volatile sig_atomic_t g_stop = 0;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "svcmap-e2e-app: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

struct Counts {
  long long sent = 0, received = 0;
};

struct Peer {
  int fd = -1;
  Counts counts;
};

sockaddr_storage Addr(const std::string& hostport, socklen_t* len) {
  size_t colon = hostport.rfind(':');
  if (colon == std::string::npos) {
    errno = EINVAL;
    Die("want IP:PORT, got " + hostport);
  }
  std::string host = hostport.substr(0, colon);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  int port = std::atoi(hostport.c_str() + colon + 1);
  sockaddr_storage ss{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *len = sizeof(*v6);
  } else {
    errno = EINVAL;
    Die("bad address " + hostport);
  }
  return ss;
}

void Wait(int fd, short events) {
  pollfd p{fd, events, 0};
  int n = poll(&p, 1, kTimeoutMs);
  if (n == 0) errno = ETIMEDOUT;
  if (n <= 0) Die("poll");
}

void Send(Peer& p, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    Wait(p.fd, POLLOUT);
    ssize_t w = send(p.fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (w <= 0) Die("send");
    off += static_cast<size_t>(w);
    p.counts.sent += w;
  }
}

// Exactly n bytes.
std::string Recv(Peer& p, size_t n) {
  std::string out(n, '\0');
  size_t off = 0;
  while (off < n) {
    Wait(p.fd, POLLIN);
    ssize_t r = recv(p.fd, out.data() + off, n - off, 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r <= 0) Die("recv");
    off += static_cast<size_t>(r);
    p.counts.received += r;
  }
  return out;
}

std::string RecvLine(Peer& p) {
  std::string line;
  while (line.size() < 2 || line.compare(line.size() - 2, 2, "\r\n") != 0) line += Recv(p, 1);
  return line;
}

Peer Dial(const std::string& hostport) {
  socklen_t len;
  sockaddr_storage ss = Addr(hostport, &len);
  Peer p;
  p.fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (p.fd < 0) Die("socket");
  if (connect(p.fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) Die("connect " + hostport);
  return p;
}

// RESP: one command, one reply (a simple string, an error or a bulk string).
std::string Redis(Peer& p, const std::vector<std::string>& args) {
  std::string cmd = "*" + std::to_string(args.size()) + "\r\n";
  for (const std::string& a : args) cmd += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  Send(p, cmd);
  std::string line = RecvLine(p);
  if (line[0] == '-') {
    errno = EPROTO;
    Die("redis: " + line);
  }
  if (line[0] == '$') {
    long n = std::atol(line.c_str() + 1);
    if (n >= 0) return Recv(p, static_cast<size_t>(n) + 2).substr(0, n);
    return "";
  }
  return line.substr(1, line.size() - 3);
}

uint32_t Be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) |
         (uint32_t(uint8_t(s[at + 2])) << 8) | uint32_t(uint8_t(s[at + 3]));
}
std::string PutBe32(uint32_t v) {
  return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
}

// Reads backend messages until ReadyForQuery; dies on ErrorResponse.
void PgUntilReady(Peer& p) {
  for (;;) {
    std::string head = Recv(p, 5);
    std::string body = Recv(p, Be32(head, 1) - 4);
    if (head[0] == 'E') {
      // Fields: a type byte, then a NUL-terminated string; 'M' is the message.
      std::string message;
      for (size_t at = 0; at < body.size() && body[at] != '\0';) {
        size_t end = body.find('\0', at + 1);
        if (body[at] == 'M') message = body.substr(at + 1, end - at - 1);
        at = end == std::string::npos ? body.size() : end + 1;
      }
      errno = EPROTO;
      Die("postgres: " + message);
    }
    if (head[0] == 'R' && Be32(body, 0) != 0) {
      errno = EACCES;
      Die("postgres wants a password: the test cluster trusts local users");
    }
    if (head[0] == 'Z') return;
  }
}

void PgStart(Peer& p, const std::string& user, const std::string& db) {
  std::string params = "user";
  params.push_back('\0');
  params += user;
  params.push_back('\0');
  params += "database";
  params.push_back('\0');
  params += db;
  params.push_back('\0');
  params.push_back('\0');
  std::string msg = PutBe32(196608) + params;  // protocol 3.0
  Send(p, PutBe32(static_cast<uint32_t>(msg.size() + 4)) + msg);
  PgUntilReady(p);
}

void PgQuery(Peer& p, const std::string& sql) {
  std::string q = sql;
  q.push_back('\0');
  Send(p, "Q" + PutBe32(static_cast<uint32_t>(q.size() + 4)) + q);
  PgUntilReady(p);
}

void Json(const char* name, const Counts& c, long requests, bool last) {
  std::printf("\"%s\": {\"sent\": %lld, \"received\": %lld, \"requests\": %ld}%s", name, c.sent,
              c.received, requests, last ? "" : ", ");
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen_at, redis_at, pg_at, pg_user = "postgres", pg_db = "postgres";
  long max_requests = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--listen") listen_at = v;
    else if (k == "--redis") redis_at = v;
    else if (k == "--pg") pg_at = v;
    else if (k == "--pg-user") pg_user = v;
    else if (k == "--pg-db") pg_db = v;
    else if (k == "--requests") max_requests = std::atol(v.c_str());
    else {
      std::fprintf(stderr, "svcmap-e2e-app: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (listen_at.empty() || redis_at.empty() || pg_at.empty()) {
    std::fprintf(stderr, "usage: svcmap-e2e-app --listen IP:PORT --redis IP:PORT --pg IP:PORT\n");
    return 2;
  }
  struct sigaction stop {};
  stop.sa_handler = [](int) { g_stop = 1; };
  sigaction(SIGTERM, &stop, nullptr);
  sigaction(SIGINT, &stop, nullptr);

  Peer redis = Dial(redis_at);
  Peer pg = Dial(pg_at);
  PgStart(pg, pg_user, pg_db);
  Redis(redis, {"SET", "svcmap:hello", "world"});

  socklen_t len;
  sockaddr_storage ss = Addr(listen_at, &len);
  int lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (lfd < 0 || bind(lfd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(lfd, 128) != 0)
    Die("listen " + listen_at);
  std::printf("ready\n");
  std::fflush(stdout);

  Counts http;
  long requests = 0;
  while (!g_stop && (max_requests < 0 || requests < max_requests)) {
    pollfd pfd{lfd, POLLIN, 0};
    int n = poll(&pfd, 1, 200);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    Peer client;
    client.fd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (client.fd < 0) continue;
    std::string head;
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 65536)
      head += Recv(client, 1);
    // The request's own work: a cache read and a query.
    std::string value = Redis(redis, {"GET", "svcmap:hello"});
    PgQuery(pg, "SELECT 1");
    std::string body = "hello " + value + "\n";
    Send(client, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    http.sent += client.counts.sent;
    http.received += client.counts.received;
    // The proxy closes after reading the whole answer; wait for it, so that
    // nothing it sends later goes uncounted.
    char c;
    Wait(client.fd, POLLIN);
    ssize_t extra = recv(client.fd, &c, 1, 0);
    if (extra > 0) http.received += extra;
    close(client.fd);
    ++requests;
  }
  std::printf("{\"pid\": %d, ", getpid());
  Json("http", http, requests, false);
  Json("redis", redis.counts, requests, false);
  Json("pg", pg.counts, requests, true);
  std::printf("}\n");
  std::fflush(stdout);
  // Kept open until the test has its snapshots: then it kills us.
  while (!g_stop) pause();
  return 0;
}
