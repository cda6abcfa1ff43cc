#include "svcmap/flow/ip_addr.h"

#include <arpa/inet.h>

#include "gtest/gtest.h"

namespace svcmap::flow {
namespace {

TEST(IpAddrTest, ParsesAndPrintsBothFamilies) {
  EXPECT_EQ(IpAddr::Parse("10.1.2.3")->ToString(), "10.1.2.3");
  EXPECT_EQ(IpAddr::Parse("fd00::1")->ToString(), "fd00::1");
  EXPECT_FALSE(IpAddr::Parse("10.1.2.300"));
  EXPECT_FALSE(IpAddr::Parse(""));
  EXPECT_FALSE(IpAddr::Parse("fd00::1::2"));
}

TEST(IpAddrTest, V4MappedIsStoredAsV4SoBothHalvesOfAFlowMatch) {
  uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7};
  IpAddr a = IpAddr::FromKernel(AF_INET6, mapped);
  EXPECT_TRUE(a.is_v4());
  EXPECT_EQ(a, IpAddr::V4(192, 0, 2, 7));
  EXPECT_EQ(*IpAddr::Parse("::ffff:192.0.2.7"), a);
}

TEST(IpAddrTest, LoopbackAndUnspecified) {
  EXPECT_TRUE(IpAddr::Parse("127.0.0.9")->IsLoopback());
  EXPECT_TRUE(IpAddr::Parse("::1")->IsLoopback());
  EXPECT_FALSE(IpAddr::Parse("10.0.0.1")->IsLoopback());
  EXPECT_TRUE(IpAddr().IsUnspecified());
  EXPECT_TRUE(IpAddr::Parse("::")->IsUnspecified());
  EXPECT_NE(IpAddr(), *IpAddr::Parse("::"));
}

}  // namespace
}  // namespace svcmap::flow
