// The I/O half of sources.h: files, agents and stores over HTTP.
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "fmt/format.h"
#include "svcmap/net/http_client.h"
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

absl::StatusOr<std::string> Get(const std::string& url, std::string_view flag,
                                const net::HttpClientConfig& http, net::HttpClient* reuse,
                                const std::string& path,
                                const std::vector<std::pair<std::string, std::string>>& params = {}) {
  std::optional<net::HttpClient> own;
  if (reuse == nullptr) {
    absl::StatusOr<net::Url> u = net::ParseUrl(url);
    if (!u.ok()) return absl::InvalidArgumentError(fmt::format("{} {}", flag, std::string(u.status().message())));
    absl::StatusOr<net::HttpClient> c = net::HttpClient::Create(*u, http);
    if (!c.ok()) return absl::InvalidArgumentError(fmt::format("{} {}", flag, std::string(c.status().message())));
    own.emplace(*std::move(c));
    reuse = &*own;
  }
  absl::StatusOr<net::HttpResponse> res = reuse->Get(path, params);
  if (!res.ok())
    return absl::UnavailableError(fmt::format("{} {}", flag, std::string(res.status().message())));
  if (res->status != 200)
    return absl::UnavailableError(
        fmt::format("{} {}{}: {}", flag, url, path, net::DescribeStatus(*res)));
  return std::move(res->body);
}

}  // namespace

absl::StatusOr<Observations> FetchAgent(const std::string& base_url,
                                        const net::HttpClientConfig& http) {
  absl::StatusOr<std::string> body = Get(base_url, "--agents", http, nullptr, "/api/snapshot");
  if (!body.ok()) return body.status();
  return ParseSnapshot(*body, base_url + "/api/snapshot");
}

absl::StatusOr<Observations> QueryTsdb(const std::string& base_url, const Window& w,
                                       const net::HttpClientConfig& http) {
  absl::StatusOr<net::Url> u = net::ParseUrl(base_url);
  if (!u.ok()) return absl::InvalidArgumentError(fmt::format("--tsdb {}", std::string(u.status().message())));
  absl::StatusOr<net::HttpClient> client = net::HttpClient::Create(*u, http);
  if (!client.ok())
    return absl::InvalidArgumentError(fmt::format("--tsdb {}", std::string(client.status().message())));
  std::map<std::string, std::vector<PromSample>> answers;
  for (const TsdbQuery& q : TsdbQueries(w)) {
    const int64_t t_ms = q.at_start ? w.start_ms : w.end_ms;
    std::vector<std::pair<std::string, std::string>> params = {
        {"query", q.promql}, {"time", fmt::format("{}.{:03}", t_ms / 1000, t_ms % 1000)}};
    absl::StatusOr<std::string> body =
        Get(base_url, "--tsdb", http, &*client, "/api/v1/query", params);
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
