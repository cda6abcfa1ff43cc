// `svcmap top` in a real terminal: tmux runs it while a workload runs, and
// capture-pane shows what it draws; keys switch views and the sort; the
// terminal comes back after q, Ctrl-C and a crash signal. Batch mode too.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "fmt/format.h"
#include "gtest/gtest.h"
#include "harness.h"

namespace svcmap::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kSvcmap = SVCMAP_BIN;
const std::string kPeer = SVCMAP_PEER_BIN;

class TopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = PrivilegeProblem(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_FALSE(Which("tmux").empty()) << "tmux is not installed (scripts/install-deps)";
    session_ = fmt::format("svcmap-top-{}", getpid());
    port_ = FreePort();
    server_ = std::make_unique<Child>(std::vector<std::string>{
        kPeer, "serve", "--bind", "127.0.0.1", "--port", std::to_string(port_), "--reply",
        "5000", "--conns", "100000", "--name", "top-server"});
    ASSERT_TRUE(server_->WaitForLine(false, "ready", seconds(30)));
    // The workload: 20 exchanges every 100 ms until the test ends.
    load_ = std::thread([this] {
      while (!stop_) {
        RunCmd({kPeer, "connect", "--host", "127.0.0.1", "--port", std::to_string(port_),
                "--send", "3000", "--count", "20", "--name", "top-client"},
               seconds(30));
        std::this_thread::sleep_for(milliseconds(100));
      }
    });
  }
  void TearDown() override {
    stop_ = true;
    if (load_.joinable()) load_.join();
    server_.reset();
    if (!session_.empty()) RunCmd({"tmux", "kill-session", "-t", session_});
  }

  // Starts `cmd` in a fresh 140x40 tmux session; its exit code goes to a file.
  void Start(const std::string& cmd) {
    exit_file_ = TempDir("top") + "/exit";
    RunResult r = RunCmd({"tmux", "-f", "/dev/null", "new-session", "-d", "-s", session_, "-x",
                          "140", "-y", "40",
                          fmt::format("TERM=screen {}; echo $? > {}; sleep 30", cmd, exit_file_)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::string Capture() {
    return RunCmd({"tmux", "capture-pane", "-p", "-t", session_}).out;
  }
  void Keys(const std::string& keys) {
    ASSERT_EQ(RunCmd({"tmux", "send-keys", "-t", session_, keys}).exit_code, 0);
  }
  // Polls the pane until every one of `res` matches one capture of it: a
  // capture can land between the lines of one redraw.
  std::string WaitForAll(const std::vector<std::string>& res, seconds timeout = seconds(30)) {
    std::vector<std::regex> patterns(res.begin(), res.end());
    std::string screen;
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      screen = Capture();
      bool all = true;
      for (const std::regex& p : patterns) all = all && std::regex_search(screen, p);
      if (all) return screen;
      std::this_thread::sleep_for(milliseconds(200));
    }
    std::string wanted;
    for (const std::string& re : res) wanted += " /" + re + "/";
    ADD_FAILURE() << "never saw" << wanted << " in:\n" << screen;
    return screen;
  }
  std::string WaitFor(const std::string& re, seconds timeout = seconds(30)) {
    return WaitForAll({re}, timeout);
  }
  std::string ExitCode(seconds timeout = seconds(15)) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      std::ifstream in(exit_file_);
      std::string code;
      if (in >> code) return code;
      std::this_thread::sleep_for(milliseconds(100));
    }
    return "";
  }
  bool AlternateScreen() {
    return RunCmd({"tmux", "display", "-p", "-t", session_, "#{alternate_on}"}).out == "1\n";
  }
  static void Keep(const std::string& name, const std::string& screen) {
    if (const char* dir = std::getenv("SVCMAP_SCREENSHOT_DIR"))
      std::ofstream(fmt::format("{}/top-{}.txt", dir, name)) << screen;
  }

  std::string session_, exit_file_;
  int port_ = 0;
  std::unique_ptr<Child> server_;
  std::thread load_;
  std::atomic<bool> stop_{false};
};

// A rate that is not zero: "12.3 KiB/s" or "512 B/s" but not "0 B/s".
const char kNonZero[] = R"(( [1-9][0-9.]* (B|KiB|MiB)/s|0\.[0-9] KiB/s))";

TEST_F(TopTest, ShowsTheWorkloadWithRatesAndKeysSwitchViewsAndSort) {
  Start(kSvcmap + " top --interval 1s --name-rule 'cmdline:--name (\\S+)=$1'");
  std::string edges = WaitForAll(
      {std::string("top-client +top-server +[0-9]+") + ".*" + kNonZero, R"(\[edges\])"});
  EXPECT_NE(edges.find("svcmap top - "), std::string::npos) << edges;
  EXPECT_NE(edges.find("backend tracepoint"), std::string::npos) << edges;
  EXPECT_NE(edges.find("OUT/sv"), std::string::npos) << "sorted by OUT/s, descending";
  EXPECT_NE(edges.find("[edges]"), std::string::npos) << "the footer names the view";
  EXPECT_TRUE(AlternateScreen());
  Keep("edges", edges);

  Keys("2");
  std::string services =
      WaitForAll({R"(SERVICE +INSTANCE.*\n(.*\n)*top-server)", R"(\[services\])"});
  EXPECT_NE(services.find("[services]"), std::string::npos);
  Keep("services", services);
  Keys("3");
  std::string processes = WaitFor(R"(PID +COMM +SERVICE(.*\n)* *[0-9]+ +top-client)");
  Keep("processes", processes);
  Keys(">");
  WaitFor(R"(IN/sv)");
  Keys("r");
  WaitFor(R"(IN/s\^)");
  Keys("1");
  Keys("/");
  Keys("top-serv");
  Keys("Enter");
  std::string filtered = WaitFor(R"(filter "top-serv")");
  EXPECT_NE(filtered.find("top-client"), std::string::npos) << filtered;
  Keys(" ");
  WaitFor("PAUSED");
  Keys(" ");
  // A narrower terminal: redrawn to fit, footer on the last line.
  ASSERT_EQ(RunCmd({"tmux", "resize-window", "-t", session_, "-x", "90", "-y", "24"}).exit_code, 0);
  std::string narrow = WaitFor(R"(\n\[edges\][^\n]*\n*$)");
  std::istringstream lines(narrow);
  int count = 0;
  for (std::string line; std::getline(lines, line); ++count) EXPECT_LE(line.size(), 90u) << line;
  EXPECT_LE(count, 24);
  Keys("q");
  EXPECT_EQ(ExitCode(), "0");
  EXPECT_FALSE(AlternateScreen()) << "the terminal is back";
}

TEST_F(TopTest, CtrlCAndACrashSignalGiveTheTerminalBack) {
  Start(kSvcmap + " top");
  WaitFor("svcmap top - ");
  Keys("C-c");
  EXPECT_EQ(ExitCode(), "0");
  EXPECT_FALSE(AlternateScreen());
  RunCmd({"tmux", "kill-session", "-t", session_});

  Start(kSvcmap + " top");
  WaitFor("svcmap top - ");
  RunResult pid = RunCmd({"pgrep", "-f", "-n", "^" + kSvcmap + " top$"});
  ASSERT_EQ(pid.exit_code, 0);
  kill(std::atoi(pid.out.c_str()), SIGSEGV);
  EXPECT_EQ(ExitCode(), std::to_string(128 + SIGSEGV));
  EXPECT_FALSE(AlternateScreen()) << "restored before dying";
}

TEST_F(TopTest, BatchPrintsPlainFrames) {
  // The same rule as above: without it a peer still alive when it is read is named by its
  // exe (svcmap-peer), and only one already gone by its comm.
  RunResult r = RunCmd({kSvcmap, "top", "--batch", "--frames", "3", "--interval", "1s",
                        "--name-rule", "cmdline:--name (\\S+)=$1"},
                       seconds(60));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  size_t headers = 0;
  for (size_t at = 0; (at = r.out.find("svcmap top - ", at)) != std::string::npos; ++at) ++headers;
  EXPECT_EQ(headers, 3u) << r.out;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << "no escape sequences in batch mode";
  EXPECT_NE(r.out.find("top-client"), std::string::npos) << r.out;
  RunResult bad = RunCmd({kSvcmap, "top", "--frames", "2"});
  EXPECT_EQ(bad.exit_code, 2) << "--frames without --batch";
  RunResult pipe = RunCmd({kSvcmap, "top"});  // stdout is a pipe here
  EXPECT_NE(pipe.exit_code, 0);
  EXPECT_NE(pipe.err.find("--batch"), std::string::npos) << pipe.err;
}

// The local graph's health reaches top's columns: a caller whose every
// connect is refused shows its errors per second and no RTT; the fixture's
// client, whose exchanges complete, shows an RTT and no errors.
TEST_F(TopTest, TheLocalGraphShowsErrorsPerSecondAndRtt) {
  const int closed = FreePort();  // nothing listens there
  std::atomic<bool> stop{false};
  std::atomic<int> refused{0};
  std::thread refuser([&] {
    for (int i = 0; i < 100 && !stop; ++i) {
      RunResult r = RunCmd({kPeer, "connect", "--host", "127.0.0.1", "--port",
                            std::to_string(closed), "--count", "5", "--fail", "1", "--name",
                            "top-refuser"},
                           seconds(30));
      if (r.exit_code == 0) refused += 5;
      std::this_thread::sleep_for(milliseconds(200));
    }
  });
  RunResult r = RunCmd({kSvcmap, "top", "--batch", "--frames", "4", "--interval", "1s", "--width",
                        "140", "--name-rule", "cmdline:--name (\\S+)=$1"},
                       seconds(60));
  stop = true;
  refuser.join();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_GT(refused.load(), 0) << "the refuser never ran";
  // The last frame's rows: FROM TO PORT OUT/s IN/s CONN/s ACTIVE TOTAL ERR/s RETR/s RTT.
  const std::string last = r.out.substr(r.out.rfind("svcmap top - "));
  std::smatch m;
  const std::regex refuser_row(
      fmt::format(R"re(\ntop-refuser +127\.0\.0\.1:{0} +{0} +0 B/s +0 B/s +0 +0 +0 B +(\d+(?:\.\d)?) +0 +- *\n)re",
                  closed));
  ASSERT_TRUE(std::regex_search(last, m, refuser_row)) << last;
  // 5 refused every ~200 ms plus the time a peer takes to start: between
  // a few and 25 a second, never 0.
  const double errors = std::stod(m[1].str());
  EXPECT_GE(errors, 3) << last;
  EXPECT_LE(errors, 25) << last;
  const std::regex client_row(fmt::format(
      R"re(\ntop-client +top-server +{0} .* 0 +0 +(\d+(\.\d+)?)(us|ms) *\n)re", port_));
  EXPECT_TRUE(std::regex_search(last, m, client_row)) << last;
}

}  // namespace
}  // namespace svcmap::e2e
