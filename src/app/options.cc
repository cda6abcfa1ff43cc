#include "svcmap/app/options.h"

#include <algorithm>
#include <tuple>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "fmt/format.h"
#include "svcmap/base/build_info.h"
#include "svcmap/export/remote_write.h"
#include "svcmap/flow/ip_addr.h"

namespace svcmap::app {
namespace {

std::string VersionText() {
  return fmt::format("svcmap {} (revision {})", base::Version(), base::Revision());
}

// The Prometheus http_config, as flags named after the URL flag they go with.
void AddHttpClientFlags(CLI::App* sub, const std::string& flag, net::HttpClientConfig& c,
                        std::vector<std::string>& headers) {
  const std::string what = flag.substr(2);
  sub->add_option(flag + "-ca-file", c.ca_file,
                  fmt::format("{}: PEM CA bundle for the server's certificate (default: the "
                              "system's)", flag));
  sub->add_option(flag + "-cert-file", c.cert_file,
                  fmt::format("{}: client certificate (PEM), for mutual TLS", flag));
  sub->add_option(flag + "-key-file", c.key_file,
                  fmt::format("{}: the client certificate's key (PEM)", flag));
  sub->add_flag(flag + "-insecure-skip-verify", c.insecure_skip_verify,
                fmt::format("{}: https without checking the server's certificate", flag));
  sub->add_option(flag + "-basic-auth-user", c.basic_auth_user,
                  fmt::format("{}: basic auth user name", flag));
  sub->add_option(flag + "-basic-auth-password-file", c.basic_auth_password_file,
                  fmt::format("{}: file holding the basic auth password (read at each request)",
                              flag));
  sub->add_option(flag + "-bearer-token-file", c.bearer_token_file,
                  fmt::format("{}: file holding a bearer token (read at each request)", flag));
  sub->add_option(flag + "-header", headers,
                  fmt::format("{}: \"Name: value\" sent with every request, e.g. "
                              "\"X-Scope-OrgID: team-a\"; repeatable", flag));
}

absl::Status FinishHttpClientFlags(const std::string& flag, bool has_url,
                                   net::HttpClientConfig& c,
                                   const std::vector<std::string>& headers) {
  for (const std::string& h : headers) {
    absl::StatusOr<std::pair<std::string, std::string>> kv = net::ParseHeader(h);
    if (!kv.ok())
      return absl::InvalidArgumentError(fmt::format("{}-{}", flag, std::string(kv.status().message())));
    c.headers.push_back(*std::move(kv));
  }
  if (c.empty()) return absl::OkStatus();
  if (!has_url) return absl::InvalidArgumentError(fmt::format("{}-* flags without {}", flag, flag));
  return net::ValidateHttpClientConfig(c, flag);
}

}  // namespace

absl::StatusOr<absl::Duration> ParseDurationFlag(const std::string& text) {
  absl::Duration d;
  double secs = 0;
  if (absl::SimpleAtod(text, &secs)) {
    d = absl::Seconds(secs);
  } else if (!absl::ParseDuration(text, &d)) {
    return absl::InvalidArgumentError(
        fmt::format("invalid duration '{}': want e.g. 5s, 250ms, 1m30s", text));
  }
  if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration())
    return absl::InvalidArgumentError(fmt::format("invalid duration '{}': must be positive", text));
  return d;
}

absl::StatusOr<std::pair<std::string, int>> SplitHostPort(const std::string& text) {
  size_t colon = text.rfind(':');
  auto bad = [&] {
    return absl::InvalidArgumentError(
        fmt::format("invalid --listen '{}': want HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464",
                    text));
  };
  if (colon == std::string::npos || colon == 0) return bad();
  std::string host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  int port = 0;
  if (!absl::SimpleAtoi(text.substr(colon + 1), &port) || port < 1 || port > 65535) return bad();
  if (!flow::IpAddr::Parse(host)) return bad();
  return std::make_pair(host, port);
}

absl::StatusOr<ParseResult> ParseOptions(const std::vector<std::string>& args) {
  ParseResult result;
  Options& o = result.options;
  std::string duration, scan_interval, push_interval, idle_timeout, remote_write_timeout;
  std::vector<std::string> name_rules;

  CLI::App app{"svcmap: which process on which machine talks to which, and how many bytes flow",
               "svcmap"};
  app.require_subcommand(1);
  // Global flags after the subcommand too ("svcmap agent --log-level info"),
  // as a manifest's args naturally have them.
  app.fallthrough();
  app.set_help_all_flag("--help-all", "Help for every subcommand");
  app.set_version_flag("--version", VersionText(), "Print the version and the git revision, and exit");
  app.add_flag("-v,--verbose", o.verbose, "Print libbpf's own log lines");
  app.add_option("--log-level", o.log_level, "error, warn, info or debug (default info)")
      ->check(CLI::IsMember({"error", "warn", "info", "debug"}));
  // Keys are the long flags without "--", global ones at the top and the
  // agent's under [agent]; flags given on the command line win.
  app.set_config("--config", "",
                 "TOML file of flags: top-level keys for global flags, [agent] for the "
                 "agent's (reread on SIGHUP for the naming rules)");
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.add_option("--backend", o.backend,
                 "Capture backend: auto picks per hook the best that attaches, and the "
                 "/proc + sock_diag scanner (procfs) when no BPF is usable")
      ->check(CLI::IsMember({"auto", "fentry", "kprobe", "tracepoint", "procfs"}))
      ->default_str("auto");
  app.add_option("--tracepoint-form", o.tracepoint_form,
                 "Tracepoint programs: tp_btf, classic (the fallback), or auto")
      ->check(CLI::IsMember({"auto", "tp_btf", "classic"}))
      ->default_str("auto");

  CLI::App* probe = app.add_subcommand("probe", "Report the kernel's features and the chosen backend");
  probe->add_flag("--json", o.json, "One JSON document");

  CLI::App* trace = app.add_subcommand("trace", "Print one line per listen, connect, accept and close");
  trace->add_flag("--json", o.json, "One JSON object per line");
  trace->add_option("--duration", duration, "Stop after this long (default: until Ctrl-C)");
  trace->add_option("--pid", o.pid, "Only this process (its tgid)")->check(CLI::PositiveNumber);

  CLI::App* snapshot = app.add_subcommand(
      "snapshot", "Trace for a while, then print services, connections and traffic");
  snapshot->add_flag("--json", o.json, "JSON (the only format; accepted for symmetry)");
  snapshot->add_option("--duration", duration, "How long to trace (default 5s)");
  CLI::App* agent = app.add_subcommand(
      "agent", "Run continuously and serve /metrics, /api/snapshot and /healthz over HTTP");
  agent->add_option("--listen", o.listen,
                    "HTTP address, HOST:PORT (default 127.0.0.1:9464; 0.0.0.0:9464 for all)");
  // The exporter-toolkit spelling; in a --config file, web-config-file.
  agent->add_option("--web.config.file,--web-config-file", o.web_config_path,
                    "TLS and basic auth for the agent's endpoints: a web config file in the "
                    "Prometheus exporter-toolkit format (docs/deploy.md)");
  agent->add_option("--max-series", o.max_series,
                    "Connection and traffic series exported at most; the rest are counted")
      ->check(CLI::Range(1u, 1u << 24));
  agent->add_option("--remote-write", o.remote_write_url,
                    "Push to this Prometheus remote-write URL too, e.g. "
                    "http://victoria:8428/api/v1/write");
  std::vector<std::string> remote_write_headers, tsdb_headers, agents_headers, map_agents_headers;
  AddHttpClientFlags(agent, "--remote-write", o.remote_write_http, remote_write_headers);
  agent->add_option("--push-interval", push_interval,
                    "Time between remote-write pushes (default 15s)");
  agent->add_option("--remote-write-timeout", remote_write_timeout,
                    "How long a push waits to connect, and for the store's answer, before it "
                    "is retried (default 10s)");
  agent->add_option("--remote-write-buffer", o.remote_write_buffer,
                    "Samples kept while the store is unreachable; the oldest are dropped "
                    "(and counted) beyond this")
      ->check(CLI::Range(1000u, 1u << 30));
  agent->add_option("--flow-idle-timeout", idle_timeout,
                    "Closed flows with no traffic for this long stop being exported "
                    "(default 5m; 0 keeps them)");
  agent->add_flag("--check-config", o.check_config,
                  "Check the flags and --config file (naming rules, pod list, addresses) "
                  "and exit: 0 and one line if they are good");
  agent->add_option("--map-agents", o.map_agents,
                    "Other agents whose snapshots /map joins with this one's, URL,URL,...")
      ->delimiter(',');
  AddHttpClientFlags(agent, "--map-agents", o.map_agents_http, map_agents_headers);
  CLI::App* topology = app.add_subcommand(
      "topology", "Join what the agents saw into the cross-machine service graph");
  topology->add_option("--tsdb", o.tsdb_url,
                       "A Prometheus-compatible query API the agents push to, e.g. "
                       "http://victoria:8428");
  topology->add_option("--agents", o.agent_urls,
                       "The agents themselves, URL,URL,... (default http://127.0.0.1:9464)")
      ->delimiter(',');
  topology->add_option("--snapshot", o.snapshot_paths, "Snapshot files (svcmap snapshot --json)");
  AddHttpClientFlags(topology, "--tsdb", o.tsdb_http, tsdb_headers);
  AddHttpClientFlags(topology, "--agents", o.agents_http, agents_headers);
  topology->add_option("--window", o.window,
                       "--tsdb: the time window, 5m (ending now) or START..END with now, "
                       "now-1h, RFC 3339 or Unix seconds (default 5m)");
  topology->add_option("--diff", o.diff,
                       "--tsdb: two windows; print the edges that appeared and disappeared")
      ->expected(2);
  topology->add_option("--format", o.format, "json, dot, mermaid, svg or html (default json)")
      ->check(CLI::IsMember({"json", "dot", "mermaid", "svg", "html"}));
  topology->add_option("--group-by", o.group_by,
                       "Nodes per instance, service or machine (default instance)")
      ->check(CLI::IsMember({"instance", "service", "machine"}));
  topology->add_option("-o,--output", o.output_path, "Write here instead of standard output");
  CLI::App* top = app.add_subcommand(
      "top", "A live view of who talks to whom on this node (or, with --agents or --tsdb, "
             "the cluster), refreshed every second");
  std::string interval;
  top->add_option("--interval", interval, "Time between refreshes (default 1s)");
  top->add_flag("--batch", o.batch, "Plain-text frames on standard output, for pipes and CI");
  top->add_option("--frames", o.frames, "--batch: stop after this many frames")
      ->check(CLI::PositiveNumber);
  top->add_option("--width", o.width,
                  "--batch: line width (default 100; all columns fit from 116)")
      ->check(CLI::Range(40, 1000));
  top->add_option("--duration", duration, "Stop after this long");
  top->add_option("--view", o.view, "The view to start in: edges, services or processes")
      ->check(CLI::IsMember({"edges", "services", "processes"}));
  top->add_option("--tsdb", o.tsdb_url, "Read a Prometheus-compatible store instead of the kernel");
  top->add_option("--agents", o.agent_urls, "Read these agents instead of the kernel, URL,URL,...")
      ->delimiter(',');
  AddHttpClientFlags(top, "--tsdb", o.tsdb_http, tsdb_headers);
  AddHttpClientFlags(top, "--agents", o.agents_http, agents_headers);
  for (CLI::App* sub : {snapshot, agent, top}) {
    sub->add_flag("!--no-conntrack", o.conntrack,
                  "Do not ask conntrack where DNAT'd connections really went");
    sub->add_option("--netns", o.netns_path,
                    "Only sockets in this network namespace, e.g. /run/netns/web");
    sub->add_option("--name-rule", name_rules,
                    "Name services: FIELD:REGEX=NAME, FIELD exe, cmdline or cgroup, $1.. "
                    "for groups; repeatable, first match wins, before pod, systemd unit, "
                    "container, exe and comm");
    sub->add_option("--pod-list", o.pod_list_path,
                    "A PodList JSON (kubectl get pods -o json, or the kubelet's /pods) "
                    "to name pods by their workload");
    sub->add_option("--instance-ip", o.instance_ip,
                    "This machine's address in the output (default: first non-loopback)");
  }
  for (CLI::App* sub : {trace, snapshot, agent, top}) {
    sub->add_option("--max-sockets", o.max_sockets, "Sockets tracked at once in the kernel")
        ->check(CLI::Range(1024u, 1u << 24));
    sub->add_option("--ringbuf-mib", o.ringbuf_mib,
                    "Ring buffer size, MiB (power of two; default 16, the agent's 4)")
        ->check(CLI::Range(1u, 1024u));
    sub->add_option("--tcp-health", o.tcp_health,
                    "Read each connection's outcome, resets, retransmits, RTT and connect "
                    "latency from TCP (default true; false only to measure its cost)")
        ->default_str("true");
    sub->add_option("--scan-interval", scan_interval,
                    "procfs backend: time between scans (default 1s)");
    sub->add_option("--scan-source", o.scan_source,
                    "procfs backend: sock_diag (byte counts), proc (/proc/net/tcp, no bytes), "
                    "or auto (sock_diag if it works)")
        ->check(CLI::IsMember({"auto", "sock_diag", "proc"}))
        ->default_str("auto");
  }

  o.args = args;
  // CLI11 reads the config file only as a global option: hoist "--config F"
  // from after the subcommand, where an operator naturally writes it.
  std::vector<std::string> hoisted, rest;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      hoisted = {args[i], args[i + 1]};
      ++i;
    } else if (args[i].rfind("--config=", 0) == 0) {
      hoisted = {args[i]};
    } else {
      rest.push_back(args[i]);
    }
  }
  hoisted.insert(hoisted.end(), rest.begin(), rest.end());
  std::vector<std::string> rev(hoisted.rbegin(), hoisted.rend());
  try {
    app.parse(rev);
  } catch (const CLI::CallForHelp&) {
    result.help = true;
    result.help_text = app.help();
    for (CLI::App* sub : {probe, trace, snapshot, agent, topology, top})
      if (sub->parsed()) result.help_text = sub->help();
    return result;
  } catch (const CLI::CallForVersion&) {
    result.help = true;
    result.help_text = VersionText() + "\n";
    return result;
  } catch (const CLI::CallForAllHelp&) {
    result.help = true;
    result.help_text = app.help("", CLI::AppFormatMode::All);
    return result;
  } catch (const CLI::ConfigError& e) {
    // CLI11 says "INI was not able to parse agent.lisen": name the file and key.
    std::string what = e.what();
    const std::string prefix = "INI was not able to parse ";
    if (what.rfind(prefix, 0) == 0)
      what = fmt::format("unknown or malformed key '{}'", what.substr(prefix.size()));
    return absl::InvalidArgumentError(fmt::format("--config: {}", what));
  } catch (const CLI::FileError& e) {
    return absl::InvalidArgumentError(fmt::format("--config: {}", e.what()));
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  if (CLI::Option* c = app.get_option("--config"); c->count() > 0) o.config_path = c->as<std::string>();

  if (probe->parsed()) o.command = Command::kProbe;
  if (trace->parsed()) o.command = Command::kTrace;
  if (snapshot->parsed()) o.command = Command::kSnapshot;
  if (agent->parsed()) o.command = Command::kAgent;
  // The ring is mapped twice into our address space, and all of it counts
  // in the agent's RSS from the start: 4 MiB hold ~0.4 s of events at
  // 15,000 connections/s, and the reader drains every 100 ms.
  if (agent->parsed() && agent->get_option("--ringbuf-mib")->count() == 0) o.ringbuf_mib = 4;
  if (top->parsed()) {
    o.command = Command::kTop;
    if (!o.tsdb_url.empty() && !o.agent_urls.empty())
      return absl::InvalidArgumentError("top: give --tsdb or --agents, not both");
    if (!interval.empty()) {
      absl::StatusOr<absl::Duration> d = ParseDurationFlag(interval);
      if (!d.ok()) return d.status();
      if (*d < absl::Milliseconds(100))
        return absl::InvalidArgumentError(
            fmt::format("invalid --interval '{}': at least 100ms", interval));
      o.interval = *d;
    }
    if (o.frames && !o.batch) return absl::InvalidArgumentError("top: --frames goes with --batch");
    if (o.width && !o.batch) return absl::InvalidArgumentError("top: --width goes with --batch");
  }
  if (topology->parsed()) {
    o.command = Command::kTopology;
    const int sources = !o.tsdb_url.empty() + !o.agent_urls.empty() + !o.snapshot_paths.empty();
    if (sources > 1)
      return absl::InvalidArgumentError(
          "topology: give one of --tsdb, --agents and --snapshot, not several");
    if (sources == 0) o.agent_urls = {"http://127.0.0.1:9464"};
    if (!o.diff.empty() && o.tsdb_url.empty())
      return absl::InvalidArgumentError("topology: --diff compares two windows of a --tsdb");
    if (!o.diff.empty() && o.format != "json")
      return absl::InvalidArgumentError("topology: --diff prints JSON only");
  }

  if (!duration.empty()) {
    absl::StatusOr<absl::Duration> d = ParseDurationFlag(duration);
    if (!d.ok()) return d.status();
    o.duration = *d;
  } else if (o.command == Command::kSnapshot) {
    o.duration = absl::Seconds(5);
  }
  for (const std::string& text : name_rules) {
    absl::StatusOr<identity::NamingRule> r = identity::ParseNamingRule(text);
    if (!r.ok()) return r.status();
    o.name_rules.push_back(*std::move(r));
  }
  if (!scan_interval.empty()) {
    absl::StatusOr<absl::Duration> d = ParseDurationFlag(scan_interval);
    if (!d.ok()) return d.status();
    if (*d < absl::Milliseconds(10))
      return absl::InvalidArgumentError(
          fmt::format("invalid --scan-interval '{}': at least 10ms", scan_interval));
    o.scan_interval = *d;
  }
  if (idle_timeout == "0") {
    o.flow_idle_timeout = absl::ZeroDuration();
  } else if (!idle_timeout.empty()) {
    absl::StatusOr<absl::Duration> d = ParseDurationFlag(idle_timeout);
    if (!d.ok()) return d.status();
    o.flow_idle_timeout = *d;
  }
  if (!push_interval.empty()) {
    absl::StatusOr<absl::Duration> d = ParseDurationFlag(push_interval);
    if (!d.ok()) return d.status();
    if (*d < absl::Milliseconds(100))
      return absl::InvalidArgumentError(
          fmt::format("invalid --push-interval '{}': at least 100ms", push_interval));
    o.push_interval = *d;
  }
  if (!remote_write_timeout.empty()) {
    absl::StatusOr<absl::Duration> d = ParseDurationFlag(remote_write_timeout);
    if (!d.ok()) return d.status();
    if (*d < absl::Milliseconds(100))
      return absl::InvalidArgumentError(fmt::format(
          "invalid --remote-write-timeout '{}': at least 100ms", remote_write_timeout));
    o.remote_write_timeout = *d;
  }
  if (!o.remote_write_url.empty())
    if (absl::StatusOr<exporter::Endpoint> e = exporter::ParseEndpoint(o.remote_write_url); !e.ok())
      return e.status();
  for (auto [flag, has_url, config, headers] :
       {std::tuple{"--remote-write", !o.remote_write_url.empty(), &o.remote_write_http,
                   &remote_write_headers},
        std::tuple{"--tsdb", !o.tsdb_url.empty(), &o.tsdb_http, &tsdb_headers},
        std::tuple{"--agents", !o.agent_urls.empty(), &o.agents_http, &agents_headers},
        std::tuple{"--map-agents", !o.map_agents.empty(), &o.map_agents_http,
                   &map_agents_headers}})
    if (absl::Status s = FinishHttpClientFlags(flag, has_url, *config, *headers); !s.ok()) return s;
  if (absl::StatusOr<std::pair<std::string, int>> hp = SplitHostPort(o.listen); !hp.ok())
    return hp.status();
  if (!o.instance_ip.empty() && !flow::IpAddr::Parse(o.instance_ip))
    return absl::InvalidArgumentError(
        fmt::format("invalid --instance-ip '{}': not an IPv4 or IPv6 address", o.instance_ip));
  if ((o.ringbuf_mib & (o.ringbuf_mib - 1)) != 0)
    return absl::InvalidArgumentError(
        fmt::format("invalid --ringbuf-mib {}: must be a power of two", o.ringbuf_mib));
  return result;
}

}  // namespace svcmap::app
