#ifndef SVCMAP_EXPORT_COUNTER_LEDGER_H_
#define SVCMAP_EXPORT_COUNTER_LEDGER_H_

// Exported counters that never go down within a series' life. Prometheus
// and VictoriaMetrics read any decrease as a counter reset and count the
// whole value again, so a series must not shrink when something under it
// goes: a flow that expired while a sibling keeps the series alive, an
// exited process, a rename.
//
// A series is the sum of what its *contributors* added while they were
// known: each contributor (a flow group, a NETWORK_TRAFFIC series of one
// namespace; its id is opaque here) reports its totals every round, and
// only their growth is added. A contributor that moves to another series
// (its labels changed) leaves what it added behind. A series ends, whole,
// when its last contributor is forgotten (flow::Collector::Housekeep
// expired its group), and a series that comes back later starts again from
// what is new (a reset the store handles).

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"

namespace svcmap::exporter {

template <size_t N>
class CounterLedger {
 public:
  using Values = std::array<uint64_t, N>;
  using SeriesKey = std::vector<std::string>;  // label values, in the family's order
  struct Series {
    Values total{};
    uint64_t created_ns = 0;  // when this life of the series began
    uint32_t contributors = 0;
    bool live = false;  // a contributor had open connections in the last round
  };

  // Starts a round (one frame).
  void BeginRound() {
    ++round_;
    for (auto& [k, s] : series_) s.live = false;
  }
  // A contributor's totals now. Totals lower than last time (which the
  // flow table does not produce) add nothing and are not remembered.
  void Observe(const std::string& contributor, const SeriesKey& series, const Values& v, bool live,
               uint64_t now_ns) {
    auto [cit, fresh] = contributors_.try_emplace(contributor);
    Contributor& c = cit->second;
    c.round = round_;
    if (fresh || c.series->first != series) {
      if (!fresh) Detach(c);
      auto [sit, created] = series_.try_emplace(series);
      if (created) sit->second.created_ns = now_ns;
      ++sit->second.contributors;
      c.series = &*sit;
    }
    Series& s = c.series->second;
    for (size_t i = 0; i < N; ++i) {
      if (v[i] <= c.last[i]) continue;
      s.total[i] += v[i] - c.last[i];
      c.last[i] = v[i];
    }
    s.live = s.live || live;
  }
  // The contributor is gone for good (its group expired): what it added
  // stays in its series; a series left without contributors ends.
  void Forget(const std::string& contributor) {
    auto it = contributors_.find(contributor);
    if (it == contributors_.end()) return;
    Detach(it->second);
    contributors_.erase(it);
  }
  // Ends the round: contributors not reported in it are forgotten (a
  // safety net; Forget() is the rule).
  void EndRound() {
    std::vector<std::string> gone;
    for (const auto& [id, c] : contributors_)
      if (c.round != round_) gone.push_back(id);
    for (const std::string& id : gone) Forget(id);
  }

  const absl::node_hash_map<SeriesKey, Series>& series() const { return series_; }
  size_t contributors() const { return contributors_.size(); }

 private:
  struct Contributor {
    typename absl::node_hash_map<SeriesKey, Series>::value_type* series = nullptr;
    Values last{};
    uint64_t round = 0;
  };
  void Detach(Contributor& c) {
    if (c.series == nullptr) return;
    if (--c.series->second.contributors == 0) series_.erase(series_.find(c.series->first));
    c.series = nullptr;
  }

  // Pointers into it stay valid until the element goes (node_hash_map).
  absl::node_hash_map<SeriesKey, Series> series_;
  absl::flat_hash_map<std::string, Contributor> contributors_;
  uint64_t round_ = 0;
};

}  // namespace svcmap::exporter

#endif  // SVCMAP_EXPORT_COUNTER_LEDGER_H_
