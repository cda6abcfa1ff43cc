// SelectBackend over canned probe reports: which mechanism each hook gets,
// and when the send/receive hooks are not needed.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "svcmap/kernel/feature_probe.h"

namespace svcmap::kernel {
namespace {

constexpr char kState[] = "sock/inet_sock_set_state";

Attempt Ok(Mechanism m, std::string target) { return {m, std::move(target), true, ""}; }
Attempt No(Mechanism m, std::string target) {
  return {m, std::move(target), false, "load: EPERM (Operation not permitted)"};
}

HookProbe Hook(std::string name, std::vector<Attempt> attempts) {
  HookProbe h;
  h.hook = std::move(name);
  h.attempts = std::move(attempts);
  return h;
}

// The 6.18 development host: fentry refused, kprobes compiled out, every
// tracepoint there; `accept_syscall` says whether sys_exit_accept4 attached,
// `io` whether sock_send_length / sock_recv_length did (6.3+).
ProbeReport TracepointHost(bool accept_syscall, bool io) {
  ProbeReport r;
  r.btf = true;
  r.tracefs = true;
  auto io_hook = [&](std::string name, std::string tp) {
    return Hook(name, {No(Mechanism::kFentry, "f"), No(Mechanism::kKprobe, "f"),
                       io ? Ok(Mechanism::kTpBtf, tp) : No(Mechanism::kTpBtf, tp),
                       io ? Ok(Mechanism::kTracepoint, tp) : No(Mechanism::kTracepoint, tp)});
  };
  r.hooks = {
      Hook("connect", {No(Mechanism::kFentry, "tcp_connect"), No(Mechanism::kKprobe, "tcp_connect"),
                       Ok(Mechanism::kTpBtf, kState), Ok(Mechanism::kTracepoint, kState)}),
      Hook("accept",
           {No(Mechanism::kFentry, "inet_csk_accept"), No(Mechanism::kKprobe, "inet_csk_accept"),
            accept_syscall ? Ok(Mechanism::kTracepoint, "syscalls/sys_exit_accept4")
                           : No(Mechanism::kTracepoint, "syscalls/sys_exit_accept4"),
            Ok(Mechanism::kTpBtf, kState), Ok(Mechanism::kTracepoint, kState)}),
      io_hook("send", "sock/sock_send_length"),
      io_hook("recv", "sock/sock_recv_length"),
      Hook("close", {No(Mechanism::kFentry, "d"), No(Mechanism::kKprobe, "d"),
                     Ok(Mechanism::kTpBtf, "tcp/tcp_destroy_sock"),
                     Ok(Mechanism::kTracepoint, "tcp/tcp_destroy_sock")}),
  };
  return r;
}

TEST(SelectBackendTest, AcceptAtItsSyscallsExitMakesTheSendAndReceiveHooksUnneeded) {
  ProbeReport r = TracepointHost(/*accept_syscall=*/true, /*io=*/true);
  ASSERT_TRUE(SelectBackend(r, "auto", std::nullopt).ok());
  EXPECT_EQ(r.backend, "tracepoint");
  EXPECT_TRUE(r.AcceptInProcess());
  EXPECT_EQ(r.Find("accept")->chosen_target, "syscalls/sys_exit_accept4");
  EXPECT_FALSE(r.Find("send")->needed);
  EXPECT_FALSE(r.Find("recv")->needed);
  EXPECT_TRUE(r.Find("close")->needed);
  EXPECT_NE(r.backend_reason.find("send and recv not needed"), std::string::npos)
      << r.backend_reason;
}

TEST(SelectBackendTest, WithoutTheByteTracepointsNothingIsDegradedWhenAcceptIsSeen) {
  // 5.10 and 6.1: no sock_send_length, but accept's exit names the owner.
  ProbeReport r = TracepointHost(/*accept_syscall=*/true, /*io=*/false);
  ASSERT_TRUE(SelectBackend(r, "auto", std::nullopt).ok());
  EXPECT_EQ(r.backend_reason.find("degraded"), std::string::npos) << r.backend_reason;
  EXPECT_TRUE(r.AcceptInProcess());
}

TEST(SelectBackendTest, WithoutTheAcceptSyscallTracepointAcceptRidesOnTheStateHook) {
  ProbeReport r = TracepointHost(/*accept_syscall=*/false, /*io=*/true);
  ASSERT_TRUE(SelectBackend(r, "auto", std::nullopt).ok());
  EXPECT_FALSE(r.AcceptInProcess());
  EXPECT_EQ(r.Find("accept")->chosen, Mechanism::kTpBtf);
  EXPECT_EQ(r.Find("accept")->chosen_target, kState);
  EXPECT_TRUE(r.Find("send")->needed);
  EXPECT_TRUE(r.Find("recv")->needed);
  EXPECT_EQ(r.Find("send")->chosen, Mechanism::kTpBtf);
}

TEST(SelectBackendTest, ForcingTpBtfKeepsTheClassicAcceptTracepointOut) {
  ProbeReport r = TracepointHost(/*accept_syscall=*/true, /*io=*/true);
  ASSERT_TRUE(SelectBackend(r, "tracepoint", Mechanism::kTpBtf).ok());
  EXPECT_FALSE(r.AcceptInProcess());
  EXPECT_TRUE(r.Find("send")->needed);
}

TEST(SelectBackendTest, ClassicFormTakesTheAcceptSyscallAndTheClassicStateHook) {
  ProbeReport r = TracepointHost(/*accept_syscall=*/true, /*io=*/true);
  ASSERT_TRUE(SelectBackend(r, "tracepoint", Mechanism::kTracepoint).ok());
  EXPECT_EQ(r.state_form, Mechanism::kTracepoint);
  EXPECT_TRUE(r.AcceptInProcess());
  EXPECT_EQ(r.Find("connect")->chosen_target, kState);
}

TEST(SelectBackendTest, NoAcceptHookAtAllLeavesTheIoHooksNeeded) {
  ProbeReport r = TracepointHost(/*accept_syscall=*/false, /*io=*/false);
  ASSERT_TRUE(SelectBackend(r, "auto", std::nullopt).ok());
  EXPECT_FALSE(r.AcceptInProcess());
  EXPECT_NE(r.backend_reason.find("degraded: no usable mechanism for send, recv"),
            std::string::npos)
      << r.backend_reason;
}

}  // namespace
}  // namespace svcmap::kernel
