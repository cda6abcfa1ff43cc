#ifndef SVCMAP_UI_TOP_VIEW_H_
#define SVCMAP_UI_TOP_VIEW_H_

// The terminal side of `svcmap top`: a sampler thread publishes immutable
// samples; the UI thread only draws them and reads keys (ncurses), or, in
// batch mode, prints plain-text frames. The terminal is restored on every
// way out: a normal exit, SIGINT/SIGTERM, and a crash signal.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "svcmap/ui/top_model.h"

namespace svcmap::ui {

// Takes one sample from wherever top reads (the kernel, agents, a store).
using SampleFn = std::function<absl::StatusOr<Sample>()>;

struct TopOptions {
  absl::Duration interval = absl::Seconds(1);
  bool batch = false;
  std::optional<int> frames;          // batch: stop after this many
  std::optional<absl::Duration> duration;
  Mode mode = Mode::kEdges;
  size_t width = 100;                 // batch: line width
};

// Runs until 'q', SIGINT/SIGTERM (blocked in every thread by main), or the
// frames/duration are done. A sampling error is shown and sampling goes on.
absl::Status RunTopUi(const SampleFn& sample, const TopOptions& options);

}  // namespace svcmap::ui

#endif  // SVCMAP_UI_TOP_VIEW_H_
