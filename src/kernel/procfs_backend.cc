#include "svcmap/kernel/procfs_backend.h"

#include <time.h>

#include "fmt/format.h"
#include "svcmap/base/clock.h"
#include "svcmap/scan/netns.h"
#include "svcmap/scan/owners.h"
#include "svcmap/scan/sock_diag.h"

namespace svcmap::kernel {
absl::StatusOr<std::unique_ptr<ProcfsBackend>> ProcfsBackend::Create(
    const ProcfsOptions& options) {
  if (options.interval < absl::Milliseconds(10))
    return absl::InvalidArgumentError("scan interval must be at least 10ms");
  auto b = std::make_unique<ProcfsBackend>(options);
  // Try sock_diag once here so the start-up line says what will be used.
  std::string source = "/proc/net/tcp (no byte counts)";
  if (options.use_sock_diag) {
    absl::StatusOr<std::vector<scan::DiagSock>> probe =
        scan::DumpTcpSockets(1u << 10 /* LISTEN: small */);
    if (probe.ok())
      source = "sock_diag";
    else if (options.require_sock_diag)
      return absl::FailedPreconditionError(
          fmt::format("--scan-source sock_diag: {}", std::string(probe.status().message())));
  }
  b->attached_.push_back(fmt::format("{} + /proc/<pid>/fd every {}", source,
                                     absl::FormatDuration(options.interval)));
  if (source != "sock_diag") b->options_.use_sock_diag = false;
  return b;
}

ProcfsBackend::~ProcfsBackend() { Stop(); }

absl::Status ProcfsBackend::ScanOnce() {
  std::lock_guard<std::mutex> lock(scan_mu_);
  absl::Time t0 = absl::Now();
  scan::NetnsList list = scan::ListNetns(options_.proc_root);
  std::vector<scan::NetnsScan> scans;
  absl::flat_hash_set<uint32_t> failed;
  scans.reserve(list.namespaces.size());
  for (const scan::NetnsRef& ns : list.namespaces) {
    scan::NetnsSockets got;
    absl::Status s = scan::RunInNetns(ns.path, [&] {
      got = scan::ReadCurrentNetns(options_.use_sock_diag);
    });
    if (!s.ok()) {
      // Gone between listing and entering: nothing of it is lost that a
      // later scan could have seen.
      scan_errors_.fetch_add(1, std::memory_order_relaxed);
      failed.insert(ns.inode);
      continue;
    }
    bad_records_.fetch_add(got.bad_records, std::memory_order_relaxed);
    if (!got.diag_error.empty()) diag_failed_.store(true, std::memory_order_relaxed);
    scans.push_back(scan::NetnsScan{ns.inode, std::move(got.socks)});
  }
  absl::flat_hash_set<uint64_t> unknown = tracker_.UnknownInodes(scans);
  scan::SocketOwners owners;
  if (!unknown.empty()) {
    owners = scan::ScanSocketOwners(&unknown, options_.proc_root, tracker_.OwnerPids());
    tracker_.NoteUnresolved(unknown, owners.by_inode);
  }
  scan_errors_.fetch_add(owners.vanished + owners.unreadable, std::memory_order_relaxed);
  std::vector<flow::SockEvent> events = tracker_.Apply(scans, owners.by_inode, failed,
                                                       BoottimeNs());
  scans_.fetch_add(1, std::memory_order_relaxed);
  last_scan_us_.store(absl::ToInt64Microseconds(absl::Now() - t0), std::memory_order_relaxed);
  scanned_unix_ns_.store(absl::GetCurrentTimeNanos(), std::memory_order_relaxed);
  events_.fetch_add(events.size(), std::memory_order_relaxed);
  if (sink_ && !events.empty()) sink_(events);
  return absl::OkStatus();
}

absl::Status ProcfsBackend::Start(EventSink sink) {
  sink_ = std::move(sink);
  if (absl::Status s = ScanOnce(); !s.ok()) return s;
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void ProcfsBackend::Loop() {
  looping_.store(true, std::memory_order_release);
  std::unique_lock<std::mutex> lock(wake_mu_);
  while (!stop_) {
    if (wake_.wait_for(lock, absl::ToChronoMilliseconds(options_.interval),
                       [this] { return stop_; }))
      break;
    lock.unlock();
    (void)ScanOnce();
    lock.lock();
  }
  looping_.store(false, std::memory_order_release);
}

Backend::Progress ProcfsBackend::DrainProgress() const {
  // A scan every interval: progress is the last one that finished.
  return {looping_.load(std::memory_order_acquire),
          absl::FromUnixNanos(scanned_unix_ns_.load(std::memory_order_relaxed))};
}

void ProcfsBackend::Stop() {
  {
    std::lock_guard<std::mutex> lock(wake_mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status ProcfsBackend::RefreshLive() { return ScanOnce(); }

absl::Status ProcfsBackend::ForEachLive(const LiveFn& fn) {
  std::lock_guard<std::mutex> lock(scan_mu_);
  for (const flow::SockRecord& r : tracker_.Live()) fn(r);
  return absl::OkStatus();
}

BackendStats ProcfsBackend::Stats() const {
  BackendStats s;
  s.events = events_.load(std::memory_order_relaxed);
  s.decode_errors = bad_records_.load(std::memory_order_relaxed);
  s.scans = scans_.load(std::memory_order_relaxed);
  s.scan_errors = scan_errors_.load(std::memory_order_relaxed);
  s.last_scan_us = last_scan_us_.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(scan_mu_);
  s.seeded_sockets = tracker_.seeded();
  s.seeded_listeners = tracker_.seeded_listeners();
  s.seed_unowned = tracker_.seed_unowned();
  return s;
}

}  // namespace svcmap::kernel
