#include "svcmap/app/health.h"

#include "gtest/gtest.h"

namespace svcmap::app {
namespace {

node::SessionHealth Fine() {
  node::SessionHealth h;
  h.drain_running = true;
  h.since_drain = absl::Milliseconds(80);
  h.since_frame = absl::Seconds(3);
  h.ready = true;
  return h;
}

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

TEST(HealthTest, HealthyWhenTheDrainRunsAndTheStoreKeepsUp) {
  EXPECT_TRUE(Unhealthy(Fine(), std::nullopt, absl::Seconds(10), kNow).empty());
  exporter::RemoteWriteStats ok;
  EXPECT_TRUE(Unhealthy(Fine(), ok, absl::Seconds(10), kNow).empty());
}

TEST(HealthTest, AStoppedOrStalledDrainIsUnhealthy) {
  node::SessionHealth h = Fine();
  h.drain_running = false;
  EXPECT_EQ(Unhealthy(h, std::nullopt, absl::Seconds(10), kNow),
            std::vector<std::string>{"event drain thread stopped"});
  h = Fine();
  h.since_drain = absl::Seconds(42);
  EXPECT_EQ(Unhealthy(h, std::nullopt, absl::Seconds(10), kNow),
            std::vector<std::string>{"events not drained for 42s"});
  h.since_drain = absl::Seconds(9);
  EXPECT_TRUE(Unhealthy(h, std::nullopt, absl::Seconds(10), kNow).empty());
}

TEST(HealthTest, AStuckFrameThreadIsUnhealthyOnceItWasReady) {
  node::SessionHealth h = Fine();
  h.since_frame = absl::Seconds(75);
  EXPECT_EQ(Unhealthy(h, std::nullopt, absl::Seconds(10), kNow).size(), 1u);
  h.ready = false;  // starting: the seed may take long
  h.since_frame = absl::InfiniteDuration();
  EXPECT_TRUE(Unhealthy(h, std::nullopt, absl::Seconds(10), kNow).empty());
}

// Failing is fine while the backlog holds what the store missed.
TEST(HealthTest, RemoteWriteIsUnhealthyOnlyOnceTheBacklogOverflowed) {
  exporter::RemoteWriteStats w;
  w.failing_since = kNow - absl::Seconds(90);
  w.last_error = "HTTP 503: overloaded";
  EXPECT_TRUE(Unhealthy(Fine(), w, absl::Seconds(10), kNow).empty());
  w.dropped_while_failing = 1234;
  std::vector<std::string> bad = Unhealthy(Fine(), w, absl::Seconds(10), kNow);
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_EQ(bad[0],
            "remote write failing for 1m30s (HTTP 503: overloaded), 1234 samples dropped: more "
            "than --remote-write-buffer holds");
}

}  // namespace
}  // namespace svcmap::app
