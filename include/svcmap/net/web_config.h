// The agent's own endpoints behind TLS and basic auth, configured by a web
// config file in the Prometheus exporter-toolkit format (--web.config.file),
// so an operator's existing files and habits carry over.
#ifndef SVCMAP_NET_WEB_CONFIG_H_
#define SVCMAP_NET_WEB_CONFIG_H_

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace svcmap::net {

struct WebConfig {
  struct Tls {
    std::string cert_file;
    std::string key_file;
    std::string client_ca_file;
    // Go's tls.ClientAuthType names, as exporter-toolkit takes them.
    std::string client_auth_type = "NoClientCert";
    std::string min_version = "TLS12";  // TLS10 .. TLS13
    std::string max_version;            // empty: the newest
  };
  std::optional<Tls> tls;
  std::map<std::string, std::string> basic_auth_users;  // user -> bcrypt hash
  std::vector<std::pair<std::string, std::string>> headers;  // added to every response
};

// The file's text -> config; relative paths are taken from `dir`, the
// file's directory, as exporter-toolkit does. Unknown keys are errors.
absl::StatusOr<WebConfig> ParseWebConfig(std::string_view yaml, const std::string& dir);

// Reads and parses `path`, and checks that the files it names are readable
// and every hash is a bcrypt hash.
absl::StatusOr<WebConfig> LoadWebConfig(const std::string& path);

// Checks "Authorization: Basic ..." against the bcrypt hashes. A bcrypt
// check costs milliseconds by design, so a header that passed is
// remembered (by its SHA-256) and a scraper every few seconds costs one.
class BasicAuth {
 public:
  explicit BasicAuth(std::map<std::string, std::string> users) : users_(std::move(users)) {}
  bool enabled() const { return !users_.empty(); }
  bool Allows(std::string_view authorization) const;

 private:
  std::map<std::string, std::string> users_;
  mutable std::mutex mu_;
  mutable std::set<std::string> passed_;  // SHA-256 of headers that passed
};

// An HTTP server, or an HTTPS one when the config has TLS; its every route
// behind basic auth when it has users. Errors name the file at fault.
absl::StatusOr<std::unique_ptr<httplib::Server>> MakeServer(const WebConfig& config);

}  // namespace svcmap::net

#endif  // SVCMAP_NET_WEB_CONFIG_H_
