#include "svcmap/flow/flow_table.h"

#include "gtest/gtest.h"

namespace svcmap::flow {
namespace {

SockRecord Client(uint64_t id, uint32_t pid, uint16_t sport, uint64_t sent, uint64_t received) {
  SockRecord s;
  s.sock_id = id;
  s.open_ns = 1000 + id;
  s.netns = 1;
  s.role = Role::kClient;
  s.owned = s.established = true;
  s.owner.process = {pid, 50};
  s.owner.comm = "app";
  s.local_ip = IpAddr::V4(10, 0, 0, 1);
  s.local_port = sport;
  s.remote_ip = IpAddr::V4(10, 0, 0, 2);
  s.remote_port = 3306;
  s.bytes_sent = sent;
  s.bytes_received = received;
  return s;
}

SockRecord Server(uint64_t id, uint32_t pid, uint16_t peer_port, uint64_t sent, uint64_t received) {
  SockRecord s = Client(id, pid, 3306, sent, received);
  s.role = Role::kServer;
  s.local_ip = IpAddr::V4(10, 0, 0, 2);
  s.remote_ip = IpAddr::V4(10, 0, 0, 1);
  s.remote_port = peer_port;
  s.owner.comm = "mysqld";
  return s;
}

const FlowTable::IsServerFn kNoListeners = [](const SockRecord&) { return false; };

TEST(FlowTableTest, ClientConnectionsToOneServiceAggregateAcrossEphemeralPorts) {
  FlowTable t;
  t.AddClosed(Client(1, 7, 40001, 100, 10), 2000, kNoListeners);
  t.AddClosed(Client(2, 7, 40002, 200, 20), 3000, kNoListeners);
  FlowView v = t.View({}, 4000, kNoListeners);
  ASSERT_EQ(v.flows.size(), 1u);
  const auto& [key, stats] = *v.flows.begin();
  EXPECT_EQ(key.role, Role::kClient);
  EXPECT_EQ(key.remote_port, 3306);
  EXPECT_EQ(key.local_port, 0);
  EXPECT_EQ(stats.bytes_sent, 300u);
  EXPECT_EQ(stats.bytes_received, 30u);
  EXPECT_EQ(stats.connections, 2u);
  EXPECT_EQ(stats.first_seen_ns, 1001u);
  EXPECT_EQ(stats.last_seen_ns, 3000u);
  EXPECT_EQ(v.traffic.size(), 2u);  // one row per 4-tuple
}

TEST(FlowTableTest, ServerFlowsAreKeyedByServicePortNotPeerPort) {
  FlowTable t;
  t.AddClosed(Server(1, 9, 40001, 10, 100), 2000, kNoListeners);
  t.AddClosed(Server(2, 9, 40002, 10, 100), 2000, kNoListeners);
  FlowView v = t.View({}, 3000, kNoListeners);
  ASSERT_EQ(v.flows.size(), 1u);
  EXPECT_EQ(v.flows.begin()->first.local_port, 3306);
  EXPECT_EQ(v.flows.begin()->first.remote_port, 0);
  EXPECT_EQ(v.flows.begin()->second.connections, 2u);
  // Traffic is written from the connecting side: src is the client.
  for (const auto& [k, s] : v.traffic) {
    EXPECT_EQ(k.dst_port, 3306);
    EXPECT_EQ(k.src_ip, IpAddr::V4(10, 0, 0, 1));
    EXPECT_EQ(s.bytes_to_dst, 100u);
    EXPECT_EQ(s.bytes_to_src, 10u);
  }
}

TEST(FlowTableTest, DifferentProcessesAndRolesAreDifferentFlows) {
  FlowTable t;
  t.AddClosed(Client(1, 7, 40001, 1, 1), 2000, kNoListeners);
  t.AddClosed(Client(2, 8, 40002, 1, 1), 2000, kNoListeners);
  SockRecord reused = Client(3, 7, 40003, 1, 1);
  reused.owner.process.start_ns = 99;  // same PID, a later process
  t.AddClosed(reused, 2000, kNoListeners);
  t.AddClosed(Server(4, 7, 40004, 1, 1), 2000, kNoListeners);
  EXPECT_EQ(t.View({}, 3000, kNoListeners).flows.size(), 4u);
}

TEST(FlowTableTest, LiveSocketsAreLaidOverButNeverStored) {
  FlowTable t;
  t.AddClosed(Client(1, 7, 40001, 100, 10), 2000, kNoListeners);
  std::vector<SockRecord> live = {Client(2, 7, 40002, 5, 6)};
  FlowView v = t.View(live, 3000, kNoListeners);
  EXPECT_EQ(v.flows.begin()->second.bytes_sent, 105u);
  EXPECT_EQ(v.flows.begin()->second.connections, 2u);
  EXPECT_EQ(t.View({}, 3000, kNoListeners).flows.begin()->second.bytes_sent, 100u);
}

TEST(FlowTableTest, ASocketReadLiveAndThenClosedCountsOnce) {
  FlowTable t;
  SockRecord s = Client(1, 7, 40001, 50, 5);
  std::vector<SockRecord> live = {s};  // read before the close was drained
  s.bytes_sent = 80;
  t.AddClosed(s, 2000, kNoListeners);
  FlowView v = t.View(live, 3000, kNoListeners);
  EXPECT_EQ(v.flows.begin()->second.connections, 1u);
  EXPECT_EQ(v.flows.begin()->second.bytes_sent, 80u);

  // Same kernel address reused by a new socket: a different open time.
  SockRecord again = Client(1, 7, 40009, 1, 1);
  again.open_ns = 9999;
  v = t.View(std::vector<SockRecord>{again}, 3000, kNoListeners);
  EXPECT_EQ(v.flows.begin()->second.connections, 2u);

  t.ForgetClosedBefore(2001);
  v = t.View(live, 3000, kNoListeners);  // a stale read is no longer recognised
  EXPECT_EQ(v.flows.begin()->second.connections, 2u);
}

TEST(FlowTableTest, IdleClosedFlowsExpireButLiveSocketsStay) {
  FlowTable t;
  t.AddClosed(Client(1, 7, 40001, 100, 10), 2000, kNoListeners);  // idle since 2000
  t.AddClosed(Server(2, 8, 50000, 5, 6), 6000, kNoListeners);     // recent
  SockRecord live = Client(3, 9, 40003, 1, 1);
  EXPECT_EQ(t.ExpireIdle(5000), 1u);
  FlowView v = t.View(std::vector<SockRecord>{live}, 7000, kNoListeners);
  ASSERT_EQ(v.flows.size(), 2u);  // the server flow and the live client
  for (const auto& [key, stats] : v.flows) EXPECT_NE(key.process.pid, 7u);
  EXPECT_EQ(v.traffic.size(), 2u);
  // A flow that expired and comes back starts again from its new bytes.
  t.AddClosed(Client(4, 7, 40004, 3, 4), 8000, kNoListeners);
  v = t.View({}, 9000, kNoListeners);
  for (const auto& [key, stats] : v.flows)
    if (key.process.pid == 7) EXPECT_EQ(stats.bytes_sent, 3u);
}

TEST(FlowTableTest, FailedConnectsAreCountedOnlyOnceClosed) {
  FlowTable t;
  SockRecord s = Client(1, 7, 0, 0, 0);
  s.established = false;
  FlowView v = t.View(std::vector<SockRecord>{s}, 3000, kNoListeners);
  EXPECT_EQ(v.flows.begin()->second.failed, 0u);  // still connecting
  EXPECT_EQ(v.flows.begin()->second.connections, 0u);
  EXPECT_TRUE(v.traffic.empty());
  t.AddClosed(s, 2000, kNoListeners);
  v = t.View({}, 3000, kNoListeners);
  EXPECT_EQ(v.flows.begin()->second.failed, 1u);
  EXPECT_EQ(v.flows.begin()->second.connections, 0u);
}

// Seen on 5.10 under emulation: the kernel made a spare child for one
// handshake and dropped it. A passive open, but no connection and no row.
TEST(FlowTableTest, AServerChildThatNeverEstablishedIsAnOpenButNotAFlow) {
  FlowTable t;
  SockRecord spare = Server(1, 9, 0, 0, 0);
  spare.established = false;
  spare.remote_ip = IpAddr();  // the listener's, cloned: no peer yet
  t.AddClosed(spare, 2000, kNoListeners);
  t.AddClosed(Server(2, 9, 40001, 5, 6), 2000, kNoListeners);
  FlowView v = t.View({}, 3000, kNoListeners);
  ASSERT_EQ(v.flows.size(), 1u);
  EXPECT_EQ(v.flows.begin()->first.remote_ip, IpAddr::V4(10, 0, 0, 1));
  EXPECT_EQ(v.flows.begin()->second.connections, 1u);
  EXPECT_EQ(v.opened.at(1), 2u);
}

TEST(FlowTableTest, UnknownRoleIsResolvedByListeningPort) {
  FlowTable t;
  SockRecord s = Server(1, 9, 40001, 10, 100);
  s.role = Role::kUnknown;
  auto listens_3306 = [](const SockRecord& r) { return r.local_port == 3306; };
  t.AddClosed(s, 2000, listens_3306);
  FlowView v = t.View({}, 3000, listens_3306);
  EXPECT_EQ(v.flows.begin()->first.role, Role::kServer);
  EXPECT_EQ(FlowTable::EffectiveRole(s, kNoListeners), Role::kClient);
}

TEST(FlowTableTest, ListenersAreNotFlows) {
  FlowTable t;
  SockRecord l = Client(1, 7, 80, 0, 0);
  l.role = Role::kListener;
  t.AddClosed(l, 2000, kNoListeners);
  EXPECT_TRUE(t.View(std::vector<SockRecord>{l}, 3000, kNoListeners).flows.empty());
}

TEST(FlowTableTest, TrafficTableIsBoundedAndCountsWhatItDropped) {
  FlowTable t(/*max_traffic=*/2);
  for (uint64_t i = 1; i <= 5; ++i)
    t.AddClosed(Client(i, 7, static_cast<uint16_t>(40000 + i), 1, 1), 2000, kNoListeners);
  FlowView v = t.View({}, 3000, kNoListeners);
  EXPECT_EQ(v.traffic.size(), 2u);
  EXPECT_EQ(v.traffic_overflow, 3u);
  EXPECT_EQ(v.flows.begin()->second.connections, 5u);  // flows lose nothing
}

}  // namespace
}  // namespace svcmap::flow
