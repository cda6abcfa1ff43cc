#ifndef SVCMAP_KERNEL_PROCFS_BACKEND_H_
#define SVCMAP_KERNEL_PROCFS_BACKEND_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "svcmap/kernel/backend.h"
#include "svcmap/scan/tracker.h"

namespace svcmap::kernel {

struct ProcfsOptions {
  absl::Duration interval = absl::Seconds(1);
  bool use_sock_diag = true;  // false: /proc/<pid>/net/tcp only (no bytes)
  bool require_sock_diag = false;  // fail rather than fall back to /proc
  std::string proc_root = "/proc";
};

// The backend for nodes where BPF is unusable: every interval it lists the
// TCP sockets of every network namespace (netlink sock_diag with tcp_info,
// or /proc/net/tcp), maps them to processes through /proc/<pid>/fd, and
// turns the differences between scans into the same events the BPF
// backends emit. A connection that opens and closes between two scans is
// not seen; the snapshot's completeness figure says how many.
class ProcfsBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<ProcfsBackend>> Create(const ProcfsOptions& options);
  explicit ProcfsBackend(const ProcfsOptions& options) : options_(options) {}
  ~ProcfsBackend() override;

  // Scans once (the start-up seed), then every interval on a thread.
  absl::Status Start(EventSink sink) override;
  void Stop() override;
  // Scans now: the answer is as fresh as it can be.
  absl::Status RefreshLive() override;
  absl::Status ForEachLive(const LiveFn& fn) override;
  BackendStats Stats() const override;
  Progress DrainProgress() const override;
  const std::vector<std::string>& attached() const override { return attached_; }

 private:
  // One full scan; delivers its events. Serialised by scan_mu_.
  absl::Status ScanOnce();
  void Loop();

  ProcfsOptions options_;
  std::vector<std::string> attached_;
  EventSink sink_;
  mutable std::mutex scan_mu_;
  scan::SocketTracker tracker_;  // guarded by scan_mu_
  std::thread thread_;
  std::mutex wake_mu_;
  std::condition_variable wake_;
  bool stop_ = false;  // guarded by wake_mu_
  std::atomic<uint64_t> scans_{0}, scan_errors_{0}, events_{0}, bad_records_{0},
      last_scan_us_{0};
  std::atomic<bool> diag_failed_{false};
  std::atomic<bool> looping_{false};
  std::atomic<int64_t> scanned_unix_ns_{0};
};

}  // namespace svcmap::kernel

#endif  // SVCMAP_KERNEL_PROCFS_BACKEND_H_
