#ifndef SVCMAP_TOPOLOGY_SOURCES_H_
#define SVCMAP_TOPOLOGY_SOURCES_H_

// Where `svcmap topology` reads what the agents saw: snapshot files, the
// agents' /api/snapshot, or a Prometheus-compatible store's query API. The
// parsers are pure functions of the text they are given (and fuzzed); the
// fetchers do the I/O. Every source yields the same Observations.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "svcmap/net/http_client.h"
#include "svcmap/topology/model.h"

namespace svcmap::topology {

// The snapshot document's version (its "schema_version"); a file of another
// version is refused rather than half read.
inline constexpr int kSnapshotSchemaVersion = 1;

// One snapshot (`svcmap snapshot --json`, or an agent's /api/snapshot).
// `origin` names it in errors.
absl::StatusOr<Observations> ParseSnapshot(std::string_view text, std::string_view origin);

// A Prometheus HTTP API answer of resultType "vector": its samples.
struct PromSample {
  std::map<std::string, std::string> labels;  // __name__ included when present
  double value = 0;
};
absl::StatusOr<std::vector<PromSample>> ParsePromVector(std::string_view text);

// The time window a store is asked about, in ms since the epoch.
struct Window {
  int64_t start_ms = 0;
  int64_t end_ms = 0;
};
// "5m" (ending now), or "START..END" with each end "now", "now-1h", an
// RFC 3339 time or Unix seconds; durations may also be whole days, "30d".
absl::StatusOr<Window> ParseWindow(std::string_view text, absl::Time now);

// The store's answers, one vector per query (see TsdbQueries), and the
// observations they add up to: bytes in the window are each counter's value
// at the end less its value at the start (a counter that went down was
// reset by an agent restart: its value at the end counts).
struct TsdbQuery {
  std::string name;
  std::string promql;
  bool at_start = false;  // evaluated at the window's start, not its end
};
std::vector<TsdbQuery> TsdbQueries(const Window& w);
// The step of the queries' subqueries: how coarse their seen-first and
// seen-last times are (Observations::time_resolution_ms).
int64_t TsdbStepSeconds(const Window& w);
absl::StatusOr<Observations> ObservationsFromTsdb(
    const std::map<std::string, std::vector<PromSample>>& answers);

// I/O.
absl::StatusOr<Observations> ReadSnapshotFile(const std::string& path);
absl::StatusOr<Observations> FetchAgent(const std::string& base_url,
                                        const net::HttpClientConfig& http = {});
absl::StatusOr<Observations> QueryTsdb(const std::string& base_url, const Window& w,
                                       const net::HttpClientConfig& http = {});

}  // namespace svcmap::topology

#endif  // SVCMAP_TOPOLOGY_SOURCES_H_
