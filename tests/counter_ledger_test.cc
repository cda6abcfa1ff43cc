#include "svcmap/export/counter_ledger.h"

#include "gtest/gtest.h"

namespace svcmap::exporter {
namespace {

using Ledger = CounterLedger<1>;

uint64_t Total(const Ledger& l, const Ledger::SeriesKey& k) {
  auto it = l.series().find(k);
  return it == l.series().end() ? UINT64_MAX : it->second.total[0];
}

void Round(Ledger& l, const std::vector<std::tuple<std::string, Ledger::SeriesKey, uint64_t>>& seen,
           const std::vector<std::string>& forget = {}, uint64_t now = 1) {
  l.BeginRound();
  for (const auto& [id, key, v] : seen) l.Observe(id, key, {v}, false, now);
  for (const std::string& id : forget) l.Forget(id);
  l.EndRound();
}

TEST(CounterLedgerTest, ASeriesIsTheGrowthOfItsContributors) {
  Ledger l;
  Round(l, {{"a", {"s"}, 100}, {"b", {"s"}, 50}});
  EXPECT_EQ(Total(l, {"s"}), 150u);
  Round(l, {{"a", {"s"}, 120}, {"b", {"s"}, 50}});
  EXPECT_EQ(Total(l, {"s"}), 170u);
}

// A sibling's flow expired while another keeps the series alive: nothing
// is subtracted (the decrease Prometheus would read as a reset).
TEST(CounterLedgerTest, AForgottenContributorLeavesWhatItAddedBehind) {
  Ledger l;
  Round(l, {{"a", {"s"}, 100}, {"b", {"s"}, 50}});
  Round(l, {{"b", {"s"}, 60}}, {"a"});
  EXPECT_EQ(Total(l, {"s"}), 160u);
  Round(l, {{"b", {"s"}, 70}});
  EXPECT_EQ(Total(l, {"s"}), 170u);
  // The contributor comes back (a new flow with its key): from its new bytes.
  Round(l, {{"a", {"s"}, 5}, {"b", {"s"}, 70}});
  EXPECT_EQ(Total(l, {"s"}), 175u);
}

TEST(CounterLedgerTest, ASeriesEndsWholeWithItsLastContributorAndStartsAgainFromZero) {
  Ledger l;
  Round(l, {{"a", {"s"}, 100}}, {}, 1);
  Round(l, {}, {"a"}, 2);
  EXPECT_EQ(l.series().size(), 0u);
  Round(l, {{"a", {"s"}, 7}}, {}, 3);
  EXPECT_EQ(Total(l, {"s"}), 7u);
  EXPECT_EQ(l.series().at({"s"}).created_ns, 3u);
}

TEST(CounterLedgerTest, AContributorThatChangesSeriesTakesOnlyItsGrowthAlong) {
  Ledger l;
  Round(l, {{"a", {"old"}, 100}, {"b", {"old"}, 1}});
  Round(l, {{"a", {"new"}, 130}, {"b", {"old"}, 1}});
  EXPECT_EQ(Total(l, {"old"}), 101u);
  EXPECT_EQ(Total(l, {"new"}), 30u);
}

TEST(CounterLedgerTest, LowerTotalsAddNothingAndAreNotRemembered) {
  Ledger l;
  Round(l, {{"a", {"s"}, 100}});
  Round(l, {{"a", {"s"}, 90}});
  EXPECT_EQ(Total(l, {"s"}), 100u);
  Round(l, {{"a", {"s"}, 110}});
  EXPECT_EQ(Total(l, {"s"}), 110u);
}

TEST(CounterLedgerTest, ContributorsNotReportedInARoundAreForgotten) {
  Ledger l;
  Round(l, {{"a", {"s"}, 100}, {"b", {"t"}, 1}});
  Round(l, {{"b", {"t"}, 1}});
  EXPECT_EQ(l.contributors(), 1u);
  EXPECT_EQ(l.series().count({"s"}), 0u);
}

}  // namespace
}  // namespace svcmap::exporter
