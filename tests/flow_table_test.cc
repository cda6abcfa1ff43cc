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

void Close(FlowTable& t, const SockRecord& s, uint64_t ts) {
  if (t.BeginClose(s.key())) t.ApplyClose(s, s.role, ts);
}

void Read(FlowTable& t, uint64_t now, const std::vector<SockRecord>& live, bool complete = true) {
  t.BeginLive(now);
  for (const SockRecord& s : live) t.AddLive(s, s.role);
  t.EndLive(complete);
}

// The one flow of a view (the tests below make one at a time).
FlowStats Only(const FlowView& v) {
  EXPECT_EQ(v.flows.size(), 1u);
  return v.flows.empty() ? FlowStats{} : v.flows.begin()->second;
}

TEST(FlowTableTest, ClientConnectionsToOneServiceAggregateAcrossEphemeralPorts) {
  FlowTable t;
  Close(t, Client(1, 7, 40001, 100, 10), 2000);
  Close(t, Client(2, 7, 40002, 200, 20), 3000);
  FlowView v = t.View(true);
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
  ASSERT_EQ(v.traffic_series.size(), 1u);  // one series without the source port
  EXPECT_EQ(v.traffic_series.begin()->second.bytes_to_dst, 300u);
  EXPECT_EQ(v.traffic_series.begin()->first.src_port, 0);
}

TEST(FlowTableTest, ServerFlowsAreKeyedByServicePortNotPeerPort) {
  FlowTable t;
  Close(t, Server(1, 9, 40001, 10, 100), 2000);
  Close(t, Server(2, 9, 40002, 10, 100), 2000);
  FlowView v = t.View(true);
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
  Close(t, Client(1, 7, 40001, 1, 1), 2000);
  Close(t, Client(2, 8, 40002, 1, 1), 2000);
  SockRecord reused = Client(3, 7, 40003, 1, 1);
  reused.owner.process.start_ns = 99;  // same PID, a later process
  Close(t, reused, 2000);
  Close(t, Server(4, 7, 40004, 1, 1), 2000);
  EXPECT_EQ(t.View(false).flows.size(), 4u);
}

TEST(FlowTableTest, AnOpenSocketIsLaidOverItsFlowAndCountedOnceWhenItCloses) {
  FlowTable t;
  Close(t, Client(1, 7, 40001, 100, 10), 2000);
  SockRecord open = Client(2, 7, 40002, 5, 6);
  Read(t, 3000, {open});
  FlowStats f = Only(t.View(false));
  EXPECT_EQ(f.bytes_sent, 105u);
  EXPECT_EQ(f.connections, 2u);
  EXPECT_EQ(f.active, 1u);
  // Its close carries the final totals.
  open.bytes_sent = 50;
  Close(t, open, 3500);
  f = Only(t.View(false));
  EXPECT_EQ(f.bytes_sent, 150u);
  EXPECT_EQ(f.connections, 2u);
  EXPECT_EQ(f.active, 0u);
  EXPECT_EQ(t.Sizes().live_sockets, 0u);
}

// A read copies a chunk of the kernel's table, then applies it: a close
// taken in between must not be undone by the chunk. (A close taken before
// the read began is not listed: the kernel marks its entry destroyed.)
TEST(FlowTableTest, ALiveReadThatRacedWithTheCloseDoesNotCountItAgain) {
  FlowTable t;
  SockRecord s = Client(1, 7, 40001, 80, 5);
  t.BeginLive(3000);
  Close(t, s, 2000);
  t.AddLive(s, s.role);  // the chunk that still had it
  t.EndLive(true);
  FlowStats f = Only(t.View(false));
  EXPECT_EQ(f.connections, 1u);
  EXPECT_EQ(f.bytes_sent, 80u);
  EXPECT_EQ(f.active, 0u);
  EXPECT_EQ(t.Sizes().live_sockets, 0u);

  // The same for a socket that earlier reads had listed open.
  SockRecord open = Client(2, 7, 40002, 10, 1);
  Read(t, 3100, {open});
  t.BeginLive(3200);
  open.bytes_sent = 30;
  Close(t, open, 3150);
  t.AddLive(open, open.role);
  t.EndLive(true);
  f = Only(t.View(false));
  EXPECT_EQ(f.connections, 2u);
  EXPECT_EQ(f.bytes_sent, 110u);
  EXPECT_EQ(f.active, 0u);

  // Same kernel address reused by a new socket: a different open time.
  SockRecord again = Client(1, 7, 40009, 1, 1);
  again.open_ns = 9999;
  Read(t, 3000, {again});
  EXPECT_EQ(Only(t.View(false)).connections, 3u);
}

// The live read and the drain agree: a socket whose close is still in the
// ring buffer is missing from the kernel's table, and still counts.
TEST(FlowTableTest, AnOpenSocketMissingFromAReadCountsUntilItsCloseArrives) {
  FlowTable t;
  SockRecord s = Client(1, 7, 40001, 500, 50);
  Read(t, 1'000'000'000, {s});
  Read(t, 2'000'000'000, {});  // gone from the table, close not drained yet
  EXPECT_EQ(Only(t.View(false)).bytes_sent, 500u);
  s.bytes_sent = 600;
  Close(t, s, 2'100'000'000);
  FlowStats f = Only(t.View(false));
  EXPECT_EQ(f.bytes_sent, 600u);
  EXPECT_EQ(f.connections, 1u);
}

TEST(FlowTableTest, AnOpenSocketWhoseCloseNeverCameIsClosedAsLastRead) {
  FlowTableOptions o;
  o.lost_close_grace_ns = 5'000'000'000;
  FlowTable t(o);
  SockRecord s = Client(1, 7, 40001, 500, 50);
  Read(t, 1'000'000'000, {s});
  Read(t, 2'000'000'000, {});
  Read(t, 3'000'000'000, {});
  EXPECT_EQ(t.Sizes().live_sockets, 1u);  // within the grace
  Read(t, 7'000'000'000, {}, /*complete=*/false);
  EXPECT_EQ(t.Sizes().live_sockets, 1u);  // a partial read proves nothing
  Read(t, 7'000'000'000, {});
  EXPECT_EQ(t.Sizes().live_sockets, 0u);
  EXPECT_EQ(t.lost_closes(), 1u);
  FlowStats f = Only(t.View(false));
  EXPECT_EQ(f.bytes_sent, 500u);
  EXPECT_EQ(f.connections, 1u);
  EXPECT_EQ(f.active, 0u);
  // The close that finally comes is taken as a duplicate.
  s.bytes_sent = 700;
  EXPECT_FALSE(t.BeginClose(s.key()));
  EXPECT_EQ(Only(t.View(false)).bytes_sent, 500u);
  // Its id is remembered for lost_id_ttl_ns after it was closed as lost.
  EXPECT_EQ(t.Sizes().closed_ids, 1u);
  t.ForgetClosed(7'000'000'000 + o.lost_id_ttl_ns - 1);
  EXPECT_EQ(t.Sizes().closed_ids, 1u);
  t.ForgetClosed(7'000'000'000 + o.lost_id_ttl_ns);
  EXPECT_EQ(t.Sizes().closed_ids, 0u);
  EXPECT_TRUE(t.BeginClose(s.key()));
}

TEST(FlowTableTest, LiveTotalsNeverGoBackward) {
  FlowTable t;
  SockRecord s = Client(1, 7, 40001, 500, 50);
  Read(t, 1000, {s});
  s.bytes_sent = 400;  // a read that saw less (a torn read of TCP's counters)
  Read(t, 2000, {s});
  EXPECT_EQ(Only(t.View(false)).bytes_sent, 500u);
  Close(t, s, 3000);
  EXPECT_EQ(Only(t.View(false)).bytes_sent, 500u);
}

// Closes find their flow and series again without hashing (a few recent
// entries are kept): an entry expired or retired in between is gone for
// good, and the next close makes a new one.
TEST(FlowTableTest, AFlowOrSeriesRemovedBetweenTwoClosesStartsAgainFromZero) {
  FlowTable t;
  auto name = [](const ProcessKey&) -> std::optional<std::string> { return "app"; };
  Close(t, Client(1, 7, 40001, 100, 10), 2000);
  Close(t, Server(2, 9, 40001, 10, 100), 2001);
  EXPECT_EQ(t.ExpireIdleGroups(5000, name).size(), 2u);
  EXPECT_EQ(t.ExpireIdleTraffic(5000, 5000).size(), 2u);
  EXPECT_EQ(t.Sizes().flows, 0u);
  Close(t, Client(3, 7, 40003, 7, 1), 6000);
  FlowView v = t.View(false);
  EXPECT_EQ(Only(v).bytes_sent, 7u);
  EXPECT_EQ(Only(v).connections, 1u);
  ASSERT_EQ(v.traffic_series.size(), 1u);
  EXPECT_EQ(v.traffic_series.begin()->second.bytes_to_dst, 7u);
  // Retiring a process removes its flows too.
  t.RetireProcess({7, 50}, "app", 7000);
  Close(t, Client(4, 7, 40004, 3, 1), 8000);
  v = t.View(false);
  ASSERT_EQ(v.flows.size(), 2u);  // the retired group and the new flow
  for (const auto& [k, f] : v.flows) EXPECT_EQ(f.bytes_sent, k.retired() ? 7u : 3u);
}

TEST(FlowTableTest, IdleGroupsExpireWholeAndOnlyWhenNoneOfTheirFlowsIsActive) {
  FlowTable t;
  auto name = [](const ProcessKey&) -> std::optional<std::string> { return "app"; };
  // Two processes of one service to one destination; 7's flow goes idle.
  Close(t, Client(1, 7, 40001, 100, 10), 2000);
  SockRecord open = Client(2, 8, 40002, 5, 5);
  Read(t, 3000, {open});
  EXPECT_TRUE(t.ExpireIdleGroups(2500, name).empty());  // 8 keeps the group alive
  EXPECT_EQ(t.View(false).flows.size(), 2u);
  Close(t, open, 4000);
  Read(t, 9000, {});
  std::vector<FlowKey> gone = t.ExpireIdleGroups(5000, name);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].service, "app");
  EXPECT_TRUE(t.View(false).flows.empty());
  // A process not named yet keeps its flows.
  Close(t, Client(3, 9, 40003, 1, 1), 6000);
  EXPECT_TRUE(t.ExpireIdleGroups(10000, [](const ProcessKey&) { return std::nullopt; }).empty());
  EXPECT_EQ(t.View(false).flows.size(), 1u);
}

TEST(FlowTableTest, RetiringAnExitedProcessConservesItsGroup) {
  FlowTable t;
  Close(t, Client(1, 7, 40001, 100, 10), 2000);
  Close(t, Client(2, 7, 40002, 50, 5), 2500);
  t.RetireProcess({7, 50}, "app", 3000);
  FlowView v = t.View(false);
  ASSERT_EQ(v.flows.size(), 1u);
  const auto& [key, f] = *v.flows.begin();
  EXPECT_TRUE(key.retired());
  EXPECT_EQ(key.service, "app");
  EXPECT_EQ(key.process.pid, 0u);
  EXPECT_EQ(f.bytes_sent, 150u);
  EXPECT_EQ(f.connections, 2u);
  EXPECT_TRUE(t.Processes().empty());
  // A sibling that exits later adds to the same retired flow.
  Close(t, Client(3, 8, 40003, 1, 1), 4000);
  t.RetireProcess({8, 50}, "app", 5000);
  EXPECT_EQ(Only(t.View(false)).bytes_sent, 151u);
}

TEST(FlowTableTest, ARenameKeepsWhatWasCountedUnderTheOldName) {
  FlowTable t;
  Close(t, Client(1, 7, 40001, 100, 10), 2000);
  SockRecord open = Client(2, 7, 40002, 30, 3);
  Read(t, 2500, {open});
  t.RetireProcess({7, 50}, "old-name", 3000);
  open.bytes_sent = 45;
  Read(t, 3500, {open});
  FlowView v = t.View(false);
  ASSERT_EQ(v.flows.size(), 2u);
  for (const auto& [key, f] : v.flows) {
    if (key.retired()) {
      EXPECT_EQ(key.service, "old-name");
      EXPECT_EQ(f.bytes_sent, 130u);  // the closed one and the open one so far
      EXPECT_EQ(f.connections, 2u);
    } else {
      EXPECT_EQ(f.bytes_sent, 15u);   // only what the open one moved since
      EXPECT_EQ(f.connections, 0u);   // counted with the old name
      EXPECT_EQ(f.active, 1u);
    }
  }
  Close(t, open, 4000);
  for (const auto& [key, f] : t.View(false).flows) {
    if (!key.retired()) {
      EXPECT_EQ(f.bytes_sent, 15u);
    }
  }
}

TEST(FlowTableTest, AnAcceptedSocketMovesToTheProcessThatTakesItOver) {
  FlowTable t;
  SockRecord s = Server(1, 9, 40001, 0, 0);  // in the accept queue: its listener's owner
  s.owned = false;
  Read(t, 1000, {s});
  s.owned = true;
  s.owner.process = {10, 60};  // the worker that accepted it
  s.bytes_received = 100;
  Read(t, 2000, {s});
  Close(t, s, 3000);
  uint64_t worker_bytes = 0, connections = 0;
  for (const auto& [key, f] : t.View(false).flows) {
    if (key.process.pid == 10) worker_bytes = f.bytes_received;
    connections += f.connections;
  }
  EXPECT_EQ(worker_bytes, 100u);
  EXPECT_EQ(connections, 1u);
}

TEST(FlowTableTest, FailedConnectsAreCountedOnceClosed) {
  FlowTable t;
  SockRecord s = Client(1, 7, 0, 0, 0);
  s.established = false;
  Close(t, s, 2000);
  FlowStats f = Only(t.View(true));
  EXPECT_EQ(f.failed, 1u);
  EXPECT_EQ(f.connections, 0u);
  EXPECT_TRUE(t.View(true).traffic.empty());
}

// Seen on 5.10 under emulation: the kernel made a spare child for one
// handshake and dropped it. A passive open, but no connection and no row.
TEST(FlowTableTest, AServerChildThatNeverEstablishedIsAnOpenButNotAFlow) {
  FlowTableOptions o;
  o.count_opens = true;
  FlowTable t(o);
  SockRecord spare = Server(1, 9, 0, 0, 0);
  spare.established = false;
  spare.remote_ip = IpAddr();  // the listener's, cloned: no peer yet
  Close(t, spare, 2000);
  Close(t, Server(2, 9, 40001, 5, 6), 2000);
  FlowView v = t.View(false);
  ASSERT_EQ(v.flows.size(), 1u);
  EXPECT_EQ(v.flows.begin()->first.remote_ip, IpAddr::V4(10, 0, 0, 1));
  EXPECT_EQ(v.flows.begin()->second.connections, 1u);
  EXPECT_EQ(v.opened.at(1), 2u);
}

TEST(FlowTableTest, ListenersAreNotFlows) {
  FlowTable t;
  SockRecord l = Client(1, 7, 80, 0, 0);
  l.role = Role::kListener;
  Close(t, l, 2000);
  Read(t, 3000, {l});
  EXPECT_TRUE(t.View(false).flows.empty());
}

TEST(FlowTableTest, TrafficRowsAreBoundedAndCountWhatTheyDroppedButSeriesAreWhole) {
  FlowTableOptions o;
  o.max_traffic_rows = 2;
  FlowTable t(o);
  for (uint64_t i = 1; i <= 5; ++i) Close(t, Client(i, 7, static_cast<uint16_t>(40000 + i), 1, 1), 2000);
  FlowView v = t.View(true);
  // The newest two: the oldest closes made room.
  ASSERT_EQ(v.traffic.size(), 2u);
  for (const auto& [k, r] : v.traffic) EXPECT_GE(k.src_port, 40004) << k.src_port;
  EXPECT_EQ(v.traffic_overflow, 3u);
  EXPECT_EQ(Only(v).connections, 5u);  // flows lose nothing
  EXPECT_EQ(v.traffic_series.begin()->second.bytes_to_dst, 5u);  // nor do series
}

TEST(FlowTableTest, AReusedFourTupleIsOneRowWithBothConnectionsBytes) {
  FlowTable t;
  // The same source port twice (another socket, so another id), then a
  // third connection: two rows, the first with both closes' bytes.
  Close(t, Client(1, 7, 40001, 100, 10), 2000);
  Close(t, Client(2, 8, 40001, 200, 20), 3000);
  Close(t, Client(3, 7, 40002, 1, 1), 2500);
  FlowView v = t.View(true);
  ASSERT_EQ(v.traffic.size(), 2u);
  for (const auto& [k, s] : v.traffic) {
    if (k.src_port != 40001) continue;
    EXPECT_EQ(s.bytes_to_dst, 300u);
    EXPECT_EQ(s.bytes_to_src, 30u);
    EXPECT_EQ(s.last_seen_ns, 3000u);
    EXPECT_EQ(s.process.pid, 8u);  // the last close's
  }
  // Rows go by their close time, whatever order they came in.
  t.ExpireIdleTraffic(0, 2600);
  v = t.View(true);
  ASSERT_EQ(v.traffic.size(), 1u);
  EXPECT_EQ(v.traffic.begin()->first.src_port, 40001);
  EXPECT_EQ(v.traffic.begin()->second.bytes_to_dst, 200u);  // the 2000 close went
}

TEST(FlowTableTest, ClosedIdsAreKeptOnlyWhileAReadRunsAndIdleTrafficExpires) {
  FlowTable t;
  for (uint64_t i = 1; i <= 3; ++i) Close(t, Client(i, 7, static_cast<uint16_t>(40000 + i), 1, 1), 100 * i);
  EXPECT_EQ(t.Sizes().closed_ids, 0u);  // nothing per close between reads
  t.BeginLive(400);
  SockRecord during = Client(4, 7, 40004, 1, 1);
  EXPECT_TRUE(t.BeginClose(during.key()));
  t.ApplyClose(during, during.role, 350);
  EXPECT_EQ(t.Sizes().closed_ids, 1u);
  EXPECT_FALSE(t.BeginClose(during.key()));  // taken already
  t.EndLive(true);
  EXPECT_EQ(t.Sizes().closed_ids, 0u);
  EXPECT_EQ(Only(t.View(false)).connections, 4u);
  EXPECT_EQ(t.ExpireIdleTraffic(1000, 1000).size(), 1u);  // the one series, idle since 350
  EXPECT_TRUE(t.View(true).traffic.empty());
  EXPECT_TRUE(t.View(true).traffic_series.empty());
}


// -- Health: what each close said, summed per flow --

SockRecord Failed(uint64_t id, Outcome outcome, uint32_t syn_retries) {
  SockRecord s = Client(id, 7, 0, 0, 0);
  s.established = false;
  s.health.outcome = outcome;
  s.health.retransmits = syn_retries;
  return s;
}

TEST(FlowHealthTest, FailedConnectsCountByOutcomeAndAddUpToFailed) {
  FlowTable t;
  Close(t, Failed(1, Outcome::kRefused, 0), 2000);
  Close(t, Failed(2, Outcome::kRefused, 0), 2001);
  Close(t, Failed(3, Outcome::kTimedOut, 6), 2002);
  Close(t, Failed(4, Outcome::kError, 0), 2003);
  // A close that said nothing of how it went is an error too.
  Close(t, Failed(5, Outcome::kNone, 0), 2004);
  FlowStats f = Only(t.View(false));
  EXPECT_EQ(f.failed, 5u);
  EXPECT_EQ(f.health.refused, 2u);
  EXPECT_EQ(f.health.timed_out, 1u);
  EXPECT_EQ(f.health.error, 2u);
  EXPECT_EQ(f.health.refused + f.health.timed_out + f.health.error, f.failed);
  EXPECT_EQ(f.health.retransmits, 6u);  // the SYNs
  EXPECT_EQ(f.health.rtt.count, 0u);
  EXPECT_EQ(f.health.connect.count, 0u);
  EXPECT_EQ(f.connections, 0u);
}

TEST(FlowHealthTest, EstablishedConnectionsAddResetsRetransmitsAndLatencies) {
  FlowTable t;
  SockRecord a = Client(1, 7, 40001, 100, 10);
  a.health = {Outcome::kNone, true, false, 3, 120, 80, 150};
  SockRecord b = Client(2, 7, 40002, 100, 10);
  b.health = {Outcome::kNone, false, true, 0, 3000, 60, 2000};
  // Read live first: the close still brings its health.
  Read(t, 1500, {a});
  Close(t, a, 2000);
  Close(t, b, 2100);
  FlowStats f = Only(t.View(false));
  EXPECT_EQ(f.connections, 2u);
  EXPECT_EQ(f.failed, 0u);
  EXPECT_EQ(f.health.refused + f.health.timed_out + f.health.error, 0u);
  EXPECT_EQ(f.health.resets_received, 1u);
  EXPECT_EQ(f.health.resets_sent, 1u);
  EXPECT_EQ(f.health.retransmits, 3u);
  EXPECT_EQ(f.health.rtt.count, 2u);
  EXPECT_EQ(f.health.rtt.sum_us, 3120u);
  EXPECT_EQ(f.health.rtt.mean_us(), 1560u);
  EXPECT_EQ(f.health.rtt_min_us, 60u);
  EXPECT_EQ(f.health.connect.mean_us(), 1075u);
  // 120 us is in the (100, 250] bucket, 3 ms in (2.5, 5] ms.
  EXPECT_EQ(f.health.rtt.buckets[1], 1u);
  EXPECT_EQ(f.health.rtt.buckets[5], 1u);
}

TEST(FlowHealthTest, AServerHasNoConnectLatencyAndALostCloseNoHealth) {
  FlowTable t;
  SockRecord s = Server(1, 9, 40001, 10, 100);
  s.health = {Outcome::kNone, false, true, 2, 500, 400, 999};
  Close(t, s, 2000);
  FlowStats f = Only(t.View(false));
  EXPECT_EQ(f.health.resets_sent, 1u);
  EXPECT_EQ(f.health.retransmits, 2u);
  EXPECT_EQ(f.health.rtt.count, 1u);
  EXPECT_EQ(f.health.connect.count, 0u);

  FlowTableOptions o;
  o.lost_close_grace_ns = 0;
  FlowTable lost(o);
  SockRecord c = Client(2, 7, 40001, 100, 10);
  Read(lost, 1000, {c});
  Read(lost, 2000, {});
  Read(lost, 3000, {});
  ASSERT_EQ(lost.lost_closes(), 1u);
  FlowStats l = Only(lost.View(false));
  EXPECT_EQ(l.connections, 1u);
  EXPECT_EQ(l.health.rtt.count, 0u);
  EXPECT_EQ(l.health.retransmits, 0u);
}

TEST(FlowHealthTest, RetiringAProcessKeepsItsHealthInTheGroup) {
  FlowTable t;
  SockRecord a = Client(1, 7, 40001, 100, 10);
  a.health = {Outcome::kNone, true, false, 4, 200, 100, 300};
  Close(t, a, 2000);
  Close(t, Failed(2, Outcome::kRefused, 0), 2001);
  t.RetireProcess({7, 50}, "app", 3000);
  FlowStats f = Only(t.View(false));
  EXPECT_EQ(f.health.resets_received, 1u);
  EXPECT_EQ(f.health.retransmits, 4u);
  EXPECT_EQ(f.health.refused, 1u);
  EXPECT_EQ(f.health.rtt.count, 1u);
  EXPECT_EQ(f.health.rtt_min_us, 100u);
}

TEST(LatencyHistogramTest, BoundsAreInclusiveAndTheLastBucketTakesTheRest) {
  LatencyHistogram h;
  h.Add(100);
  h.Add(101);
  h.Add(5'000'000);
  h.Add(5'000'001);
  EXPECT_EQ(h.buckets[0], 1u);
  EXPECT_EQ(h.buckets[1], 1u);
  EXPECT_EQ(h.buckets[kLatencyBoundsUs.size() - 1], 1u);
  EXPECT_EQ(h.buckets[kLatencyBoundsUs.size()], 1u);
  EXPECT_EQ(h.count, 4u);
  EXPECT_EQ(h.sum_us, 10'000'202u);
}

}  // namespace
}  // namespace svcmap::flow
