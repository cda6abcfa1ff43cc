#include "svcmap/kernel/bpf_backend.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "fmt/format.h"
#include "svcmap.skel.h"
#include "svcmap/bpf_abi.h"
#include "svcmap/kernel/event_decode.h"
#include "svcmap/kernel/libbpf_error.h"
#include "svcmap/scan/netns.h"
#include "svcmap/scan/owners.h"

namespace svcmap::kernel {
namespace {

// One hook and its entry points in bpf/svcmap.bpf.c, per mechanism. A null
// program means that mechanism is served by the state tracepoint.
struct HookPrograms {
  const char* hook;  // name in the ProbeReport
  const char* target;
  bpf_program* fentry;
  bpf_program* kprobe;
  bpf_program* kprobe_entry;  // kprobe half of a kretprobe pair, if any
  bpf_program* btf;
  bpf_program* classic;
  bpf_program* classic_twin = nullptr;  // attached beside `classic`
};

std::vector<HookPrograms> Hooks(svcmap_bpf* skel) {
  auto& p = skel->progs;
  return {
      {"connect", "tcp_connect", p.fentry_connect, p.kprobe_connect, nullptr, nullptr, nullptr},
      {"accept", "inet_csk_accept", p.fexit_accept, p.kretprobe_accept, nullptr, nullptr,
       p.tp_accept4, p.tp_accept},
      {"send", "tcp_sendmsg", p.fexit_send, p.kretprobe_send, p.kprobe_send, p.btf_send,
       p.tp_send},
      {"recv", "tcp_recvmsg", p.fexit_recv, p.kretprobe_recv, p.kprobe_recv, p.btf_recv,
       p.tp_recv},
      {"close", "tcp_v4_destroy_sock", p.fentry_destroy, p.kprobe_destroy, nullptr,
       p.btf_destroy, p.tp_destroy},
  };
}

std::string TracepointName(const HookPrograms& h) {
  if (std::string_view(h.hook) == "send") return "sock/sock_send_length";
  if (std::string_view(h.hook) == "recv") return "sock/sock_recv_length";
  if (std::string_view(h.hook) == "close") return "tcp/tcp_destroy_sock";
  if (std::string_view(h.hook) == "accept") return "syscalls/sys_exit_accept4";
  return "sock/inet_sock_set_state";
}

// The number of parameters of a kernel function, from vmlinux BTF, or
// `fallback` when it cannot be read.
uint32_t FuncArgCount(const btf* vmlinux, const char* name, uint32_t fallback) {
  if (vmlinux == nullptr) return fallback;
  int id = btf__find_by_name_kind(vmlinux, name, BTF_KIND_FUNC);
  if (id < 0) return fallback;
  const btf_type* func = btf__type_by_id(vmlinux, id);
  const btf_type* proto = func ? btf__type_by_id(vmlinux, func->type) : nullptr;
  return proto ? btf_vlen(proto) : fallback;
}

// Runs the iterator behind `link` over the calling thread's netns. Its
// program writes nothing, so one read() runs the whole walk and the kernel
// never stops it mid-bucket (see seed_socks in bpf/svcmap.bpf.c). False when
// the walk was cut short (EAGAIN past the kernel's million objects per read).
absl::StatusOr<bool> WalkIterator(bpf_link* link) {
  int fd = bpf_iter_create(bpf_link__fd(link));
  if (fd < 0) return LibbpfError(errno, "create iter/tcp");
  uint8_t buf[64];
  bool complete = true;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    complete = n == 0;
    if (n <= 0) break;
  }
  close(fd);
  return complete;
}

}  // namespace

void BpfBackend::SkelDeleter::operator()(svcmap_bpf* s) const {
  svcmap_bpf__destroy(s);
}
void BpfBackend::RingDeleter::operator()(ring_buffer* r) const {
  ring_buffer__free(r);
}


absl::StatusOr<std::unique_ptr<BpfBackend>> BpfBackend::Create(
    const ProbeReport& probe, const BackendOptions& options) {
  if (probe.backend.empty() || !probe.state_form)
    return absl::FailedPreconditionError(
        fmt::format("no usable BPF backend: {}", probe.backend_reason));

  auto backend = std::make_unique<BpfBackend>(Passkey{});
  backend->skel_.reset(svcmap_bpf__open());
  if (!backend->skel_) return LibbpfError(errno, "open BPF object svcmap");
  svcmap_bpf* skel = backend->skel_.get();

  const std::vector<HookPrograms> hooks = Hooks(skel);
  skel->rodata->wakeup_bytes = options.wakeup_bytes;
  skel->rodata->tcp_health = options.tcp_health;
  skel->rodata->lifecycle_events = options.lifecycle_events;
  // With the accepting process known from accept itself, the send and
  // receive hooks would only repeat what TCP's counters say; the probe
  // marks them not needed then.
  const bool io_hooks = probe.Loads("send") && probe.Loads("recv");
  skel->rodata->io_hooks = io_hooks;
  skel->rodata->accept_hooked = probe.AcceptInProcess();
  std::optional<Mechanism> connect = probe.Chosen("connect");
  skel->rodata->connect_hooked =
      connect == Mechanism::kFentry || connect == Mechanism::kKprobe;
  {
    btf* vmlinux = btf__load_vmlinux_btf();
    skel->rodata->accept_nargs = FuncArgCount(vmlinux, "inet_csk_accept", 2);
    skel->rodata->recvmsg_nargs = FuncArgCount(vmlinux, "tcp_recvmsg", 5);
    btf__free(vmlinux);
  }
  const bool iter_tcp = probe.iter_tcp.ok, iter_task_file = probe.iter_task_file.ok;
  if (int err = bpf_map__set_max_entries(skel->maps.socks, options.max_sockets))
    return LibbpfError(err, "size socks map");
  if (int err = bpf_map__set_max_entries(skel->maps.events, options.ringbuf_bytes))
    return LibbpfError(err, "size ring buffer");
  if (int err = bpf_map__set_max_entries(skel->maps.seed_owners, options.max_sockets))
    return LibbpfError(err, "size seed_owners map");

  // Only what the selection picked is loaded; a hook with no usable
  // mechanism loads nothing and its data is simply missing (probe says so).
  struct Use {
    bpf_program* prog;
    std::string what;
  };
  std::vector<Use> use;
  bpf_program* state =
      probe.state_form == Mechanism::kTpBtf ? skel->progs.btf_set_state : skel->progs.tp_set_state;
  use.push_back({state, fmt::format("{}/sock/inet_sock_set_state",
                                    MechanismName(probe.state_form.value_or(Mechanism::kTpBtf)))});
  for (const HookPrograms& h : hooks) {
    std::optional<Mechanism> m = probe.Chosen(h.hook);
    if (!m) continue;
    const std::string_view hook = h.hook;
    if (!probe.Loads(hook)) continue;
    // accept on the state tracepoint rides on the state program above.
    if (hook == "accept" && IsTracepoint(*m) && !probe.AcceptInProcess()) continue;
    std::string what = m == Mechanism::kFentry || m == Mechanism::kKprobe
                           ? fmt::format("{}/{}", MechanismName(*m), h.target)
                           : fmt::format("{}/{}", MechanismName(*m), TracepointName(h));
    switch (*m) {
      case Mechanism::kFentry: use.push_back({h.fentry, what}); break;
      case Mechanism::kKprobe:
        if (h.kprobe_entry) use.push_back({h.kprobe_entry, what + " (entry)"});
        use.push_back({h.kprobe, what});
        break;
      case Mechanism::kTpBtf:
        if (h.btf) use.push_back({h.btf, what});
        break;
      case Mechanism::kTracepoint:
        if (h.classic) use.push_back({h.classic, what});
        if (h.classic_twin) use.push_back({h.classic_twin, "tracepoint/syscalls/sys_exit_accept"});
        break;
    }
  }
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, skel->obj) bpf_program__set_autoload(prog, false);
  bpf_program__set_autoload(skel->progs.seed_socks, iter_tcp);
  // Forks name short-lived children; tp_btf only (see btf_fork). Optional:
  // without it they are named from /proc, when they live long enough.
  const bool forks = probe.state_form == Mechanism::kTpBtf;
  bpf_program__set_autoload(skel->progs.btf_fork, forks);
  bpf_program__set_autoload(skel->progs.walk_files, iter_task_file);
  for (const Use& u : use) bpf_program__set_autoload(u.prog, true);
  if (int err = svcmap_bpf__load(skel)) return LibbpfError(err, "load BPF object svcmap");

  for (const Use& u : use) {
    bpf_link* link = bpf_program__attach(u.prog);
    if (link == nullptr) return LibbpfError(errno, fmt::format("attach {}", u.what));
    backend->links_.emplace_back(link);
    backend->attached_.push_back(u.what);
  }

  if (forks) {
    if (bpf_link* link = bpf_program__attach(skel->progs.btf_fork)) {
      backend->links_.emplace_back(link);
      backend->attached_.push_back("tp_btf/sched/sched_process_fork");
    }
  }

  if (iter_task_file) {
    backend->files_link_.reset(bpf_program__attach_iter(skel->progs.walk_files, nullptr));
    if (!backend->files_link_) return LibbpfError(errno, "attach iter/task_file");
  }

  backend->ring_.reset(ring_buffer__new(bpf_map__fd(skel->maps.events),
                                        &BpfBackend::OnRecord, backend.get(), nullptr));
  if (!backend->ring_) return LibbpfError(errno, "create ring buffer reader");

  // Everything is attached: a socket opened from here on is the hooks'.
  // Now the ones that were already there.
  if (!iter_tcp && !iter_task_file)
    backend->seed_error_ = fmt::format("iter/tcp: {}; iter/task_file: {}", probe.iter_tcp.reason,
                                       probe.iter_task_file.reason);
  else if (absl::Status s = backend->Seed(iter_tcp); !s.ok())
    backend->seed_error_ = std::string(s.message());
  return backend;
}

absl::Status BpfBackend::Seed(bool iter_tcp) {
  svcmap_bpf* skel = skel_.get();
  const int counts_fd = bpf_map__fd(skel->maps.seed_counts);
  auto count = [&](uint32_t verdict) {
    uint64_t v = 0;
    bpf_map_lookup_elem(counts_fd, &verdict, &v);
    return v;
  };
  absl::Status status = absl::OkStatus();
  if (iter_tcp) {
    // The owners iter/tcp cannot see, from /proc/<pid>/fd, by socket inode.
    scan::SocketOwners owners = scan::ScanSocketOwners(nullptr);
    int owners_fd = bpf_map__fd(skel->maps.seed_owners);
    for (const auto& [ino, owner] : owners.by_inode) {
      svcmap_owner o{};
      o.tgid = owner.process.pid;
      o.start_ns = owner.process.start_ns;
      o.cgroup_id = owner.cgroup_id;
      std::memcpy(o.comm, owner.comm.data(), std::min(owner.comm.size(), sizeof(o.comm) - 1));
      if (bpf_map_update_elem(owners_fd, &ino, &o, BPF_ANY) != 0) ++seed_full_;
    }
    LinkPtr link(
        bpf_program__attach_iter(skel->progs.seed_socks, nullptr));
    if (!link) return LibbpfError(errno, "attach iter/tcp");
    // iter/tcp walks the netns of whoever creates the iterator; a namespace
    // that vanished had nothing left to seed.
    for (const scan::NetnsRef& ns : scan::ListNetns().namespaces) {
      (void)scan::RunInNetns(ns.path, [&] {
        absl::StatusOr<bool> complete = WalkIterator(link.get());
        if (!complete.ok()) status = complete.status();
      });
    }
    // The owners were only for this walk.
    for (const auto& [ino, owner] : owners.by_inode) bpf_map_delete_elem(owners_fd, &ino);
  }
  // Then every socket a process holds that the walks above did not track
  // (iter/tcp can skip one; see walk_files in bpf/svcmap.bpf.c), owned by
  // that process. Listeners first came from iter/tcp, so roles hold.
  if (files_link_) {
    skel->bss->walk_mode = SVCMAP_WALK_SEED;
    absl::StatusOr<bool> complete = WalkIterator(files_link_.get());
    skel->bss->walk_mode = SVCMAP_WALK_REFRESH;
    if (!complete.ok()) status = complete.status();
  }
  seeded_sockets_ = count(SVCMAP_SEED_SOCK) + count(SVCMAP_SEED_RESCUED);
  seed_rescued_ = count(SVCMAP_SEED_RESCUED);
  seeded_listeners_ = count(SVCMAP_SEED_LISTENER);
  seed_unowned_ = count(SVCMAP_SEED_UNOWNED);
  // SVCMAP_SEED_FULL sockets were counted by the kernel side as refused.
  return status;
}

BpfBackend::~BpfBackend() {
  Stop();
  // Links before the skeleton: detach, then unload.
  DetachAll(links_);
  files_link_.reset();
  ring_.reset();
  skel_.reset();
}

absl::Status BpfBackend::Start(EventSink sink) {
  if (drainer_.joinable()) return absl::FailedPreconditionError("already started");
  sink_ = std::move(sink);
  drainer_ = std::thread([this] { DrainLoop(); });
  return absl::OkStatus();
}

void BpfBackend::DrainLoop() {
  // The kernel wakes us only once wakeup_bytes have built up (batching), so
  // the timeout doubles as the latency bound for a trickle of events, and
  // consume() picks up what arrived without a wakeup.
  draining_.store(true, std::memory_order_release);
  while (!stop_.load(std::memory_order_acquire)) {
    drained_unix_ns_.store(absl::GetCurrentTimeNanos(), std::memory_order_relaxed);
    int n = ring_buffer__poll(ring_.get(), 100);
    Deliver();
    if (n < 0 && n != -EINTR) break;
    ring_buffer__consume(ring_.get());
    Deliver();
  }
  ring_buffer__consume(ring_.get());
  Deliver();
  draining_.store(false, std::memory_order_release);
}

void BpfBackend::Deliver() {
  if (batch_.empty()) return;
  if (sink_) sink_(batch_);
  batch_.clear();
}

Backend::Progress BpfBackend::DrainProgress() const {
  return {draining_.load(std::memory_order_acquire),
          absl::FromUnixNanos(drained_unix_ns_.load(std::memory_order_relaxed))};
}

void BpfBackend::Stop() {
  stop_.store(true, std::memory_order_release);
  if (drainer_.joinable()) drainer_.join();
}

int BpfBackend::OnRecord(void* ctx, void* data, size_t size) {
  auto* self = static_cast<BpfBackend*>(ctx);
  // Progress is also stamped here, every 64 records: ring_buffer__poll()
  // keeps consuming while records keep coming, so under a steady load one
  // poll can last longer than /healthz's stall bound (seen: 17 s with 50
  // readers under ASan) while the drain is working all along.
  if ((++self->records_ & 63) == 0)
    self->drained_unix_ns_.store(absl::GetCurrentTimeNanos(), std::memory_order_relaxed);
  IngestRecord({static_cast<const uint8_t*>(data), size}, self->batch_, self->ingest_);
  // Handed on a batch at a time, and at once when the ring is empty: poll()
  // returns only then, which under a steady load may be a long time.
  if (self->batch_.size() >= kBatch) self->Deliver();
  return 0;
}

absl::Status BpfBackend::RefreshLive() {
  // TCP's own counters into every tracked entry; one walk covers every
  // namespace. Should it fail, the hooks' counts still stand: the entries
  // are read either way.
  if (files_link_) {
    std::lock_guard<std::mutex> lock(walk_mu_);
    (void)WalkIterator(files_link_.get());
  }
  return absl::OkStatus();
}

absl::Status BpfBackend::ForEachLive(const LiveFn& fn) {
  // Userspace never writes the map, and the hooks' counters are atomic
  // adds, so reading loses nothing.
  return BatchRead(fn);
}

absl::Status BpfBackend::BatchRead(const LiveFn& fn) {
  const int fd = bpf_map__fd(skel_->maps.socks);
  // The hash map's batch cursor is a bucket index; a bucket holding more
  // entries than fit in one call is ENOSPC, and the call is made again
  // with room for more. Chunks keep the memory small whatever the table.
  uint32_t chunk = 4096;
  std::vector<uint64_t> keys(chunk);
  std::vector<svcmap_sock_state> values(chunk);
  uint64_t cursor = 0;
  bool first = true;
  for (;;) {
    uint32_t count = chunk;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    int err = bpf_map_lookup_batch(fd, first ? nullptr : &cursor, &cursor, keys.data(),
                                   values.data(), &count, &opts);
    err = err < 0 ? errno : 0;
    if (err != 0 && err != ENOENT) {
      if (err == ENOSPC && count == 0 && chunk < (1u << 20)) {
        chunk *= 2;
        keys.resize(chunk);
        values.resize(chunk);
        continue;
      }
      return LibbpfError(err, "batch lookup of the socks map");
    }
    first = false;
    for (uint32_t i = 0; i < count; ++i) {
      // Its close is queued, perhaps taken already (FlowTable::BeginClose).
      if (values[i].destroyed) continue;
      absl::StatusOr<flow::SockRecord> r = DecodeLive(keys[i], values[i]);
      if (r.ok())
        fn(*r);
      else
        ingest_.decode_errors.fetch_add(1, std::memory_order_relaxed);
    }
    if (err == ENOENT) break;  // past the last bucket
  }
  return absl::OkStatus();
}

BackendStats BpfBackend::Stats() const {
  BackendStats s;
  int fd = bpf_map__fd(skel_->maps.stats);
  int ncpu = libbpf_num_possible_cpus();
  std::vector<uint64_t> per_cpu(ncpu > 0 ? ncpu : 1);
  uint64_t* fields[SVCMAP_STAT_MAX] = {&s.ringbuf_drops, &s.socks_full,   &s.events,
                                       &s.unowned_close, &s.track_errors, &s.connect_end_unseen,
                                       &s.established_unseen};
  for (uint32_t i = 0; i < SVCMAP_STAT_MAX; ++i) {
    if (bpf_map_lookup_elem(fd, &i, per_cpu.data()) != 0) continue;
    for (uint64_t v : per_cpu) *fields[i] += v;
  }
  // The kernel's own count (5.12+; 0 before): a program it did not run
  // because one of ours was running on that CPU already, such as a state
  // change in a softirq that interrupted a process-context program.
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    const int prog_fd = bpf_program__fd(prog);
    if (prog_fd < 0) continue;
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) == 0)
      s.recursion_misses += info.recursion_misses;
  }
  s.decode_errors = ingest_.decode_errors.load(std::memory_order_relaxed);
  s.seeded_sockets = seeded_sockets_;
  s.seeded_listeners = seeded_listeners_;
  s.seed_unowned = seed_unowned_;
  s.seed_rescued = seed_rescued_;
  s.socks_full += seed_full_;
  s.tcp_corrected = ingest_.tcp_corrected.load(std::memory_order_relaxed);
  return s;
}

}  // namespace svcmap::kernel
