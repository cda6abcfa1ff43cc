#include "svcmap/kernel/event_decode.h"

#include <arpa/inet.h>

#include <cstring>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "svcmap/bpf_abi.h"

namespace svcmap::kernel {
namespace {

svcmap_event CloseEvent() {
  svcmap_event e{};
  e.type = SVCMAP_EV_CLOSE;
  e.netns = 4026531840u;
  e.ts_ns = 5'000'000'000ULL;
  e.sock_id = 0xffff888100000000ULL;
  e.owner.tgid = 4242;
  e.owner.start_ns = 123'456'789ULL;
  e.owner.cgroup_id = 77;
  std::memcpy(e.owner.comm, "nginx", 6);
  e.tuple.family = AF_INET;
  uint8_t s[4] = {10, 0, 0, 1}, d[4] = {10, 0, 0, 2};
  std::memcpy(e.tuple.saddr, s, 4);
  std::memcpy(e.tuple.daddr, d, 4);
  e.tuple.sport = 40000;
  e.tuple.dport = 3306;
  e.role = SVCMAP_ROLE_CLIENT;
  e.flags = SVCMAP_F_OWNED | SVCMAP_F_ESTABLISHED | SVCMAP_F_TCP_COUNTERS;
  e.open_ns = 4'000'000'000ULL;
  e.bytes_sent = 1000;
  e.bytes_received = 300;
  e.tcp_bytes_sent = 1000;
  e.tcp_bytes_received = 300;
  return e;
}

absl::Span<const uint8_t> Bytes(const svcmap_event& e) {
  return {reinterpret_cast<const uint8_t*>(&e), sizeof(e)};
}

TEST(EventDecodeTest, DecodesACloseEventFieldByField) {
  svcmap_event e = CloseEvent();
  absl::StatusOr<flow::SockEvent> ev = DecodeEvent(Bytes(e));
  ASSERT_TRUE(ev.ok()) << ev.status();
  EXPECT_EQ(ev->type, flow::EventType::kClose);
  EXPECT_EQ(ev->ts_ns, 5'000'000'000ULL);
  const flow::SockRecord& s = ev->sock;
  EXPECT_EQ(s.sock_id, 0xffff888100000000ULL);
  EXPECT_EQ(s.netns, 4026531840u);
  EXPECT_EQ(s.role, flow::Role::kClient);
  EXPECT_TRUE(s.owned);
  EXPECT_TRUE(s.established);
  EXPECT_EQ(s.owner.process.pid, 4242u);
  // Whole clock ticks, as /proc/<pid>/stat has them (see StartNsToKey).
  EXPECT_EQ(s.owner.process.start_ns, 120'000'000ULL);
  EXPECT_EQ(s.owner.cgroup_id, 77u);
  EXPECT_EQ(s.owner.comm, "nginx");
  EXPECT_EQ(s.local_ip.ToString(), "10.0.0.1");
  EXPECT_EQ(s.remote_ip.ToString(), "10.0.0.2");
  EXPECT_EQ(s.local_port, 40000);
  EXPECT_EQ(s.remote_port, 3306);
  EXPECT_EQ(s.open_ns, 4'000'000'000ULL);
  EXPECT_EQ(s.bytes_sent, 1000u);
  EXPECT_EQ(s.bytes_received, 300u);
  ASSERT_TRUE(ev->tcp.has_value());
  EXPECT_EQ(ev->tcp->sent, 1000u);
}

TEST(EventDecodeTest, ACloseCarriesTcpsHealthOfTheConnection) {
  svcmap_event e = CloseEvent();
  e.total_retrans = 17;
  e.srtt_us = 2500;
  e.rtt_min_us = 40;
  e.connect_us = 310;
  e.reset_received = 1;
  absl::StatusOr<flow::SockEvent> ev = DecodeEvent(Bytes(e));
  ASSERT_TRUE(ev.ok()) << ev.status();
  const flow::ConnHealth& h = ev->sock.health;
  EXPECT_EQ(h.retransmits, 17u);
  EXPECT_EQ(h.srtt_us, 2500u);
  EXPECT_EQ(h.rtt_min_us, 40u);
  EXPECT_EQ(h.connect_us, 310u);
  EXPECT_TRUE(h.reset_received);
  EXPECT_FALSE(h.reset_sent);
  EXPECT_EQ(h.outcome, flow::Outcome::kNone);

  for (auto [raw, want] : {std::pair<uint8_t, flow::Outcome>{SVCMAP_OUTCOME_REFUSED, flow::Outcome::kRefused},
                           {SVCMAP_OUTCOME_TIMED_OUT, flow::Outcome::kTimedOut},
                           {SVCMAP_OUTCOME_ERROR, flow::Outcome::kError},
                           {200, flow::Outcome::kError}}) {
    e.outcome = raw;
    ev = DecodeEvent(Bytes(e));
    ASSERT_TRUE(ev.ok());
    EXPECT_EQ(ev->sock.health.outcome, want) << int(raw);
  }
  // Only a close says how a connection went.
  e.type = SVCMAP_EV_CONNECT;
  ev = DecodeEvent(Bytes(e));
  ASSERT_TRUE(ev.ok());
  EXPECT_EQ(ev->sock.health.retransmits, 0u);
  EXPECT_EQ(ev->sock.health.outcome, flow::Outcome::kNone);
}

TEST(EventDecodeTest, CommWithoutTerminatorIsCutAtSixteen) {
  svcmap_event e = CloseEvent();
  std::memset(e.owner.comm, 'a', sizeof(e.owner.comm));
  absl::StatusOr<flow::SockEvent> ev = DecodeEvent(Bytes(e));
  ASSERT_TRUE(ev.ok());
  EXPECT_EQ(ev->sock.owner.comm, std::string(16, 'a'));
}

TEST(EventDecodeTest, Ipv6AndV4MappedAddresses) {
  svcmap_event e = CloseEvent();
  e.tuple.family = AF_INET6;
  inet_pton(AF_INET6, "fd00:231::1", e.tuple.saddr);
  inet_pton(AF_INET6, "::ffff:10.0.0.2", e.tuple.daddr);
  absl::StatusOr<flow::SockEvent> ev = DecodeEvent(Bytes(e));
  ASSERT_TRUE(ev.ok());
  EXPECT_EQ(ev->sock.local_ip.ToString(), "fd00:231::1");
  EXPECT_EQ(ev->sock.remote_ip.ToString(), "10.0.0.2");
}

TEST(EventDecodeTest, NoTcpCountersUnlessTheKernelReadThem) {
  svcmap_event e = CloseEvent();
  e.flags = SVCMAP_F_OWNED;
  EXPECT_FALSE(DecodeEvent(Bytes(e))->tcp.has_value());
  e = CloseEvent();
  e.type = SVCMAP_EV_CONNECT;  // counters only mean something at close
  EXPECT_FALSE(DecodeEvent(Bytes(e))->tcp.has_value());
}

TEST(EventDecodeTest, RejectsShortRecordsUnknownTypesAndFamilies) {
  svcmap_event e = CloseEvent();
  EXPECT_FALSE(DecodeEvent(Bytes(e).subspan(0, sizeof(e) - 1)).ok());
  EXPECT_FALSE(DecodeEvent({}).ok());
  e.type = 99;
  EXPECT_FALSE(DecodeEvent(Bytes(e)).ok());
  e = CloseEvent();
  e.tuple.family = 1;  // AF_UNIX
  EXPECT_FALSE(DecodeEvent(Bytes(e)).ok());
}

TEST(EventDecodeTest, UnalignedRecordsDecode) {
  svcmap_event e = CloseEvent();
  std::vector<uint8_t> buf(sizeof(e) + 1);
  std::memcpy(buf.data() + 1, &e, sizeof(e));
  absl::StatusOr<flow::SockEvent> ev = DecodeEvent({buf.data() + 1, sizeof(e)});
  ASSERT_TRUE(ev.ok());
  EXPECT_EQ(ev->sock.owner.process.pid, 4242u);
}

TEST(EventDecodeTest, LiveSockState) {
  svcmap_sock_state st{};
  st.owner.tgid = 9;
  std::memcpy(st.owner.comm, "redis-server", 13);
  st.tuple.family = AF_INET;
  st.tuple.sport = 6379;
  st.role = SVCMAP_ROLE_SERVER;
  st.established = 1;
  st.bytes_sent = 5;
  st.bytes_received = 6;
  flow::SockRecord s = DecodeSockState(0x1234, st);
  EXPECT_EQ(s.sock_id, 0x1234u);
  EXPECT_EQ(s.role, flow::Role::kServer);
  EXPECT_FALSE(s.owned);
  EXPECT_TRUE(s.established);
  EXPECT_EQ(s.owner.comm, "redis-server");
  EXPECT_EQ(s.bytes_sent, 5u);
  EXPECT_EQ(s.bytes_received, 6u);
}

TEST(EventDecodeTest, LiveEntryTakesTcpCountersWhenTheHooksSawLess) {
  svcmap_sock_state st{};
  st.tuple.family = AF_INET;
  st.role = SVCMAP_ROLE_CLIENT;
  st.established = st.owned = 1;
  st.bytes_sent = 0;  // a kernel without sock_send_length
  st.bytes_received = 0;
  st.tcp_bytes_sent = 300000;
  st.tcp_bytes_received = 4000;
  absl::StatusOr<flow::SockRecord> s = DecodeLive(0xabc, st);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->sock_id, 0xabcu);
  EXPECT_EQ(s->bytes_sent, 300000u);
  EXPECT_EQ(s->bytes_received, 4000u);

  // No refresh has run yet (or the tail is unacknowledged): the hooks'
  // figures stand.
  st.tcp_bytes_sent = 0;
  st.tcp_bytes_received = 0;
  st.bytes_sent = 7;
  st.bytes_received = 9;
  s = DecodeLive(0xabc, st);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->bytes_sent, 7u);
  EXPECT_EQ(s->bytes_received, 9u);

  st.tuple.family = 1;  // AF_UNIX: not ours
  EXPECT_FALSE(DecodeLive(0xabc, st).ok());
}

TEST(ReconcileBytesTest, EachDirectionTakesTheLargerFigure) {
  flow::SockRecord s;
  s.bytes_sent = 100;
  s.bytes_received = 50;
  EXPECT_FALSE(flow::ReconcileBytes({100, 50}, s));
  EXPECT_FALSE(flow::ReconcileBytes({90, 50}, s));  // unacknowledged tail
  EXPECT_EQ(s.bytes_sent, 100u);
  EXPECT_TRUE(flow::ReconcileBytes({100, 4096}, s));  // e.g. splice()d reads
  EXPECT_EQ(s.bytes_received, 4096u);
}

}  // namespace
}  // namespace svcmap::kernel
