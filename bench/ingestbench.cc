// svcmap-ingestbench: how many lifecycle events per second the agent's user
// side takes on one core, from the record to the flow tables.
//
//   svcmap-ingestbench [--events N] [--rounds R] [--source synthetic|kernel|both]
//
// Each event goes through kernel::IngestRecord (decode, reconcile with TCP's
// counters) into flow::Collector under a mutex: the agent's own sink. The
// workload is N/4 connections between 64 client and 16 server processes,
// each one connect, accept and two closes.
//
// synthetic: the records are built in memory first; only the ingest is timed.
// kernel: bench/producer.bpf.c writes them into a BPF ring buffer in one
// BPF_PROG_TEST_RUN per chunk, and libbpf's ring_buffer__consume() hands
// them over; only the consume is timed (the production is reported apart).
// The process runs pinned to CPU 0. Prints one JSON line per source.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sched.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fmt/format.h"
#include "svcmap/bpf_abi.h"  // before the skeleton, which holds its types
#include "producer.skel.h"
#include "svcmap/flow/collector.h"
#include "svcmap/kernel/event_decode.h"
#include "svcmap/kernel/libbpf_error.h"

namespace {

using Clock = std::chrono::steady_clock;
using svcmap::flow::Collector;
using svcmap::flow::SockEvent;

constexpr uint32_t kClients = 64, kServers = 16;

struct Args {
  uint64_t events = 2'000'000;
  int rounds = 5;
  std::string source = "both";
};

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "-h" || k == "--help") {
      std::printf("usage: svcmap-ingestbench [--events N] [--rounds R] "
                  "[--source synthetic|kernel|both]\n");
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "svcmap-ingestbench: %s needs a value\n", k.c_str());
      std::exit(2);
    }
    std::string v = argv[++i];
    if (k == "--events") a.events = std::max<uint64_t>(4, std::strtoull(v.c_str(), nullptr, 10) / 4 * 4);
    else if (k == "--rounds") a.rounds = std::max(1, std::atoi(v.c_str()));
    else if (k == "--source") a.source = v;
    else {
      std::fprintf(stderr, "svcmap-ingestbench: unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  if (a.source != "synthetic" && a.source != "kernel" && a.source != "both") {
    std::fprintf(stderr, "svcmap-ingestbench: --source synthetic|kernel|both\n");
    std::exit(2);
  }
  return a;
}

// The four record templates, by kind: connect and close of the client,
// accept and close of the server. Per-connection fields are filled later.
std::array<svcmap_event, 4> Templates() {
  std::array<svcmap_event, 4> t{};
  const uint8_t client_ip[4] = {10, 0, 0, 1}, server_ip[4] = {10, 0, 0, 2};
  for (int kind = 0; kind < 4; ++kind) {
    svcmap_event& e = t[kind];
    const bool client = kind == 0 || kind == 2;
    e.type = kind == 0 ? SVCMAP_EV_CONNECT : kind == 1 ? SVCMAP_EV_ACCEPT : SVCMAP_EV_CLOSE;
    e.netns = 4026531840u;
    e.tuple.family = 2;
    std::memcpy(e.tuple.saddr, client ? client_ip : server_ip, 4);
    std::memcpy(e.tuple.daddr, client ? server_ip : client_ip, 4);
    std::strcpy(e.owner.comm, client ? "app" : "mysqld");
    e.owner.cgroup_id = client ? 101 : 202;
    e.role = client ? SVCMAP_ROLE_CLIENT : SVCMAP_ROLE_SERVER;
    e.flags = SVCMAP_F_OWNED | SVCMAP_F_ESTABLISHED;
    if (kind >= 2) {
      e.bytes_sent = client ? 300 : 4000;
      e.bytes_received = client ? 4000 : 300;
      e.tcp_bytes_sent = e.bytes_sent;
      e.tcp_bytes_received = e.bytes_received;
      e.flags |= SVCMAP_F_TCP_COUNTERS;
    }
  }
  return t;
}

// Connection `conn`'s event of `kind`, as bench/producer.bpf.c writes it.
svcmap_event Make(const std::array<svcmap_event, 4>& t, uint64_t conn, int kind, uint64_t ts) {
  svcmap_event e = t[kind];
  if (kind == 0 || kind == 2) {
    e.sock_id = conn * 2 + 1;
    e.owner.tgid = 10000 + conn % kClients;
    e.tuple.sport = 32768 + conn % 28000;
    e.tuple.dport = 3306 + conn % kServers;
  } else {
    e.sock_id = conn * 2 + 2;
    e.owner.tgid = 20000 + conn % kServers;
    e.tuple.sport = 3306 + conn % kServers;
    e.tuple.dport = 32768 + conn % 28000;
  }
  e.owner.start_ns = uint64_t{e.owner.tgid} * 1'000'000'000ULL;
  e.ts_ns = ts;
  e.open_ns = ts - 1000;
  return e;
}

// The agent's state and sink (kernel::BpfBackend's batches into
// node::Session::OnEvents): a mutex and the collector. Naming happens on the
// session's worker, off this path.
struct Agent {
  std::mutex mu;
  Collector collector;
  svcmap::kernel::IngestCounters counters;
  std::vector<SockEvent> batch;
  void Ingest(const void* data, size_t size) {
    svcmap::kernel::IngestRecord({static_cast<const uint8_t*>(data), size}, batch, counters);
    if (batch.size() >= 64) Deliver();
  }
  void Deliver() {
    std::lock_guard<std::mutex> lock(mu);
    for (const SockEvent& ev : batch) collector.OnEvent(ev);
    batch.clear();
  }

  // The servers' listen events, first, as the agent would have seen them.
  void Listen(const std::array<svcmap_event, 4>& t) {
    for (uint32_t s = 0; s < kServers; ++s) {
      svcmap_event e = Make(t, s, 1, 1);
      e.type = SVCMAP_EV_LISTEN;
      e.role = SVCMAP_ROLE_LISTENER;
      e.sock_id = 1ULL << 40 | s;
      std::memset(e.tuple.daddr, 0, sizeof(e.tuple.daddr));
      e.tuple.dport = 0;
      Ingest(&e, sizeof(e));
    }
    Deliver();
  }
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void Synthetic(const Args& a) {
  const auto t = Templates();
  std::vector<svcmap_event> records;
  records.reserve(a.events);
  for (uint64_t i = 0; i < a.events; ++i) records.push_back(Make(t, i / 4, i % 4, 1'000'000 + i));
  std::vector<double> rates;
  uint64_t flows = 0;
  for (int r = 0; r < a.rounds; ++r) {
    auto agent = std::make_unique<Agent>();
    agent->Listen(t);
    auto t0 = Clock::now();
    for (const svcmap_event& e : records) agent->Ingest(&e, sizeof(e));
    agent->Deliver();
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    rates.push_back(static_cast<double>(a.events) / secs);
    if (agent->counters.decode_errors != 0) {
      std::fprintf(stderr, "svcmap-ingestbench: %lu records did not decode\n",
                   static_cast<unsigned long>(agent->counters.decode_errors.load()));
      std::exit(1);
    }
    flows = agent->collector.Flows(false).flows.size();
  }
  fmt::print("{{\"source\": \"synthetic\", \"events\": {}, \"rounds\": {}, "
             "\"events_per_s_median\": {:.0f}, \"events_per_s_min\": {:.0f}, "
             "\"events_per_s_max\": {:.0f}, \"flows\": {}}}\n",
             a.events, a.rounds, Median(rates), *std::min_element(rates.begin(), rates.end()),
             *std::max_element(rates.begin(), rates.end()), flows);
}

struct SkelDeleter {
  void operator()(producer_bpf* s) const { producer_bpf__destroy(s); }
};
struct RingDeleter {
  void operator()(ring_buffer* r) const { ring_buffer__free(r); }
};

int Kernel(const Args& a) {
  const auto t = Templates();
  std::unique_ptr<producer_bpf, SkelDeleter> skel(producer_bpf__open());
  if (!skel) {
    fmt::print(stderr, "svcmap-ingestbench: kernel source: {}\n",
               std::string(svcmap::kernel::LibbpfError(errno, "open producer").message()));
    return 1;
  }
  for (int k = 0; k < 4; ++k)
    std::memcpy(&skel->bss->tmpl[k], &t[k], sizeof(svcmap_event));
  skel->rodata->nr_clients = kClients;
  skel->rodata->nr_servers = kServers;
  if (int err = producer_bpf__load(skel.get())) {
    fmt::print(stderr, "svcmap-ingestbench: kernel source: {}\n",
               std::string(svcmap::kernel::LibbpfError(err, "load producer").message()));
    return 1;
  }
  // Chunks that fit the 64 MiB ring with room to spare (8-byte headers).
  const uint32_t chunk = 65536;
  std::vector<double> rates, produce_ns;
  for (int r = 0; r < a.rounds; ++r) {
    auto agent = std::make_unique<Agent>();
    agent->Listen(t);
    std::unique_ptr<ring_buffer, RingDeleter> ring(ring_buffer__new(
        bpf_map__fd(skel->maps.events),
        [](void* ctx, void* data, size_t size) {
          static_cast<Agent*>(ctx)->Ingest(data, size);
          return 0;
        },
        agent.get(), nullptr));
    if (!ring) {
      fmt::print(stderr, "svcmap-ingestbench: {}\n",
                 std::string(svcmap::kernel::LibbpfError(errno, "ring buffer").message()));
      return 1;
    }
    double consume_s = 0, produce_s = 0;
    uint64_t consumed = 0;
    for (uint64_t done = 0; done < a.events;) {
      uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(chunk, a.events - done));
      skel->bss->first_conn = done / 4;
      skel->bss->nr_events = n;
      LIBBPF_OPTS(bpf_test_run_opts, opts);
      auto p0 = Clock::now();
      if (int err = bpf_prog_test_run_opts(bpf_program__fd(skel->progs.produce), &opts)) {
        fmt::print(stderr, "svcmap-ingestbench: kernel source: {}\n",
                   std::string(svcmap::kernel::LibbpfError(err, "BPF_PROG_TEST_RUN raw_tp").message()));
        return 1;
      }
      auto c0 = Clock::now();
      int got = ring_buffer__consume(ring.get());
      agent->Deliver();
      auto c1 = Clock::now();
      if (got < 0) {
        fmt::print(stderr, "svcmap-ingestbench: ring_buffer__consume: {}\n", got);
        return 1;
      }
      consumed += static_cast<uint64_t>(got);
      produce_s += std::chrono::duration<double>(c0 - p0).count();
      consume_s += std::chrono::duration<double>(c1 - c0).count();
      done += n;
    }
    if (skel->bss->drops != 0 || consumed != a.events || agent->counters.decode_errors != 0) {
      fmt::print(stderr, "svcmap-ingestbench: {} events consumed of {}, {} dropped, {} bad\n",
                 consumed, a.events, skel->bss->drops, agent->counters.decode_errors.load());
      return 1;
    }
    rates.push_back(static_cast<double>(a.events) / consume_s);
    produce_ns.push_back(produce_s * 1e9 / static_cast<double>(a.events));
  }
  fmt::print("{{\"source\": \"kernel\", \"events\": {}, \"rounds\": {}, "
             "\"events_per_s_median\": {:.0f}, \"events_per_s_min\": {:.0f}, "
             "\"events_per_s_max\": {:.0f}, \"produce_ns_per_event\": {:.0f}}}\n",
             a.events, a.rounds, Median(rates), *std::min_element(rates.begin(), rates.end()),
             *std::max_element(rates.begin(), rates.end()), Median(produce_ns));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = Parse(argc, argv);
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(0, &set);
  sched_setaffinity(0, sizeof(set), &set);  // one core; best effort
  if (a.source != "kernel") Synthetic(a);
  if (a.source != "synthetic") return Kernel(a);
  return 0;
}
