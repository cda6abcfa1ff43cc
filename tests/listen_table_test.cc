#include "svcmap/flow/listen_table.h"

#include "gtest/gtest.h"

namespace svcmap::flow {
namespace {

Listener L(uint32_t netns, const char* ip, uint16_t port, uint32_t pid) {
  Listener l;
  l.netns = netns;
  l.ip = *IpAddr::Parse(ip);
  l.port = port;
  l.owner.process = {pid, 1};
  return l;
}

TEST(ListenTableTest, ExactAddressBeatsWildcard) {
  ListenTable t;
  t.Add(L(1, "0.0.0.0", 80, 10));
  t.Add(L(1, "10.0.0.5", 80, 11));
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

}  // namespace
}  // namespace svcmap::flow
