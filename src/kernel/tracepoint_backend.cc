#include "svcmap/kernel/tracepoint_backend.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "fmt/format.h"
#include "svcmap.skel.h"
#include "svcmap/bpf_abi.h"
#include "svcmap/kernel/event_decode.h"
#include "svcmap/kernel/libbpf_error.h"

namespace svcmap::kernel {
namespace {

// One hook of this backend: its two entry points in bpf/svcmap.bpf.c.
struct HookPrograms {
  const char* probe_hook;  // name in the ProbeReport
  const char* target;
  bpf_program* btf;
  bpf_program* classic;
};

std::vector<HookPrograms> Hooks(svcmap_bpf* skel) {
  return {
      {"connect", "sock/inet_sock_set_state", skel->progs.btf_set_state,
       skel->progs.tp_set_state},
      {"send", "sock/sock_send_length", skel->progs.btf_send, skel->progs.tp_send},
      {"recv", "sock/sock_recv_length", skel->progs.btf_recv, skel->progs.tp_recv},
      {"close", "tcp/tcp_destroy_sock", skel->progs.btf_destroy, skel->progs.tp_destroy},
  };
}

}  // namespace

void TracepointBackend::SkelDeleter::operator()(svcmap_bpf* s) const {
  svcmap_bpf__destroy(s);
}
void TracepointBackend::RingDeleter::operator()(ring_buffer* r) const {
  ring_buffer__free(r);
}
void TracepointBackend::LinkDeleter::operator()(bpf_link* l) const {
  bpf_link__destroy(l);
}


absl::StatusOr<std::unique_ptr<TracepointBackend>> TracepointBackend::Create(
    const ProbeReport& probe, const BackendOptions& options) {
  if (probe.backend != "tracepoint")
    return absl::FailedPreconditionError(
        fmt::format("tracepoint backend unavailable: {}", probe.backend_reason));

  auto backend = std::make_unique<TracepointBackend>(Passkey{});
  backend->skel_.reset(svcmap_bpf__open());
  if (!backend->skel_) return LibbpfError(errno, "open BPF object svcmap");
  svcmap_bpf* skel = backend->skel_.get();

  const std::vector<HookPrograms> hooks = Hooks(skel);
  skel->rodata->wakeup_bytes = options.wakeup_bytes;
  if (int err = bpf_map__set_max_entries(skel->maps.socks, options.max_sockets))
    return LibbpfError(err, "size socks map");
  if (int err = bpf_map__set_max_entries(skel->maps.events, options.ringbuf_bytes))
    return LibbpfError(err, "size ring buffer");

  // Only the form the probe picked is loaded; a hook with no usable form
  // loads neither and its data is simply missing (probe says so).
  for (const HookPrograms& h : hooks) {
    std::optional<Mechanism> m = probe.Chosen(h.probe_hook);
    bpf_program__set_autoload(h.btf, m == Mechanism::kTpBtf);
    bpf_program__set_autoload(h.classic, m == Mechanism::kTracepoint);
  }
  if (int err = svcmap_bpf__load(skel)) return LibbpfError(err, "load BPF object svcmap");

  for (const HookPrograms& h : hooks) {
    std::optional<Mechanism> m = probe.Chosen(h.probe_hook);
    if (!m) continue;
    bpf_program* prog = m == Mechanism::kTpBtf ? h.btf : h.classic;
    std::string what = fmt::format("{}/{}", MechanismName(*m), h.target);
    bpf_link* link = bpf_program__attach(prog);
    if (link == nullptr) return LibbpfError(errno, fmt::format("attach {}", what));
    backend->links_.emplace_back(link);
    backend->attached_.push_back(std::move(what));
  }

  backend->ring_.reset(ring_buffer__new(bpf_map__fd(skel->maps.events),
                                        &TracepointBackend::OnRecord, backend.get(), nullptr));
  if (!backend->ring_) return LibbpfError(errno, "create ring buffer reader");
  return backend;
}

TracepointBackend::~TracepointBackend() {
  Stop();
  // Links before the skeleton: detach, then unload.
  links_.clear();
  ring_.reset();
  skel_.reset();
}

absl::Status TracepointBackend::Start(EventSink sink) {
  if (drainer_.joinable()) return absl::FailedPreconditionError("already started");
  sink_ = std::move(sink);
  drainer_ = std::thread([this] { DrainLoop(); });
  return absl::OkStatus();
}

void TracepointBackend::DrainLoop() {
  // The kernel wakes us only once wakeup_bytes have built up (batching), so
  // the timeout doubles as the latency bound for a trickle of events, and
  // consume() picks up what arrived without a wakeup.
  while (!stop_.load(std::memory_order_acquire)) {
    int n = ring_buffer__poll(ring_.get(), 100);
    if (n < 0 && n != -EINTR) break;
    ring_buffer__consume(ring_.get());
  }
  ring_buffer__consume(ring_.get());
}

void TracepointBackend::Stop() {
  stop_.store(true, std::memory_order_release);
  if (drainer_.joinable()) drainer_.join();
}

int TracepointBackend::OnRecord(void* ctx, void* data, size_t size) {
  auto* self = static_cast<TracepointBackend*>(ctx);
  absl::StatusOr<flow::SockEvent> ev =
      DecodeEvent({static_cast<const uint8_t*>(data), size});
  if (!ev.ok()) {
    self->decode_errors_.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  if (ev->tcp && flow::ReconcileBytes(*ev->tcp, ev->sock))
    self->tcp_corrected_.fetch_add(1, std::memory_order_relaxed);
  if (self->sink_) self->sink_(*ev);
  return 0;
}

absl::StatusOr<std::vector<flow::SockRecord>> TracepointBackend::ReadLive() const {
  int fd = bpf_map__fd(skel_->maps.socks);
  constexpr uint32_t kBatch = 1024;
  std::vector<uint64_t> keys(kBatch);
  std::vector<svcmap_sock_state> values(kBatch);
  std::vector<flow::SockRecord> out;
  // A batch walk is by hash bucket, so concurrent inserts and deletes by the
  // programs do not restart it; the set guards against a socket reported
  // twice anyway. Userspace never writes this map, so nothing is lost.
  absl::flat_hash_set<uint64_t> seen;
  uint64_t in_batch = 0, out_batch = 0;
  bool first = true;
  for (;;) {
    uint32_t count = kBatch;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    int err = bpf_map_lookup_batch(fd, first ? nullptr : &in_batch, &out_batch,
                                   keys.data(), values.data(), &count, &opts);
    int saved = errno;
    for (uint32_t i = 0; i < count; ++i)
      if (seen.insert(keys[i]).second) out.push_back(DecodeSockState(keys[i], values[i]));
    if (err) {
      if (saved == ENOENT) break;  // end of map
      return LibbpfError(saved, "read socks map");
    }
    in_batch = out_batch;
    first = false;
  }
  return out;
}

BackendStats TracepointBackend::Stats() const {
  BackendStats s;
  int fd = bpf_map__fd(skel_->maps.stats);
  int ncpu = libbpf_num_possible_cpus();
  std::vector<uint64_t> per_cpu(ncpu > 0 ? ncpu : 1);
  uint64_t* fields[SVCMAP_STAT_MAX] = {&s.ringbuf_drops, &s.socks_full, &s.events,
                                       &s.unowned_close};
  for (uint32_t i = 0; i < SVCMAP_STAT_MAX; ++i) {
    if (bpf_map_lookup_elem(fd, &i, per_cpu.data()) != 0) continue;
    for (uint64_t v : per_cpu) *fields[i] += v;
  }
  s.decode_errors = decode_errors_.load(std::memory_order_relaxed);
  s.tcp_corrected = tcp_corrected_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace svcmap::kernel
