#ifndef SVCMAP_KERNEL_BPF_BACKEND_H_
#define SVCMAP_KERNEL_BPF_BACKEND_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "svcmap/flow/sock.h"
#include "svcmap/kernel/backend.h"
#include "svcmap/kernel/event_decode.h"
#include "svcmap/kernel/feature_probe.h"
#include "svcmap/kernel/links.h"

struct svcmap_bpf;
struct ring_buffer;
struct bpf_link;

namespace svcmap::kernel {

struct BackendOptions {
  uint32_t max_sockets = 65536;             // socks map entries
  uint32_t ringbuf_bytes = 16u << 20;       // power of two
  uint32_t wakeup_bytes = 256u << 10;       // batch before waking the reader
  // Read TCP's own health of each connection (outcome, resets,
  // retransmits, RTT, connect latency); off only to measure what it costs.
  bool tcp_health = true;
  // Every connect and accept through the ring buffer (`svcmap trace`);
  // otherwise a connection's one record is its close.
  bool lifecycle_events = true;
};


// Owns the loaded programs (fentry, kprobe or tracepoint, per hook, as the
// probe selected), their links, the ring buffer and the thread that drains
// it. Destruction detaches everything; after it no link
// of ours remains. Events reach the sink on the drain thread, in order.
class BpfBackend final : public Backend {
 public:
  // Loads and attaches, per hook, the mechanism SelectBackend chose.
  static absl::StatusOr<std::unique_ptr<BpfBackend>> Create(
      const ProbeReport& probe, const BackendOptions& options);

  BpfBackend(const BpfBackend&) = delete;
  BpfBackend& operator=(const BpfBackend&) = delete;
  ~BpfBackend() override;

  // Starts the drain thread. Call once.
  absl::Status Start(EventSink sink) override;
  // Drains what is left, then stops the thread. Idempotent.
  void Stop() override;

  // Every socket the kernel is tracking now, with running byte totals
  // reconciled with TCP's own (see flow::ReconcileBytes).
  absl::Status RefreshLive() override;
  absl::Status ForEachLive(const LiveFn& fn) override;
  BackendStats Stats() const override;
  Progress DrainProgress() const override;
  // "tp_btf/inet_sock_set_state", ... : what is attached.
  const std::vector<std::string>& attached() const override { return attached_; }
  // Why the start-up seed did not run or was partial; empty if it ran.
  const std::string& seed_error() const { return seed_error_; }

 private:
  struct Passkey {};

 public:
  explicit BpfBackend(Passkey) {}

 private:
  struct SkelDeleter {
    void operator()(svcmap_bpf* s) const;
  };
  struct RingDeleter {
    void operator()(ring_buffer* r) const;
  };

  static int OnRecord(void* ctx, void* data, size_t size);
  // Gives the sockets that predate the hooks owners and entries: iter/tcp
  // per netns (when `iter_tcp`), then the file walk.
  absl::Status Seed(bool iter_tcp);
  // Every entry of the socks map, as it is now, to `fn`.
  absl::Status BatchRead(const LiveFn& fn);
  void DrainLoop();

  std::unique_ptr<svcmap_bpf, SkelDeleter> skel_;
  std::vector<LinkPtr> links_;
  // iter/task_file: the seed's second walk, and the live refresh of TCP's
  // counters; null where the kernel has none (live reads then carry the
  // hooks' counts only). walk_mu_ serializes walks (walk_mode is shared).
  LinkPtr files_link_;
  std::mutex walk_mu_;
  std::unique_ptr<ring_buffer, RingDeleter> ring_;
  std::vector<std::string> attached_;
  EventSink sink_;
  std::thread drainer_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> drained_unix_ns_{0};
  uint32_t records_ = 0;  // drain thread only
  // Decoded, not yet handed on (drain thread only); at most kBatch, so the
  // sink's lock is never held long.
  static constexpr size_t kBatch = 64;
  std::vector<flow::SockEvent> batch_;
  void Deliver();
  IngestCounters ingest_;
  // Written by Seed() before Start(), read-only afterwards.
  uint64_t seeded_sockets_ = 0, seeded_listeners_ = 0, seed_unowned_ = 0, seed_full_ = 0;
  uint64_t seed_rescued_ = 0;
  std::string seed_error_;
};

}  // namespace svcmap::kernel

#endif  // SVCMAP_KERNEL_BPF_BACKEND_H_
