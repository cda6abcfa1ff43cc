// The scanner's pure parts: /proc and sock_diag parsers on canned input,
// and the tracker that turns successive scans into events.
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "svcmap/scan/inet_diag.h"
#include "svcmap/scan/owners.h"
#include "svcmap/scan/proc_parse.h"
#include "svcmap/scan/tracker.h"

namespace svcmap::scan {
namespace {

using flow::IpAddr;

TEST(ProcParseTest, SocketLinks) {
  EXPECT_EQ(ParseSocketLink("socket:[12345]"), 12345u);
  EXPECT_EQ(ParseSocketLink("socket:[]"), std::nullopt);
  EXPECT_EQ(ParseSocketLink("socket:[12a]"), std::nullopt);
  EXPECT_EQ(ParseSocketLink("pipe:[12]"), std::nullopt);
  EXPECT_EQ(ParseSocketLink("/dev/null"), std::nullopt);
  EXPECT_EQ(ParseSocketLink("socket:[99999999999999999999999]"), std::nullopt);
}

TEST(ProcParseTest, SnmpTcpOpens) {
  // The Tcp lines of a real /proc/net/snmp (MaxConn is -1).
  const char* snmp =
      "Ip: Forwarding DefaultTTL\nIp: 2 64\n"
      "Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails "
      "EstabResets CurrEstab\n"
      "Tcp: 1 200 120000 -1 8015326 8015304 2 0 0\n"
      "Udp: InDatagrams\nUdp: 5\n";
  absl::StatusOr<TcpOpens> o = ParseSnmpTcp(snmp);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->active_opens, 8015326u);
  EXPECT_EQ(o->passive_opens, 8015304u);
  EXPECT_FALSE(ParseSnmpTcp("Tcp: ActiveOpens PassiveOpens\n").ok());
  EXPECT_FALSE(ParseSnmpTcp("Tcp: ActiveOpens PassiveOpens\nTcp: 1 x\n").ok());
  EXPECT_FALSE(ParseSnmpTcp("Tcp: RtoMin\nTcp: 200\n").ok());
  EXPECT_FALSE(ParseSnmpTcp("").ok());
}

TEST(ProcParseTest, StatCommWithSpacesAndParens) {
  absl::StatusOr<ProcStat> s = ParseProcStat(
      "1889 (my (odd) name) R 1883 1883 30725 0 -1 4194304 103 0 0 0 0 0 0 0 20 0 1 0 1237316 "
      "2998272 410");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->comm, "my (odd) name");
  EXPECT_EQ(s->state, 'R');
  EXPECT_EQ(s->start_ticks, 1237316u);
  EXPECT_FALSE(ParseProcStat("1889 (x) R 1 2 3").ok());
  EXPECT_FALSE(ParseProcStat("no parens at all").ok());
  EXPECT_FALSE(ParseProcStat(")(").ok());
}

TEST(ProcParseTest, ProcNetTcpV4AndV6) {
  const char* tcp =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
      "timeout inode\n"
      "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0     "
      "   0 1061 1 00000000c1352f0e 100 0 0 10 0\n"
      "   1: 0100007F:9C40 0200007F:1F90 01 00000000:00000000 00:00000000 00000000  1000     "
      "   0 2002 1 0000000000000000 20 4 30 10 -1\n"
      "   2: garbage\n";
  ProcNetTcp p = ParseProcNetTcp(tcp, false);
  ASSERT_EQ(p.entries.size(), 2u);
  EXPECT_EQ(p.bad_lines, 1u);
  EXPECT_EQ(p.entries[0].local_ip, IpAddr::V4(127, 0, 0, 1));
  EXPECT_EQ(p.entries[0].local_port, 8080);
  EXPECT_EQ(p.entries[0].state, 10);
  EXPECT_EQ(p.entries[0].inode, 1061u);
  EXPECT_EQ(p.entries[1].remote_ip, IpAddr::V4(127, 0, 0, 2));
  EXPECT_EQ(p.entries[1].local_port, 40000);
  EXPECT_EQ(p.entries[1].remote_port, 8080);

  const char* tcp6 =
      "  sl  local_address                         remote_address                        st "
      "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
      "   0: 000000000000000000000000010000000:1F90 00000000000000000000000000000000:0000 0A "
      "00000000:00000000 00:00000000 00000000     0        0 7 1 0 100 0 0 10 0\n"
      "   1: 00000000000000000000000001000000:1F90 0000000000000000FFFF00000200007F:9C40 01 "
      "00000000:00000000 00:00000000 00000000     0        0 8 1 0 100 0 0 10 0\n";
  ProcNetTcp p6 = ParseProcNetTcp(tcp6, true);
  ASSERT_EQ(p6.entries.size(), 1u);  // the first line has 33 hex digits
  EXPECT_EQ(p6.bad_lines, 1u);
  EXPECT_EQ(p6.entries[0].local_ip, *IpAddr::Parse("::1"));
  // A v4-mapped peer is an IPv4 address, as everywhere in svcmap.
  EXPECT_EQ(p6.entries[0].remote_ip, IpAddr::V4(127, 0, 0, 2));
  EXPECT_EQ(p6.entries[0].inode, 8u);
}

// Builds what the kernel sends for one socket.
std::vector<uint8_t> DiagMessage(uint8_t family, uint8_t state, const uint8_t* src,
                                 const uint8_t* dst, uint16_t sport, uint16_t dport,
                                 uint32_t inode, uint64_t cookie, size_t info_len,
                                 uint64_t acked, uint64_t received) {
  inet_diag_msg msg{};
  msg.idiag_family = family;
  msg.idiag_state = state;
  msg.id.idiag_sport = htons(sport);
  msg.id.idiag_dport = htons(dport);
  std::memcpy(msg.id.idiag_src, src, family == AF_INET ? 4 : 16);
  std::memcpy(msg.id.idiag_dst, dst, family == AF_INET ? 4 : 16);
  msg.id.idiag_cookie[0] = static_cast<uint32_t>(cookie);
  msg.id.idiag_cookie[1] = static_cast<uint32_t>(cookie >> 32);
  msg.idiag_inode = inode;
  tcp_info info{};
  info.tcpi_bytes_acked = acked;
  info.tcpi_bytes_received = received;
  std::vector<uint8_t> out(NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(msg)) +
                           (info_len ? RTA_SPACE(info_len) : 0));
  nlmsghdr h{};
  h.nlmsg_len = static_cast<uint32_t>(out.size());
  h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  std::memcpy(out.data(), &h, sizeof(h));
  std::memcpy(out.data() + NLMSG_HDRLEN, &msg, sizeof(msg));
  if (info_len) {
    rtattr a{};
    a.rta_len = static_cast<unsigned short>(RTA_LENGTH(info_len));
    a.rta_type = INET_DIAG_INFO;
    uint8_t* at = out.data() + NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(msg));
    std::memcpy(at, &a, sizeof(a));
    std::memcpy(at + RTA_LENGTH(0), &info, std::min(info_len, sizeof(info)));
  }
  return out;
}

std::vector<uint8_t> Done() {
  std::vector<uint8_t> out(NLMSG_HDRLEN + sizeof(int));
  nlmsghdr h{};
  h.nlmsg_len = static_cast<uint32_t>(out.size());
  h.nlmsg_type = NLMSG_DONE;
  std::memcpy(out.data(), &h, sizeof(h));
  return out;
}

TEST(InetDiagTest, ParsesSocketsAndTcpInfoThenDone) {
  const uint8_t a[4] = {10, 0, 0, 1}, b[4] = {10, 0, 0, 2};
  std::vector<uint8_t> buf = DiagMessage(AF_INET, 1, a, b, 40000, 3306, 77, 0x100000002ULL,
                                         sizeof(tcp_info), 1001, 2002);
  // An old kernel's tcp_info ends before bytes_acked: no byte counts.
  std::vector<uint8_t> old = DiagMessage(AF_INET, 10, a, b, 3306, 0, 78, 9,
                                         offsetof(tcp_info, tcpi_bytes_acked), 5, 5);
  buf.insert(buf.end(), old.begin(), old.end());
  std::vector<DiagSock> out;
  DiagReply r = ParseTcpDiagDatagram(buf, out);
  EXPECT_EQ(r.status, DiagParse::kMore);
  EXPECT_EQ(r.bad_messages, 0u);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].local_ip, IpAddr::V4(10, 0, 0, 1));
  EXPECT_EQ(out[0].remote_port, 3306);
  EXPECT_EQ(out[0].cookie, 0x100000002ULL);
  EXPECT_EQ(out[0].inode, 77u);
  EXPECT_EQ(out[0].bytes_acked, 1001u);
  EXPECT_EQ(out[0].bytes_received, 2002u);
  EXPECT_EQ(out[1].state, 10);
  EXPECT_FALSE(out[1].bytes_acked.has_value());

  std::vector<uint8_t> done = Done();
  EXPECT_EQ(ParseTcpDiagDatagram(done, out).status, DiagParse::kDone);
}

TEST(InetDiagTest, TruncatedAndErrorsNeverReadPastTheBuffer) {
  const uint8_t a[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  std::vector<uint8_t> buf =
      DiagMessage(AF_INET6, 1, a, a, 1, 2, 3, 4, sizeof(tcp_info), 1, 1);
  for (size_t cut = 0; cut < buf.size(); ++cut) {
    std::vector<DiagSock> out;
    std::vector<uint8_t> part(buf.begin(), buf.begin() + cut);
    ParseTcpDiagDatagram(part, out);  // ASan catches any over-read
    EXPECT_TRUE(out.empty()) << cut;
  }
  std::vector<uint8_t> err(NLMSG_HDRLEN + sizeof(nlmsgerr));
  nlmsghdr h{};
  h.nlmsg_len = static_cast<uint32_t>(err.size());
  h.nlmsg_type = NLMSG_ERROR;
  nlmsgerr e{};
  e.error = -EPERM;
  std::memcpy(err.data(), &h, sizeof(h));
  std::memcpy(err.data() + NLMSG_HDRLEN, &e, sizeof(e));
  std::vector<DiagSock> out;
  DiagReply r = ParseTcpDiagDatagram(err, out);
  EXPECT_EQ(r.status, DiagParse::kError);
  EXPECT_EQ(r.error, EPERM);
}

TEST(PayloadBytesTest, SynAndFinAreNotPayload) {
  DiagSock s;
  s.state = 1;  // ESTABLISHED
  s.bytes_acked = 101;
  s.bytes_received = 50;
  uint64_t sent = 0, received = 0;
  PayloadBytes(s, flow::Role::kClient, sent, received);
  EXPECT_EQ(sent, 100u);  // the SYN
  EXPECT_EQ(received, 50u);
  PayloadBytes(s, flow::Role::kServer, sent, received);
  EXPECT_EQ(sent, 101u);  // a passive opener's SYN-ACK is not counted there
  s.state = 5;            // FIN_WAIT2: our FIN was acknowledged
  s.bytes_acked = 102;
  PayloadBytes(s, flow::Role::kClient, sent, received);
  EXPECT_EQ(sent, 100u);
  s.state = 8;  // CLOSE_WAIT: their FIN arrived
  s.bytes_acked = 101;
  s.bytes_received = 51;
  PayloadBytes(s, flow::Role::kClient, sent, received);
  EXPECT_EQ(received, 50u);
  DiagSock none;
  PayloadBytes(none, flow::Role::kClient, sent, received);
  EXPECT_EQ(sent, 0u);
  EXPECT_EQ(received, 0u);
}

DiagSock Sock(uint8_t state, uint16_t lport, uint16_t rport, uint64_t cookie, uint64_t inode,
              uint64_t acked = 0, uint64_t received = 0) {
  DiagSock s;
  s.family = AF_INET;
  s.state = state;
  s.local_ip = IpAddr::V4(10, 0, 0, 2);
  s.remote_ip = rport ? IpAddr::V4(10, 0, 0, 1) : IpAddr();
  s.local_port = lport;
  s.remote_port = rport;
  s.cookie = cookie;
  s.inode = inode;
  s.bytes_acked = acked;
  s.bytes_received = received;
  return s;
}

flow::Owner OwnerOf(uint32_t pid, const char* comm) {
  flow::Owner o;
  o.process = {pid, 1'000'000'000};
  o.comm = comm;
  return o;
}

TEST(SocketTrackerTest, SeedsThenReportsOpensAndClosesLikeTheHooks) {
  SocketTracker t;
  const uint32_t ns = 4026531840u;
  absl::flat_hash_map<uint64_t, flow::Owner> owners = {{10, OwnerOf(5, "mysqld")},
                                                       {11, OwnerOf(5, "mysqld")}};
  // Start-up: a listener and one accepted connection that predate us.
  std::vector<NetnsScan> scan = {
      {ns, {Sock(10, 3306, 0, 1, 10), Sock(1, 3306, 40000, 2, 11, 500, 70)}}};
  EXPECT_EQ(t.UnknownInodes(scan).size(), 2u);
  std::vector<flow::SockEvent> ev = t.Apply(scan, owners, {}, 100);
  ASSERT_EQ(ev.size(), 1u);  // the listener; the connection is live, not an event
  EXPECT_EQ(ev[0].type, flow::EventType::kListen);
  EXPECT_EQ(t.seeded(), 1u);
  EXPECT_EQ(t.seeded_listeners(), 1u);
  std::vector<flow::SockRecord> live = t.Live();
  ASSERT_EQ(live.size(), 2u);
  for (const flow::SockRecord& r : live) {
    EXPECT_TRUE(r.seeded);
    EXPECT_EQ(r.owner.comm, "mysqld");
    if (r.role == flow::Role::kServer) {
      EXPECT_EQ(r.bytes_sent, 500u);
      EXPECT_EQ(r.bytes_received, 70u);
    }
  }

  // Next scan: owners are known, nothing to walk /proc for. A new accepted
  // socket still in the accept queue (no inode) borrows the listener's owner.
  scan = {{ns,
           {Sock(10, 3306, 0, 1, 10), Sock(1, 3306, 40000, 2, 11, 900, 80),
            Sock(1, 3306, 40001, 3, 0, 0, 5)}}};
  EXPECT_TRUE(t.UnknownInodes(scan).empty());
  ev = t.Apply(scan, {}, {}, 200);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].type, flow::EventType::kAccept);
  EXPECT_EQ(ev[0].sock.owner.process.pid, 5u);
  EXPECT_FALSE(ev[0].sock.seeded);
  EXPECT_FALSE(ev[0].sock.owned);

  // The first connection is gone: it closed with the bytes of the last scan.
  scan = {{ns, {Sock(10, 3306, 0, 1, 10), Sock(1, 3306, 40001, 3, 12, 0, 9)}}};
  ev = t.Apply(scan, {{12, OwnerOf(6, "worker")}}, {}, 300);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].type, flow::EventType::kClose);
  EXPECT_EQ(ev[0].sock.sock_id, 2u);
  EXPECT_EQ(ev[0].sock.bytes_sent, 900u);
  EXPECT_EQ(ev[0].sock.open_ns, 100u);
  EXPECT_TRUE(ev[0].sock.seeded);
  // Once accepted, the accepting process owns it.
  for (const flow::SockRecord& r : t.Live()) {
    if (r.sock_id == 3) {
      EXPECT_EQ(r.owner.comm, "worker");
    }
  }
}

TEST(SocketTrackerTest, ClientRoleOrphansAndVanishedNamespaces) {
  SocketTracker t;
  const uint32_t a = 1, b = 2;
  t.Apply({}, {}, {}, 1);  // empty start
  std::vector<NetnsScan> scan = {{a, {Sock(1, 40000, 80, 7, 70, 1001, 20)}},
                                 {b, {Sock(2, 40001, 80, 8, 71)}}};
  std::vector<flow::SockEvent> ev =
      t.Apply(scan, {{70, OwnerOf(9, "curl")}, {71, OwnerOf(9, "curl")}}, {}, 2);
  ASSERT_EQ(ev.size(), 2u);
  for (const flow::SockEvent& e : ev) EXPECT_EQ(e.type, flow::EventType::kConnect);
  // The process closed it (inode 0, FIN_WAIT2): it keeps its owner, and the
  // acknowledged FIN is not payload. Netns b could not be read this time:
  // its socket is not taken for closed.
  scan = {{a, {Sock(5, 40000, 80, 7, 0, 1002, 20)}}};
  ev = t.Apply(scan, {}, {b}, 3);
  EXPECT_TRUE(ev.empty());
  for (const flow::SockRecord& r : t.Live()) {
    EXPECT_EQ(r.owner.comm, "curl");
    if (r.sock_id == 7) {
      EXPECT_EQ(r.bytes_sent, 1000u);
    }
  }
  EXPECT_EQ(t.size(), 2u);
  // A socket no process holds and no listener explains is not reported.
  ev = t.Apply({{a, {Sock(1, 50000, 22, 99, 0)}}}, {}, {}, 4);
  ASSERT_EQ(ev.size(), 2u);  // the two closes, nothing for the orphan
  for (const flow::SockEvent& e : ev) EXPECT_EQ(e.type, flow::EventType::kClose);
  EXPECT_TRUE(t.Live().empty());
}

// A fake /proc, built in a temporary directory: the fd walk reads nothing
// but directory entries, symlink texts and stat files.
class FakeProc {
 public:
  FakeProc() {
    char tmpl[] = "/tmp/svcmap-fakeproc.XXXXXX";
    root_ = mkdtemp(tmpl);
  }
  ~FakeProc() { std::filesystem::remove_all(root_); }
  const std::string& root() const { return root_; }

  void Process(int pid, const std::string& comm, uint64_t start_ticks,
               const std::vector<std::string>& links) {
    std::string dir = root_ + "/" + std::to_string(pid);
    std::filesystem::create_directories(dir + "/fd");
    std::ofstream(dir + "/stat") << pid << " (" << comm
                                 << ") S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 " << start_ticks
                                 << " 0 0\n";
    for (size_t i = 0; i < links.size(); ++i)
      std::filesystem::create_symlink(links[i], dir + "/fd/" + std::to_string(i));
  }
  void Raw(const std::string& rel, const std::string& text) {
    std::filesystem::create_directories(std::filesystem::path(root_ + "/" + rel).parent_path());
    std::ofstream(root_ + "/" + rel) << text;
  }

 private:
  std::string root_;
};

TEST(SocketOwnersTest, WalksFdLinksAndCountsWhatItCouldNotRead) {
  FakeProc proc;
  proc.Process(100, "nginx: master", 500, {"socket:[7]", "/dev/null", "pipe:[9]"});
  proc.Process(101, "nginx: worker", 501, {"socket:[7]", "socket:[8]"});
  proc.Process(102, "gone", 502, {"socket:[10]"});
  proc.Raw("102/stat", "102 (gone");             // exited while we read it
  proc.Raw("103/status", "no fd directory\n");   // exited before
  proc.Raw("self-not-a-pid/fd/x", "");
  SocketOwners all = ScanSocketOwners(nullptr, proc.root());
  EXPECT_EQ(all.processes, 4u);
  EXPECT_EQ(all.vanished, 2u);
  ASSERT_EQ(all.by_inode.size(), 2u);
  // The shared listener goes to the lowest PID: the parent that made it.
  EXPECT_EQ(all.by_inode.at(7).process.pid, 100u);
  EXPECT_EQ(all.by_inode.at(7).comm, "nginx: master");
  EXPECT_EQ(all.by_inode.at(7).process.start_ns, 500 * flow::kNsPerClockTick);
  EXPECT_EQ(all.by_inode.at(8).process.pid, 101u);

  // Only what is wanted; a hinted process is walked first, and the walk
  // stops as soon as everything wanted is found.
  absl::flat_hash_set<uint64_t> wanted = {8};
  SocketOwners some = ScanSocketOwners(&wanted, proc.root(), {101});
  ASSERT_EQ(some.by_inode.size(), 1u);
  EXPECT_EQ(some.by_inode.at(8).comm, "nginx: worker");
  EXPECT_EQ(some.processes, 1u);
  // A hint that no longer exists costs nothing but a count.
  SocketOwners stale = ScanSocketOwners(&wanted, proc.root(), {999});
  EXPECT_EQ(stale.by_inode.size(), 1u);
  EXPECT_GE(stale.vanished, 1u);
}

TEST(SocketOwnersTest, MissingProcIsEmptyNotAnError) {
  SocketOwners none = ScanSocketOwners(nullptr, "/nonexistent/proc");
  EXPECT_TRUE(none.by_inode.empty());
  EXPECT_EQ(none.processes, 0u);
}

}  // namespace
}  // namespace svcmap::scan
