// svcmap-topobench: the cross-machine join on synthetic data.
//
//   svcmap-topobench [--services N] [--edges M] [--machines K] [--rounds R]
//
// N service instances over K machines, each listening on one or two ports;
// M connections between random instances (one in 20 to an address nobody
// owns, one in 50 through a DNAT). Times topology::Join plus the JSON
// rendering of its graph, and reports the process's peak RSS (ru_maxrss),
// which includes building the input. One JSON line.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "fmt/format.h"
#include "svcmap/topology/graph.h"
#include "svcmap/topology/writers.h"

namespace {

using Clock = std::chrono::steady_clock;
using svcmap::topology::Connection;
using svcmap::topology::Instance;
using svcmap::topology::Observations;

Observations Make(int services, int edges, int machines, uint32_t seed) {
  std::mt19937 rng(seed);
  Observations o;
  o.instances.reserve(services);
  for (int i = 0; i < services; ++i) {
    Instance in;
    const int m = i % machines;
    in.machine = fmt::format("node-{}", m);
    in.instance_ip = fmt::format("10.{}.{}.{}", m / 65536 % 256, m / 256 % 256, m % 256);
    in.name = fmt::format("svc-{}", i);
    in.instance_id = in.name + "@" + in.instance_ip;
    in.pid = 1000 + i;
    in.listen_ports = {static_cast<uint16_t>(8000 + i / machines % 1000)};
    if (i % 3 == 0) in.listen_ports.push_back(static_cast<uint16_t>(9000 + i / machines % 1000));
    o.instances.push_back(std::move(in));
  }
  std::uniform_int_distribution<int> pick(0, services - 1);
  o.connections.reserve(edges);
  for (int e = 0; e < edges; ++e) {
    const Instance& src = o.instances[pick(rng)];
    const Instance& dst = o.instances[pick(rng)];
    Connection c;
    c.src_instance_id = src.instance_id;
    c.src_service_name = src.name;
    c.src_machine = src.machine;
    c.src_ip = src.instance_ip;
    if (e % 20 == 0) {
      c.dst_ip = fmt::format("203.0.{}.{}", e / 256 % 256, e % 256);
      c.dst_port = 443;
    } else if (e % 50 == 1) {
      c.dst_ip = fmt::format("10.96.{}.{}", e / 256 % 256, e % 256);
      c.dst_port = 80;
      c.actual_dst_ip = dst.instance_ip;
      c.actual_dst_port = dst.listen_ports[0];
    } else {
      c.dst_ip = dst.instance_ip;
      c.dst_port = dst.listen_ports.back();
    }
    c.bytes_sent = 1000 + e;
    c.bytes_received = 5000 + e;
    c.connections = 1 + e % 7;
    o.connections.push_back(std::move(c));
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  int services = 10000, edges = 100000, machines = 500, rounds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    int v = std::atoi(argv[i + 1]);
    if (k == "--services") services = v;
    else if (k == "--edges") edges = v;
    else if (k == "--machines") machines = v;
    else if (k == "--rounds") rounds = v;
    else {
      std::fprintf(stderr, "svcmap-topobench: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (services < 1 || edges < 1 || machines < 1 || rounds < 1) {
    std::fprintf(stderr, "svcmap-topobench: counts must be positive\n");
    return 2;
  }
  Observations obs = Make(services, edges, machines, 42);
  std::vector<double> join_s, total_s;
  size_t graph_edges = 0, json_bytes = 0, unmatched = 0;
  for (int r = 0; r < rounds; ++r) {
    auto t0 = Clock::now();
    svcmap::topology::Graph g = svcmap::topology::Join(obs);
    auto t1 = Clock::now();
    std::string json = svcmap::topology::GraphJson(g).dump();
    auto t2 = Clock::now();
    join_s.push_back(std::chrono::duration<double>(t1 - t0).count());
    total_s.push_back(std::chrono::duration<double>(t2 - t0).count());
    graph_edges = g.edges.size();
    unmatched = g.unmatched.size();
    json_bytes = json.size();
  }
  std::sort(join_s.begin(), join_s.end());
  std::sort(total_s.begin(), total_s.end());
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  fmt::print("{{\"services\": {}, \"connections\": {}, \"machines\": {}, \"edges\": {}, "
             "\"unmatched\": {}, \"json_bytes\": {}, \"join_s_median\": {:.3f}, "
             "\"join_and_json_s_median\": {:.3f}, \"peak_rss_mib\": {:.1f}}}\n",
             services, edges, machines, graph_edges, unmatched, json_bytes,
             join_s[join_s.size() / 2], total_s[total_s.size() / 2], ru.ru_maxrss / 1024.0);
  return 0;
}
