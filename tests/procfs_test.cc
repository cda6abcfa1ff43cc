#include "svcmap/kernel/procfs.h"

#include <unistd.h>

#include "gtest/gtest.h"

namespace svcmap::kernel {
namespace {

TEST(ProcfsTest, StartTimeFromStat) {
  // A comm with spaces and a ')' of its own: parsing must start after the
  // last ')'.
  const char* stat =
      "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 10 5 0 0 20 0 1 0 "
      "987654 12345678 1234 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
  absl::StatusOr<uint64_t> t = ParseStatStartTicks(stat);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, 987654u);
}

TEST(ProcfsTest, MalformedStat) {
  EXPECT_FALSE(ParseStatStartTicks("").ok());
  EXPECT_FALSE(ParseStatStartTicks("12 (x").ok());
  EXPECT_FALSE(ParseStatStartTicks("12 (x) S 1 2 3").ok());
  EXPECT_FALSE(ParseStatStartTicks("12 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 zz").ok());
}

TEST(ProcfsTest, NanosecondsToTicks) {
  EXPECT_EQ(StartNsToTicks(1'234'567'890ULL, 100), 123u);
  EXPECT_EQ(StartNsToTicks(5, 0), 0u);
}

TEST(ProcfsTest, ReadExeOfOurselvesAndOfAStranger) {
  // Our own start time, through the same parser.
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", getpid());
  FILE* f = fopen(path, "r");
  ASSERT_NE(f, nullptr);
  char buf[1024] = {};
  ASSERT_GT(fread(buf, 1, sizeof(buf) - 1, f), 0u);
  fclose(f);
  uint64_t ticks = *ParseStatStartTicks(buf);
  uint64_t ns = ticks * (1'000'000'000ULL / sysconf(_SC_CLK_TCK));
  EXPECT_NE(ReadExe({static_cast<uint32_t>(getpid()), ns}).find("unit_tests"), std::string::npos);
  // Same PID, another start time: a different process, so no answer.
  EXPECT_EQ(ReadExe({static_cast<uint32_t>(getpid()), ns + 10'000'000'000ULL}), "");
}

}  // namespace
}  // namespace svcmap::kernel
