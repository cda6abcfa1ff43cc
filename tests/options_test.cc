#include "svcmap/app/options.h"

#include "fmt/format.h"
#include "gtest/gtest.h"
#include "svcmap/base/build_info.h"

namespace svcmap::app {
namespace {

absl::StatusOr<ParseResult> P(std::vector<std::string> args) {
  args.insert(args.begin(), "svcmap");
  return ParseOptions(args);
}

TEST(OptionsTest, SnapshotDefaultsToFiveSeconds) {
  auto r = P({"snapshot", "--json"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.command, Command::kSnapshot);
  EXPECT_TRUE(r->options.json);
  EXPECT_EQ(r->options.duration, absl::Seconds(5));
}

TEST(OptionsTest, SnapshotFlags) {
  auto r = P({"snapshot", "--duration", "250ms", "--netns", "/run/netns/b", "--instance-ip",
              "fd00::2"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.duration, absl::Milliseconds(250));
  EXPECT_EQ(r->options.netns_path, "/run/netns/b");
  EXPECT_EQ(r->options.instance_ip, "fd00::2");
}

TEST(OptionsTest, TraceRunsUntilSignalledUnlessToldOtherwise) {
  auto r = P({"trace", "--pid", "42"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.command, Command::kTrace);
  EXPECT_FALSE(r->options.duration.has_value());
  EXPECT_EQ(r->options.pid, 42u);
}

TEST(OptionsTest, Durations) {
  EXPECT_EQ(*ParseDurationFlag("5s"), absl::Seconds(5));
  EXPECT_EQ(*ParseDurationFlag("1m30s"), absl::Seconds(90));
  EXPECT_EQ(*ParseDurationFlag("2"), absl::Seconds(2));
  EXPECT_EQ(*ParseDurationFlag("0.5"), absl::Milliseconds(500));
  for (const char* bad : {"", "soon", "-1s", "0", "0s", "inf", "5 s", "5x"})
    EXPECT_FALSE(ParseDurationFlag(bad).ok()) << bad;
}

TEST(OptionsTest, BadInputIsAnErrorNotACrash) {
  for (std::vector<std::string> bad : std::vector<std::vector<std::string>>{
           {},
           {"frob"},
           {"snapshot", "--frobnicate"},
           {"snapshot", "--duration"},
           {"snapshot", "--duration", "x"},
           {"snapshot", "--instance-ip", "10.0.0.300"},
           {"trace", "--pid", "-1"},
           {"trace", "--pid", "abc"},
           {"--backend", "magic", "probe"},
           {"trace", "--ringbuf-mib", "3"},
           {"trace", "--max-sockets", "1"}}) {
    auto r = P(bad);
    EXPECT_FALSE(r.ok()) << ::testing::PrintToString(bad);
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST(OptionsTest, HelpIsNotAnError) {
  auto r = P({"--help"});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->help);
  EXPECT_NE(r->help_text.find("snapshot"), std::string::npos);
  r = P({"snapshot", "--help"});
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->help_text.find("--netns"), std::string::npos);
}

TEST(OptionsTest, VersionIsNotAnErrorAndNamesTheRevision) {
  for (auto args : {std::vector<std::string>{"--version"},
                    std::vector<std::string>{"agent", "--version"}}) {
    auto r = P(args);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->help);
    EXPECT_EQ(r->help_text, fmt::format("svcmap {} (revision {})\n", base::Version(),
                                        base::Revision()));
  }
}

}  // namespace
}  // namespace svcmap::app
