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

TEST(OptionsTest, TopBatchTakesAWidthThatGoesWithBatchOnly) {
  auto r = P({"top", "--batch", "--width", "140"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.width, 140);
  EXPECT_FALSE(P({"top", "--width", "140"}).ok());
  EXPECT_FALSE(P({"top", "--batch", "--width", "10"}).ok());
  EXPECT_FALSE(P({"top", "--batch", "--width", "wide"}).ok());
}

TEST(OptionsTest, RemoteWriteTimeoutDefaultsToTenSecondsAndIsAtLeast100ms) {
  auto r = P({"agent", "--remote-write", "http://127.0.0.1:8428/api/v1/write"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.remote_write_timeout, absl::Seconds(10));
  r = P({"agent", "--remote-write-timeout", "1500ms"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.remote_write_timeout, absl::Milliseconds(1500));
  EXPECT_FALSE(P({"agent", "--remote-write-timeout", "10ms"}).ok());
  EXPECT_FALSE(P({"agent", "--remote-write-timeout", "soon"}).ok());
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

TEST(OptionsTest, HttpClientFlagsFollowTheirUrlFlag) {
  auto r = P({"topology", "--tsdb", "https://vm:8427", "--tsdb-insecure-skip-verify",
              "--tsdb-header", "X-Scope-OrgID: team-a", "--tsdb-header", "X-B: b"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->options.tsdb_http.insecure_skip_verify);
  ASSERT_EQ(r->options.tsdb_http.headers.size(), 2u);
  EXPECT_EQ(r->options.tsdb_http.headers[0].second, "team-a");
  EXPECT_EQ(P({"topology", "--tsdb-header", "X-A: a", "--snapshot", "f"}).status().message(),
            "--tsdb-* flags without --tsdb");
  EXPECT_EQ(P({"topology", "--tsdb", "http://vm", "--tsdb-header", "bad"}).status().message(),
            "--tsdb-header \"bad\": want \"Name: value\"");
  EXPECT_EQ(P({"agent", "--remote-write", "http://vm/api/v1/write",
               "--remote-write-ca-file", "/nonexistent"})
                .status()
                .message(),
            "--remote-write-ca-file /nonexistent: No such file or directory");
  r = P({"agent", "--web.config.file", "/etc/svcmap/web.yml"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.web_config_path, "/etc/svcmap/web.yml");
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
