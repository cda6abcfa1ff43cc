#ifndef SVCMAP_APP_OPTIONS_H_
#define SVCMAP_APP_OPTIONS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "svcmap/identity/naming.h"
#include "svcmap/net/http_client.h"

namespace svcmap::app {

enum class Command { kProbe, kTrace, kSnapshot, kAgent, kTopology, kTop };

// Validated command line. Everything downstream takes this, never flags.
struct Options {
  Command command = Command::kProbe;
  bool json = false;
  bool verbose = false;
  std::string backend = "auto";          // auto | fentry | kprobe | tracepoint | procfs
  std::string tracepoint_form = "auto";  // auto | tp_btf | classic
  std::optional<absl::Duration> duration;  // trace: until signalled if unset
  std::optional<uint32_t> pid;           // trace: only this process
  std::string netns_path;                // snapshot: only this namespace
  std::string instance_ip;               // snapshot: override the address
  uint32_t max_sockets = 65536;
  uint32_t ringbuf_mib = 16;  // the agent's default is 4 (see ParseOptions)
  bool tcp_health = true;     // BackendOptions::tcp_health
  absl::Duration scan_interval = absl::Seconds(1);  // procfs backend
  std::string scan_source = "auto";                 // auto | sock_diag | proc
  std::vector<identity::NamingRule> name_rules;    // --name-rule, in order
  std::string pod_list_path;                       // --pod-list
  std::string listen = "127.0.0.1:9464";            // agent: HTTP address
  std::string web_config_path;                      // agent: TLS and basic auth for it
  uint32_t max_series = 100000;                     // agent: export cap
  std::string remote_write_url;                     // agent: push here, if set
  net::HttpClientConfig remote_write_http;          // agent: --remote-write-* TLS, auth, headers
  absl::Duration push_interval = absl::Seconds(15);  // agent: between pushes
  absl::Duration remote_write_timeout = absl::Seconds(10);  // agent: connect, and each answer
  uint32_t remote_write_buffer = 1000000;           // agent: samples kept while the store is away
  absl::Duration flow_idle_timeout = absl::Minutes(5);  // agent: 0 keeps flows forever
  std::string config_path;                          // agent: --config, reread on SIGHUP
  std::string log_level = "info";                   // error | warn | info | debug
  bool conntrack = true;                            // snapshot, agent: resolve DNAT'd destinations
  std::vector<std::string> map_agents;              // agent: other agents for /map
  bool check_config = false;                        // agent: validate and exit
  // topology: where from (exactly one), the window, how to print.
  std::string tsdb_url;
  std::vector<std::string> agent_urls;
  net::HttpClientConfig tsdb_http;                  // --tsdb-*: TLS, auth, headers
  net::HttpClientConfig agents_http;                // --agents-*
  net::HttpClientConfig map_agents_http;            // agent: --map-agents-*
  std::vector<std::string> snapshot_paths;
  std::string window = "5m";
  std::vector<std::string> diff;                    // two windows, or empty
  std::string format = "json";                      // json | dot | mermaid | svg | html
  std::string group_by = "instance";                // instance | service | machine
  std::string output_path;                          // stdout when empty
  // top: refresh, plain frames for pipes, which view first.
  absl::Duration interval = absl::Seconds(1);
  bool batch = false;
  std::optional<int> frames;
  std::optional<int> width;                         // --batch: line width
  std::string view = "edges";                       // edges | services | processes
  std::vector<std::string> args;                    // argv as given, for a reload
};

struct ParseResult {
  Options options;
  bool help = false;       // --help: print help_text, exit 0
  std::string help_text;
};

// "127.0.0.1:9464" or "[::1]:9464" -> host, port.
absl::StatusOr<std::pair<std::string, int>> SplitHostPort(const std::string& text);

// "5s", "250ms", "1m30s", or a bare number of seconds. Positive only.
absl::StatusOr<absl::Duration> ParseDurationFlag(const std::string& text);

// Parses argv (args[0] is the program name). Pure: no I/O, no exit().
absl::StatusOr<ParseResult> ParseOptions(const std::vector<std::string>& args);

}  // namespace svcmap::app

#endif  // SVCMAP_APP_OPTIONS_H_
