#include "svcmap/app/health.h"

#include "fmt/format.h"

namespace svcmap::app {
namespace {

std::string Seconds(absl::Duration d) { return absl::FormatDuration(absl::Trunc(d, absl::Seconds(1))); }

}  // namespace

std::vector<std::string> Unhealthy(const node::SessionHealth& h,
                                   const std::optional<exporter::RemoteWriteStats>& w,
                                   absl::Duration drain_stall, absl::Time now) {
  std::vector<std::string> bad;
  if (!h.drain_running)
    bad.push_back("event drain thread stopped");
  else if (h.since_drain > drain_stall)
    bad.push_back(fmt::format("events not drained for {}", Seconds(h.since_drain)));
  // Frames come every 10 s at least; a minute without one is a stuck frame
  // thread (every request would wait on it).
  if (h.ready && h.since_frame > absl::Seconds(60))
    bad.push_back(fmt::format("no frame taken for {}", Seconds(h.since_frame)));
  // Failing is not unhealthy while the backlog holds what the store missed.
  if (w && w->failing_since != absl::InfinitePast() && w->dropped_while_failing > 0)
    bad.push_back(fmt::format(
        "remote write failing for {} ({}), {} samples dropped: more than --remote-write-buffer "
        "holds",
        Seconds(now - w->failing_since), w->last_error, w->dropped_while_failing));
  return bad;
}

}  // namespace svcmap::app
