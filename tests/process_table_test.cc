// The process table's time-bounded parts: tombstones of exited processes
// and fork records go after their TTL, fork records also past their cap,
// so neither grows with the node's history.
#include "svcmap/flow/process_table.h"

#include "gtest/gtest.h"

namespace svcmap::flow {
namespace {

Owner O(uint32_t pid, const char* comm) {
  Owner o;
  o.process = {pid, 1};
  o.comm = comm;
  return o;
}

void Name(ProcessTable& t, uint32_t pid, const char* name) {
  ProcessInfo info;
  info.comm = name;
  info.name = name;
  info.name_source = "comm";
  t.Describe({pid, 1}, info);
}

TEST(ProcessTableTest, TombstonesAndForkRecordsGoAfterTheirTtl) {
  ProcessTable t(/*ttl_ns=*/1000, /*max_forks=*/100);
  for (uint32_t pid = 1; pid <= 10; ++pid) {
    t.Observe(O(pid, "job"), 0);
    Name(t, pid, "job");
    t.Fork({1, 1}, O(100 + pid, "job"), 10 * pid);
  }
  EXPECT_EQ(t.size(), 10u);
  EXPECT_EQ(t.forks(), 10u);
  for (uint32_t pid = 1; pid <= 10; ++pid) t.Erase({pid, 1}, 100);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.tombstones(), 10u) << "names kept for a late close";

  t.Prune(1099);  // the tombstones' TTL ends at 1100, the forks' at 1010..1100
  EXPECT_EQ(t.tombstones(), 10u);
  EXPECT_EQ(t.forks(), 1u);
  t.Prune(1100);
  EXPECT_EQ(t.tombstones(), 0u);
  EXPECT_EQ(t.forks(), 0u);
}

TEST(ProcessTableTest, ForkRecordsAreCappedAtTheNewest) {
  ProcessTable t(/*ttl_ns=*/1'000'000, /*max_forks=*/50);
  for (uint32_t pid = 1; pid <= 1000; ++pid) t.Fork({1, 1}, O(1000 + pid, "sh"), pid);
  EXPECT_EQ(t.forks(), 50u);
}

TEST(ProcessTableTest, AProcessErasedTwiceLeavesOneTombstoneThatStillExpires) {
  ProcessTable t(/*ttl_ns=*/1000);
  for (uint64_t now : {0, 500}) {
    t.Observe(O(7, "app"), now);
    Name(t, 7, "app");
    t.Erase({7, 1}, now);
  }
  EXPECT_EQ(t.tombstones(), 1u);
  t.Prune(1000);  // the first erase's TTL: the second one's holds
  EXPECT_EQ(t.tombstones(), 1u);
  t.Prune(1500);
  EXPECT_EQ(t.tombstones(), 0u);
}

}  // namespace
}  // namespace svcmap::flow
