// Reading a live process's facts from /proc (the parsers have their own
// tests on canned input in scan_test.cc).
#include "svcmap/scan/process_facts.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "svcmap/scan/proc_parse.h"

namespace svcmap::scan {
namespace {

TEST(ProcessFactsTest, OurselvesAndAStrangerWithOurPid) {
  std::ifstream in("/proc/self/stat");
  std::stringstream buf;
  buf << in.rdbuf();
  absl::StatusOr<ProcStat> st = ParseProcStat(buf.str());
  ASSERT_TRUE(st.ok()) << st.status();
  const uint32_t pid = static_cast<uint32_t>(getpid());
  identity::ProcessFacts f = ReadProcessFacts({pid, st->start_ticks * flow::kNsPerClockTick});
  EXPECT_NE(f.exe.find("unit_tests"), std::string::npos) << f.exe;
  EXPECT_NE(f.cmdline.find("unit_tests"), std::string::npos) << f.cmdline;
  EXPECT_EQ(f.cgroup.empty(), false);
  // Same PID, another start time: a different process, so nothing.
  identity::ProcessFacts other =
      ReadProcessFacts({pid, (st->start_ticks + 1000) * flow::kNsPerClockTick});
  EXPECT_EQ(other.exe, "");
  EXPECT_EQ(other.cmdline, "");
  EXPECT_EQ(ReadProcessFacts({pid, 0}, "/nonexistent").exe, "");
}

}  // namespace
}  // namespace svcmap::scan
