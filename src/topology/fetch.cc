// The I/O half of sources.h: files, agents and stores over HTTP.
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fmt/format.h"
#include "httplib.h"
#include "svcmap/topology/sources.h"

namespace svcmap::topology {

absl::StatusOr<Observations> ReadSnapshotFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(fmt::format("{}: {}", path, std::strerror(errno)));
  std::stringstream text;
  text << in.rdbuf();
  return ParseSnapshot(text.str(), path);
}

namespace {

// "http://host:port[/prefix]" -> client and path prefix.
absl::StatusOr<std::pair<std::string, std::string>> SplitUrl(const std::string& url,
                                                             std::string_view flag) {
  size_t scheme = url.find("://");
  if (scheme == std::string::npos || (url.substr(0, scheme) != "http" && url.substr(0, scheme) != "https"))
    return absl::InvalidArgumentError(fmt::format("{} {:?}: want http://host:port", flag, url));
  size_t path = url.find('/', scheme + 3);
  std::string base = url.substr(0, path);
  std::string prefix = path == std::string::npos ? "" : url.substr(path);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  if (base.size() <= scheme + 3)
    return absl::InvalidArgumentError(fmt::format("{} {:?}: no host", flag, url));
  return std::pair{base, prefix};
}

absl::StatusOr<std::string> Get(const std::string& url, std::string_view flag,
                                const std::string& path, const httplib::Params& params = {}) {
  absl::StatusOr<std::pair<std::string, std::string>> parts = SplitUrl(url, flag);
  if (!parts.ok()) return parts.status();
  httplib::Client client(parts->first);
  client.set_connection_timeout(std::chrono::seconds(5));
  client.set_read_timeout(std::chrono::seconds(30));
  httplib::Result res = params.empty()
                            ? client.Get(parts->second + path)
                            : client.Get(parts->second + path, params, httplib::Headers{});
  if (!res)
    return absl::UnavailableError(
        fmt::format("{} {}: {}", flag, url, httplib::to_string(res.error())));
  if (res->status != 200)
    return absl::UnavailableError(fmt::format("{} {}{}: HTTP {}: {}", flag, url, path,
                                              res->status, res->body.substr(0, 200)));
  return res->body;
}

}  // namespace

absl::StatusOr<Observations> FetchAgent(const std::string& base_url) {
  absl::StatusOr<std::string> body = Get(base_url, "--agents", "/api/snapshot");
  if (!body.ok()) return body.status();
  return ParseSnapshot(*body, base_url + "/api/snapshot");
}

absl::StatusOr<Observations> QueryTsdb(const std::string& base_url, const Window& w) {
  std::map<std::string, std::vector<PromSample>> answers;
  for (const TsdbQuery& q : TsdbQueries(w)) {
    const int64_t t_ms = q.at_start ? w.start_ms : w.end_ms;
    httplib::Params params = {{"query", q.promql},
                              {"time", fmt::format("{}.{:03}", t_ms / 1000, t_ms % 1000)}};
    absl::StatusOr<std::string> body = Get(base_url, "--tsdb", "/api/v1/query", params);
    if (!body.ok()) return body.status();
    absl::StatusOr<std::vector<PromSample>> v = ParsePromVector(*body);
    if (!v.ok())
      return absl::InvalidArgumentError(
          fmt::format("--tsdb {}: {}: {}", base_url, q.promql, std::string(v.status().message())));
    answers[q.name] = *std::move(v);
  }
  absl::StatusOr<Observations> obs = ObservationsFromTsdb(answers);
  if (!obs.ok()) return obs.status();
  if (obs->instances.empty() && obs->connections.empty())
    return absl::NotFoundError(
        fmt::format("--tsdb {}: no svcmap series in the window (is an agent pushing there?)",
                    base_url));
  obs->time_resolution_ms = TsdbStepSeconds(w) * 1000;
  return obs;
}

}  // namespace svcmap::topology
