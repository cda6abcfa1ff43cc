// A gtest suite whose tests share one pair of namespace machines, made
// before its first test and removed after its last.
#ifndef SVCMAP_TESTS_E2E_TWO_HOSTS_SUITE_H_
#define SVCMAP_TESTS_E2E_TWO_HOSTS_SUITE_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "harness.h"

namespace svcmap::e2e {

class TwoHostsSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (PrivilegeProblem().empty()) hosts_ = std::make_unique<TwoHosts>();
  }
  static void TearDownTestSuite() { hosts_.reset(); }

  // Skips, with the reason, without root and BPF; fails if the machines
  // could not be made.
  void SetUp() override {
    if (std::string why = PrivilegeProblem(); !why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(hosts_->ok()) << hosts_->error();
  }

  static inline std::unique_ptr<TwoHosts> hosts_;
};

}  // namespace svcmap::e2e

#endif  // SVCMAP_TESTS_E2E_TWO_HOSTS_SUITE_H_
