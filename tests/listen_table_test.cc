#include "svcmap/flow/listen_table.h"

#include "gtest/gtest.h"

namespace svcmap::flow {
namespace {

Listener L(uint32_t netns, const char* ip, uint16_t port, uint32_t pid, uint64_t sock = 0) {
  Listener l;
  l.sock = {sock, 1};
  l.netns = netns;
  l.ip = *IpAddr::Parse(ip);
  l.port = port;
  l.owner.process = {pid, 1};
  return l;
}

TEST(ListenTableTest, ExactAddressBeatsWildcard) {
  ListenTable t;
  t.Add(L(1, "0.0.0.0", 80, 10, 1));
  t.Add(L(1, "10.0.0.5", 80, 11, 2));
  EXPECT_EQ(t.Find(1, *IpAddr::Parse("10.0.0.5"), 80)->owner.process.pid, 11u);
  EXPECT_EQ(t.Find(1, *IpAddr::Parse("10.0.0.6"), 80)->owner.process.pid, 10u);
}

TEST(ListenTableTest, DualStackWildcardAnswersIpv4) {
  ListenTable t;
  t.Add(L(1, "::", 443, 12));
  EXPECT_EQ(t.Find(1, *IpAddr::Parse("10.0.0.5"), 443)->owner.process.pid, 12u);
  EXPECT_EQ(t.Find(1, *IpAddr::Parse("fd00::5"), 443)->owner.process.pid, 12u);
}

TEST(ListenTableTest, NamespacesAreSeparate) {
  ListenTable t;
  t.Add(L(1, "0.0.0.0", 80, 10));
  EXPECT_EQ(t.Find(2, *IpAddr::Parse("10.0.0.5"), 80), nullptr);
  EXPECT_TRUE(t.IsListenPort(1, 80));
  EXPECT_FALSE(t.IsListenPort(2, 80));
  EXPECT_FALSE(t.IsListenPort(1, 81));
}

TEST(ListenTableTest, SameEndpointTwiceIsOneListenerWithTheLatestOwner) {
  ListenTable t;
  t.Add(L(1, "0.0.0.0", 80, 10));
  t.Add(L(1, "0.0.0.0", 80, 20));
  ASSERT_EQ(t.All().size(), 1u);
  EXPECT_EQ(t.All()[0].owner.process.pid, 20u);
}

TEST(ListenTableTest, AClosedSocketGivesItsPortUpAndReusePortSiblingsStay) {
  ListenTable t;
  t.Add(L(1, "0.0.0.0", 80, 10, 1));
  t.Add(L(1, "0.0.0.0", 80, 20, 2));  // SO_REUSEPORT: another socket, same endpoint
  EXPECT_EQ(t.Find(1, *IpAddr::Parse("10.0.0.5"), 80)->owner.process.pid, 20u);
  EXPECT_TRUE(t.Remove({2, 1}));
  EXPECT_EQ(t.Find(1, *IpAddr::Parse("10.0.0.5"), 80)->owner.process.pid, 10u);
  EXPECT_TRUE(t.IsListenPort(1, 80));
  EXPECT_FALSE(t.HasProcess({20, 1}));
  EXPECT_TRUE(t.Remove({1, 1}));
  EXPECT_FALSE(t.Remove({1, 1}));
  EXPECT_FALSE(t.IsListenPort(1, 80));
  EXPECT_EQ(t.Find(1, *IpAddr::Parse("10.0.0.5"), 80), nullptr);
  EXPECT_EQ(t.size(), 0u);
}

TEST(ListenTableTest, ACompleteReadDropsListenersItNoLongerLists) {
  ListenTable t;
  t.Add(L(1, "0.0.0.0", 80, 10, 1));
  t.Add(L(1, "0.0.0.0", 81, 10, 2));
  t.BeginLive();
  t.Add(L(1, "0.0.0.0", 80, 10, 1));  // listed again
  t.Add(L(1, "0.0.0.0", 82, 11, 3));  // new since the read began
  EXPECT_EQ(t.EndLive(true), 1u);
  EXPECT_FALSE(t.IsListenPort(1, 81));
  EXPECT_TRUE(t.IsListenPort(1, 80));
  EXPECT_TRUE(t.IsListenPort(1, 82));
}

}  // namespace
}  // namespace svcmap::flow
