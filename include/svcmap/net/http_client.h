// An HTTP(S) client for the operator's stack: TLS with a CA, a client
// certificate or an explicit skip-verify, basic or bearer auth read from
// files at each request (so a rotated Kubernetes secret is picked up), extra
// headers (a Mimir/Cortex tenant), and failures that name their cause.
#ifndef SVCMAP_NET_HTTP_CLIENT_H_
#define SVCMAP_NET_HTTP_CLIENT_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace httplib {
class ClientImpl;
class SSLClient;
}  // namespace httplib

namespace svcmap::net {

// What one destination needs; the Prometheus http_config's fields, by name.
struct HttpClientConfig {
  std::string ca_file;    // PEM bundle the server's certificate must chain to; default: the system's
  std::string cert_file;  // client certificate (mutual TLS), with key_file
  std::string key_file;
  bool insecure_skip_verify = false;  // https without checking the server: say so explicitly
  std::string basic_auth_user;
  std::string basic_auth_password_file;
  std::string bearer_token_file;
  std::vector<std::pair<std::string, std::string>> headers;  // sent with every request

  bool empty() const;
};

// "Name: value" -> {"Name", "value"}; the name an RFC 9110 token.
absl::StatusOr<std::pair<std::string, std::string>> ParseHeader(std::string_view text);

// The flags' story checked once, at start: files readable, cert with key,
// basic or bearer but not both. `flag` prefixes every message
// ("--remote-write-ca-file /x: No such file or directory").
absl::Status ValidateHttpClientConfig(const HttpClientConfig& config, std::string_view flag);

// "http(s)://host[:port][/prefix]" split for the client.
struct Url {
  std::string scheme;  // "http" | "https"
  std::string host;    // without brackets for IPv6
  int port = 0;
  std::string prefix;  // path prefix without a trailing '/', may be empty

  std::string Origin() const;  // "https://host:port"
};
absl::StatusOr<Url> ParseUrl(std::string_view url);

struct HttpResponse {
  int status = 0;
  std::string body;
};

struct HttpTimeouts {
  absl::Duration connect = absl::Seconds(5);
  absl::Duration io = absl::Seconds(30);
};

class HttpClient {
 public:
  // Fails only on what can be known without the network: a bad URL, an
  // unreadable certificate.
  static absl::StatusOr<HttpClient> Create(const Url& url, const HttpClientConfig& config,
                                           HttpTimeouts timeouts = {});
  HttpClient(HttpClient&&) noexcept;
  HttpClient& operator=(HttpClient&&) noexcept;
  ~HttpClient();

  // Any HTTP status is a response; UnavailableError otherwise, saying why:
  // "connection refused", "timed out connecting after 5s", "TLS: certificate
  // verify failed: self-signed certificate", "cannot resolve host".
  // `path` is appended to the URL's prefix; `query` is URL-encoded.
  absl::StatusOr<HttpResponse> Get(std::string_view path,
                                   const std::vector<std::pair<std::string, std::string>>& query = {});
  absl::StatusOr<HttpResponse> Post(std::string_view path, const std::string& body,
                                    std::string_view content_type,
                                    const std::vector<std::pair<std::string, std::string>>& headers);

  const Url& url() const { return url_; }

 private:
  HttpClient() = default;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> RequestHeaders() const;
  std::string Explain(int error) const;

  Url url_;
  HttpClientConfig config_;
  HttpTimeouts timeouts_;
  std::unique_ptr<httplib::ClientImpl> client_;
  httplib::SSLClient* tls_ = nullptr;  // client_ when https, for the verify result
};

// "HTTP 401: <first 200 bytes of the body>", one line.
std::string DescribeStatus(const HttpResponse& r);

}  // namespace svcmap::net

#endif  // SVCMAP_NET_HTTP_CLIENT_H_
