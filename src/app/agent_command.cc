// `svcmap agent`: one daemon per node. A node::Session traces until
// SIGTERM/SIGINT; every HTTP request is answered from a frame (shared by
// the requests that arrive together, rendered outside the collector's
// lock), and every --push-interval a frame's metrics go to the store.
#include <malloc.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fmt/format.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "svcmap/app/commands.h"
#include "svcmap/app/health.h"
#include "svcmap/app/host_info.h"
#include "svcmap/app/map_page.h"
#include "svcmap/app/session_setup.h"
#include "svcmap/base/log.h"
#include "svcmap/export/remote_write.h"
#include "svcmap/net/web_config.h"
#include "svcmap/topology/graph.h"
#include "svcmap/topology/sources.h"
#include "svcmap/topology/writers.h"

namespace svcmap::app {
namespace {

// Like WaitForSignal, and SIGHUP too: the signal that came, or 0 when
// `deadline` passed first.
int WaitForAgentSignal(absl::Time deadline) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  for (;;) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return 0;
    timespec ts = absl::ToTimespec(left);
    int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig > 0) return sig;
    if (errno != EINTR && errno != EAGAIN) return 0;
  }
}

// --check-config: everything the agent would refuse at start, without root
// and without loading anything (a manifest's args, a unit's flags).
// A client certificate that does not load is known before the first push.
absl::Status CheckRemoteWriteClient(const Options& o) {
  if (o.remote_write_url.empty()) return absl::OkStatus();
  absl::StatusOr<net::Url> url = net::ParseUrl(o.remote_write_url);
  if (!url.ok())
    return absl::InvalidArgumentError(fmt::format("--remote-write {}", std::string(url.status().message())));
  absl::StatusOr<net::HttpClient> c = net::HttpClient::Create(*url, o.remote_write_http);
  if (!c.ok())
    return absl::InvalidArgumentError(fmt::format("--remote-write {}", std::string(c.status().message())));
  return absl::OkStatus();
}

absl::StatusOr<net::WebConfig> WebConfigOf(const Options& o) {
  if (o.web_config_path.empty()) return net::WebConfig{};
  absl::StatusOr<net::WebConfig> web = net::LoadWebConfig(o.web_config_path);
  if (web.ok() && !web->basic_auth_users.empty() && !web->tls)
    Log(LogLevel::kWarn, "--web.config.file {}: basic auth without TLS sends passwords in the "
        "clear", o.web_config_path);
  return web;
}

absl::Status CheckAgentConfig(const Options& o) {
  absl::StatusOr<identity::ServiceNamer> namer = MakeNamer(o);
  if (!namer.ok()) return namer.status();
  if (absl::Status s = CheckRemoteWriteClient(o); !s.ok()) return s;
  absl::StatusOr<net::WebConfig> web = WebConfigOf(o);
  if (!web.ok()) return web.status();
  if (absl::StatusOr<std::unique_ptr<httplib::Server>> srv = net::MakeServer(*web); !srv.ok())
    return srv.status();
  if (!o.netns_path.empty())
    if (absl::StatusOr<uint32_t> ino = NetnsInode(o.netns_path); !ino.ok()) return ino.status();
  for (const std::string& url : o.map_agents)
    if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
      return absl::InvalidArgumentError(fmt::format("--map-agents {:?}: want http://host:port", url));
  fmt::print("svcmap: config ok: listen {}{}, {} naming rules, remote write {}, push every {}\n",
             o.listen,
             web->tls ? (web->basic_auth_users.empty() ? " (https)" : " (https, basic auth)")
                      : (web->basic_auth_users.empty() ? "" : " (basic auth)"),
             o.name_rules.size(), o.remote_write_url.empty() ? "off" : o.remote_write_url,
             absl::FormatDuration(o.push_interval));
  return absl::OkStatus();
}

// SIGHUP: the naming rules and pod list again, from the same flags and
// config file; on any error the old ones stay.
void ReloadNaming(const Options& o, node::Session& session) {
  absl::StatusOr<ParseResult> again = ParseOptions(o.args);
  if (!again.ok()) {
    Log(LogLevel::kError, "SIGHUP: keeping the old naming rules: {}",
        std::string(again.status().message()));
    return;
  }
  absl::StatusOr<identity::ServiceNamer> fresh = MakeNamer(again->options);
  if (!fresh.ok()) {
    Log(LogLevel::kError, "SIGHUP: keeping the old naming rules: {}",
        std::string(fresh.status().message()));
    return;
  }
  session.SetNamer(*std::move(fresh));
  Log(LogLevel::kInfo, "SIGHUP: {} naming rules loaded", again->options.name_rules.size());
}

// Serves `text`, which lives in `frame`, without copying it: the frame is
// held until the response is written.
void ServeFrameText(httplib::Response& res, std::shared_ptr<const node::Frame> frame,
                    const std::string& text, const char* type) {
  res.set_content_provider(
      text.size(), type,
      [frame, &text](size_t offset, size_t length, httplib::DataSink& sink) {
        const size_t n = std::min(length, text.size() - offset);
        return sink.write(text.data() + offset, n);
      });
}

}  // namespace

absl::Status RunAgent(const Options& o) {
  if (o.check_config) return CheckAgentConfig(o);
  if (absl::Status s = CheckRemoteWriteClient(o); !s.ok()) return s;
  if (absl::Status s = CheckRoot(); !s.ok()) return s;
  // Each HTTP worker thread would get a malloc arena of its own and keep
  // the peak of what it rendered: measured, RSS grew by ~20 MB per scrape
  // with 65,536 connections. Two arenas, and memory given back after each
  // frame's text is written.
  mallopt(M_ARENA_MAX, 2);
  absl::StatusOr<Scope> scope = ResolveScope(o);
  if (!scope.ok()) return scope.status();
  absl::StatusOr<std::pair<std::string, int>> addr = SplitHostPort(o.listen);
  if (!addr.ok()) return addr.status();
  // Bad naming rules are refused before the port is taken.
  absl::StatusOr<identity::ServiceNamer> namer = MakeNamer(o);
  if (!namer.ok()) return namer.status();

  // Bind before loading anything: a taken port is the commonest mistake.
  // httplib's default options add SO_REUSEPORT, with which a second agent
  // would share the port silently; SO_REUSEADDR alone only allows a restart.
  absl::StatusOr<net::WebConfig> web = WebConfigOf(o);
  if (!web.ok()) return web.status();
  absl::StatusOr<std::unique_ptr<httplib::Server>> made = net::MakeServer(*web);
  if (!made.ok()) return made.status();
  httplib::Server& http = **made;
  http.set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  if (!http.bind_to_port(addr->first, addr->second))
    return absl::UnavailableError(fmt::format("cannot listen on {}: {}", o.listen,
                                              std::strerror(errno ? errno : EADDRINUSE)));

  std::unique_ptr<exporter::RemoteWriter> writer;
  if (!o.remote_write_url.empty()) {
    exporter::RemoteWriteOptions rw;
    rw.endpoint = *exporter::ParseEndpoint(o.remote_write_url);  // checked by ParseOptions
    rw.http = o.remote_write_http;
    rw.max_pending_samples = o.remote_write_buffer;
    rw.timeout = o.remote_write_timeout;
    writer = std::make_unique<exporter::RemoteWriter>(rw);
  }
  const std::string machine = MachineName(o.netns_path);

  // Served from here on; until the session is up (BPF loading, the
  // start-up seed), /readyz and the data say so and /healthz is fine.
  std::atomic<node::Session*> live{nullptr};
  auto frame_after = [&](absl::Time t, bool per_connection) -> std::shared_ptr<const node::Frame> {
    node::Session* s = live.load(std::memory_order_acquire);
    return s == nullptr ? nullptr : s->FrameAfter(t, per_connection);
  };
  auto starting = [](httplib::Response& res) {
    res.status = 503;
    res.set_content("starting: loading BPF programs and seeding\n", "text/plain");
  };
  http.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    std::shared_ptr<const node::Frame> f = frame_after(absl::Now(), false);
    if (f == nullptr) return starting(res);
    ServeFrameText(res, f, f->MetricsText(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/api/snapshot", [&](const httplib::Request&, httplib::Response& res) {
    std::shared_ptr<const node::Frame> f = frame_after(absl::Now(), true);
    if (f == nullptr) return starting(res);
    ServeFrameText(res, f, f->SnapshotText(), "application/json");
  });
  // The live map: this agent's graph joined with those of --map-agents,
  // exactly as `svcmap topology --agents` would.
  auto graph_now = [&]() -> absl::StatusOr<topology::Graph> {
    std::shared_ptr<const node::Frame> f = frame_after(absl::Now(), false);
    if (f == nullptr) return absl::UnavailableError("starting");
    topology::Observations all = f->Observations();
    for (const std::string& url : o.map_agents) {
      absl::StatusOr<topology::Observations> peer = topology::FetchAgent(url, o.map_agents_http);
      if (!peer.ok()) {
        Log(LogLevel::kWarn, "map: {}", std::string(peer.status().message()));
        continue;  // the map shows what it can reach
      }
      topology::Merge(all, *std::move(peer));
    }
    return topology::Join(all);
  };
  http.Get("/api/graph", [&](const httplib::Request&, httplib::Response& res) {
    absl::StatusOr<topology::Graph> g = graph_now();
    if (!g.ok()) {
      res.status = absl::IsUnavailable(g.status()) ? 503 : 500;
      res.set_content(std::string(g.status().message()), "text/plain");
      return;
    }
    res.set_content(topology::GraphJson(*g).dump(), "application/json");
  });
  http.Get("/api/map", [&](const httplib::Request&, httplib::Response& res) {
    absl::StatusOr<topology::Graph> g = graph_now();
    absl::StatusOr<std::string> svg = g.ok() ? topology::GraphSvg(*g) : g.status();
    if (!svg.ok()) {
      res.status = absl::IsUnavailable(svg.status()) ? 503 : 500;
      res.set_content(std::string(svg.status().message()), "text/plain");
      return;
    }
    nlohmann::ordered_json doc = {{"graph", topology::GraphJson(*g)}, {"svg", *svg}};
    res.set_content(doc.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace),
                    "application/json");
  });
  http.Get("/map", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(MapPage(machine), "text/html; charset=utf-8");
  });
  // Liveness: fails when events stop being drained, or when the store has
  // been away for longer than the backlog holds.
  http.Get("/healthz", [&](const httplib::Request&, httplib::Response& res) {
    node::Session* s = live.load(std::memory_order_acquire);
    if (s == nullptr) return res.set_content("ok: starting\n", "text/plain");
    std::optional<exporter::RemoteWriteStats> rw;
    if (writer) rw = writer->Stats();
    std::vector<std::string> bad =
        Unhealthy(s->Health(), rw, std::max(absl::Seconds(10), 10 * o.scan_interval), absl::Now());
    if (bad.empty()) return res.set_content("ok\n", "text/plain");
    res.status = 503;
    res.set_content(fmt::format("{}\n", fmt::join(bad, "\n")), "text/plain");
  });
  // Readiness: the start-up seed is done and a first frame is out.
  http.Get("/readyz", [&](const httplib::Request&, httplib::Response& res) {
    node::Session* s = live.load(std::memory_order_acquire);
    if (s == nullptr || !s->Health().ready) return starting(res);
    res.set_content("ready\n", "text/plain");
  });
  std::thread server([&] { http.listen_after_bind(); });

  absl::StatusOr<std::unique_ptr<node::Session>> session =
      StartSession(o, *scope, *std::move(namer), RunKind::kLongLived);
  if (!session.ok()) {
    http.stop();
    server.join();
    return session.status();
  }
  node::Session* node = session->get();
  if (writer) {
    node->set_health_hook([w = writer.get()](exporter::AgentHealth& h) {
      exporter::RemoteWriteStats s = w->Stats();
      h.remote_write = true;
      h.rw_sent_samples = s.sent_samples;
      h.rw_dropped_samples = s.dropped_samples;
      h.rw_rejected_samples = s.rejected_samples;
      h.rw_failed_requests = s.failed_requests;
      h.rw_pending_samples = s.pending_samples;
    });
  }
  // The first frame before ready: the seed's sockets are then in it.
  (void)node->FrameAfter(absl::Now());
  live.store(node, std::memory_order_release);
  fmt::print(stderr, "svcmap: agent on {}://{}/metrics via {}\n", web->tls ? "https" : "http",
             o.listen,
             fmt::join(node->attached(), ", "));
  if (writer)
    Log(LogLevel::kInfo, "remote write to {} every {}", o.remote_write_url,
        absl::FormatDuration(o.push_interval));

  // The series a store files the samples under: which agent sent them.
  const exporter::LabelPairs push_labels = {{"job", "svcmap"}, {"instance", scope->instance_ip}};
  int64_t pushed_ms = 0;  // the previous push's frame: series newer than it start at 0
  auto push = [&] {
    std::shared_ptr<const node::Frame> f = node->FrameAfter(absl::Now());
    if (f == nullptr) return;
    writer->Enqueue(exporter::EncodeWriteRequest(f->metrics().families, push_labels, f->wall_ms(),
                                                 &f->metrics().created_ms, pushed_ms));
    pushed_ms = f->wall_ms();
  };
  // Pushes on a fixed schedule from the start, so a slow frame does not
  // make the samples drift apart.
  absl::Time next_push = absl::Now() + o.push_interval;
  std::string last_error;
  for (;;) {
    int sig = WaitForAgentSignal(writer ? next_push : absl::Now() + absl::Hours(24));
    if (sig == SIGINT || sig == SIGTERM) break;
    if (sig == SIGHUP) {
      ReloadNaming(o, *node);
      continue;
    }
    if (!writer) continue;
    push();
    while (next_push <= absl::Now()) next_push += o.push_interval;
    exporter::RemoteWriteStats w = writer->Stats();
    if (w.last_error != last_error && !w.last_error.empty())
      Log(LogLevel::kWarn, "remote write: {} ({} samples waiting, {} dropped so far)",
          w.last_error, w.pending_samples, w.dropped_samples);
    else if (w.last_error.empty() && !last_error.empty())
      Log(LogLevel::kInfo, "remote write: the store takes samples again");
    last_error = w.last_error;
  }
  fmt::print(stderr, "svcmap: stopping\n");
  if (writer) {
    // The latest totals, and a bounded wait for the store to take them.
    push();
    writer->Shutdown(absl::Seconds(5));
    exporter::RemoteWriteStats w = writer->Stats();
    Log(w.dropped_samples + w.rejected_samples > 0 ? LogLevel::kWarn : LogLevel::kInfo,
        "remote write: {} samples sent, {} dropped, {} rejected", w.sent_samples,
        w.dropped_samples, w.rejected_samples);
  }
  http.stop();
  server.join();
  live.store(nullptr, std::memory_order_release);
  node->Stop();
  return absl::OkStatus();
}

}  // namespace svcmap::app
