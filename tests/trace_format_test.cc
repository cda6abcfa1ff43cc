#include "svcmap/app/trace_format.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace svcmap::app {
namespace {

flow::SockEvent Close() {
  flow::SockEvent ev;
  ev.type = flow::EventType::kClose;
  ev.ts_ns = 1'000'000'000;
  ev.sock.role = flow::Role::kClient;
  ev.sock.owner.process = {4242, 1};
  ev.sock.owner.comm = "curl";
  ev.sock.owner.cgroup_id = 9;
  ev.sock.netns = 4026531840u;
  ev.sock.local_ip = *flow::IpAddr::Parse("fd00::1");
  ev.sock.local_port = 40000;
  ev.sock.remote_ip = *flow::IpAddr::Parse("fd00::2");
  ev.sock.remote_port = 443;
  ev.sock.bytes_sent = 10;
  ev.sock.bytes_received = 20;
  ev.tcp = flow::TcpCounters{10, 21};
  return ev;
}

TEST(TraceFormatTest, JsonLineHasTheContractFields) {
  nlohmann::json j = nlohmann::json::parse(TraceJson(Close(), exporter::Clock{}));
  EXPECT_EQ(j["type"], "close");
  EXPECT_EQ(j["pid"], 4242);
  EXPECT_EQ(j["comm"], "curl");
  EXPECT_EQ(j["role"], "client");
  EXPECT_EQ(j["family"], "ipv6");
  EXPECT_EQ(j["saddr"], "fd00::1");
  EXPECT_EQ(j["sport"], 40000);
  EXPECT_EQ(j["daddr"], "fd00::2");
  EXPECT_EQ(j["dport"], 443);
  EXPECT_EQ(j["netns"], 4026531840u);
  EXPECT_EQ(j["bytes_sent"], 10);
  EXPECT_EQ(j["bytes_received"], 20);
  EXPECT_EQ(j["tcp_bytes_received"], 21);
}

TEST(TraceFormatTest, HostileProcessNamesStillMakeValidJson) {
  flow::SockEvent ev = Close();
  ev.sock.owner.comm = std::string("a\"\\\n\xff\x01z", 7);
  nlohmann::json j = nlohmann::json::parse(TraceJson(ev, exporter::Clock{}), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["comm"], "a\"\\\n\xEF\xBF\xBD\x01z");
}

TEST(TraceFormatTest, TextLineFitsInAHundredColumns) {
  flow::SockEvent ev = Close();
  ev.sock.owner.comm = "a-very-long-process-name";
  ev.sock.local_ip = *flow::IpAddr::Parse("10.200.200.200");
  ev.sock.remote_ip = *flow::IpAddr::Parse("10.200.200.201");
  ev.sock.bytes_sent = 999999;
  std::string line = TraceLine(ev, exporter::Clock{1'700'000'000'000'000'000LL});
  EXPECT_LE(line.size(), 100u) << line;
  EXPECT_LE(TraceHeader().size(), 100u);
  EXPECT_NE(line.find("close"), std::string::npos);
}

}  // namespace
}  // namespace svcmap::app
