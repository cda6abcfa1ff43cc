// nat::ConntrackResolver on the real kernel: a namespace's netlink handle
// is opened on first use and closed by Prune once the namespace is gone (a
// held handle would pin a dead pod's namespace for the agent's lifetime).
#include "svcmap/nat/conntrack.h"

#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "fmt/format.h"
#include "gtest/gtest.h"
#include "harness.h"
#include "svcmap/scan/netns.h"

namespace svcmap::nat {
namespace {

using e2e::RunCmd;

std::vector<uint32_t> Alive() {
  std::vector<uint32_t> inodes;
  for (const scan::NetnsRef& ns : scan::ListNetns().namespaces) inodes.push_back(ns.inode);
  return inodes;
}

TEST(ConntrackResolverTest, ANamespacesHandleIsClosedWhenTheNamespaceGoes) {
  if (std::string why = e2e::PrivilegeProblem(); !why.empty()) GTEST_SKIP() << why;
  const std::string name = fmt::format("svcmap-ct-{}", getpid());
  RunCmd({"ip", "netns", "del", name});  // a crashed run's
  ASSERT_EQ(RunCmd({"ip", "netns", "add", name}).exit_code, 0);
  const uint32_t inode = scan::NetnsInodeOf("/run/netns/" + name);
  ASSERT_NE(inode, 0u);
  std::vector<uint32_t> alive = Alive();
  ASSERT_NE(std::find(alive.begin(), alive.end(), inode), alive.end());

  ConntrackResolver resolver;
  flow::SockRecord s;
  s.netns = inode;
  s.role = flow::Role::kClient;
  s.local_ip = flow::IpAddr::V4(10, 201, 0, 1);
  s.local_port = 40000;
  s.remote_ip = flow::IpAddr::V4(10, 201, 0, 2);  // not loopback: loopback is never asked
  s.remote_port = 80;
  EXPECT_FALSE(resolver.Resolve(s).has_value()) << "no such connection in conntrack";
  // The socket's namespace, then the node's own (where kube-proxy's DNAT
  // of a pod's connection is recorded).
  EXPECT_EQ(resolver.handles(), 2u) << "opened in the socket's namespace and ours";
  EXPECT_EQ(resolver.Stats().lookups, 2u);

  // While the namespace lives, pruning keeps its handle.
  resolver.Prune(Alive());
  EXPECT_EQ(resolver.handles(), 2u);
  ASSERT_EQ(RunCmd({"ip", "netns", "del", name}).exit_code, 0);
  alive = Alive();
  EXPECT_EQ(std::find(alive.begin(), alive.end(), inode), alive.end());
  resolver.Prune(alive);
  EXPECT_EQ(resolver.handles(), 1u) << "the dead namespace's handle is closed, ours kept";
}

}  // namespace
}  // namespace svcmap::nat
