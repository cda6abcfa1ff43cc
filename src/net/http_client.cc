#include "svcmap/net/http_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "fmt/format.h"
#include "httplib.h"
#include "openssl/err.h"
#include "openssl/evp.h"
#include "openssl/x509.h"

namespace svcmap::net {
namespace {

absl::StatusOr<std::string> ReadSecret(const std::string& path, std::string_view what) {
  std::ifstream in(path);
  if (!in) return absl::FailedPreconditionError(fmt::format("{} {}: {}", what, path, std::strerror(errno)));
  std::stringstream s;
  s << in.rdbuf();
  // As Prometheus does: a file written by `echo` or a Secret ends in a newline.
  return std::string(absl::StripAsciiWhitespace(s.str()));
}

std::string Base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

bool Readable(const std::string& path) { return access(path.c_str(), R_OK) == 0; }

std::string Seconds(absl::Duration d) { return absl::FormatDuration(d); }

// httplib says only "Connection" for every failure to connect; one more
// connect of our own, bounded by the same timeout, says which.
std::string WhyNoConnection(const std::string& host, int port, absl::Duration timeout) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &list); rc != 0)
    return fmt::format("cannot resolve host {:?}: {}", host, gai_strerror(rc));
  std::string why = "connection failed";
  for (addrinfo* a = list; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    int err = 0;
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        int n = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
        if (n == 0) {
          err = ETIMEDOUT;
        } else {
          socklen_t len = sizeof(err);
          getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        }
      }
    }
    close(fd);
    if (err == 0) {
      why = "connection failed (it connects now: the server may be overloaded or restarting)";
      break;
    }
    if (err == ETIMEDOUT) {
      why = fmt::format("timed out connecting after {}", Seconds(timeout));
    } else {
      why = std::strerror(err);
      if (!why.empty()) why[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(why[0])));
    }
  }
  freeaddrinfo(list);
  return why;
}

std::string OpenSslQueue() {
  std::string out;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

}  // namespace

bool HttpClientConfig::empty() const {
  return ca_file.empty() && cert_file.empty() && key_file.empty() && !insecure_skip_verify &&
         basic_auth_user.empty() && basic_auth_password_file.empty() &&
         bearer_token_file.empty() && headers.empty();
}

absl::StatusOr<std::pair<std::string, std::string>> ParseHeader(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0)
    return absl::InvalidArgumentError(fmt::format("header {:?}: want \"Name: value\"", text));
  std::string name(text.substr(0, colon));
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c)))
      return absl::InvalidArgumentError(
          fmt::format("header {:?}: {:?} is not a header name", text, name));
  std::string value(absl::StripAsciiWhitespace(std::string(text.substr(colon + 1))));
  for (char c : value)
    if (c == '\r' || c == '\n')
      return absl::InvalidArgumentError(fmt::format("header {:?}: a value is one line", text));
  if (absl::AsciiStrToLower(name) == "authorization")
    return absl::InvalidArgumentError(fmt::format(
        "header {:?}: give credentials with the basic-auth or bearer-token flags, whose files "
        "are not shown by ps or in the config",
        name));
  return std::pair{name, value};
}

absl::Status ValidateHttpClientConfig(const HttpClientConfig& c, std::string_view flag) {
  for (const auto& [suffix, path] : {std::pair{"ca-file", &c.ca_file},
                                     std::pair{"cert-file", &c.cert_file},
                                     std::pair{"key-file", &c.key_file},
                                     std::pair{"basic-auth-password-file", &c.basic_auth_password_file},
                                     std::pair{"bearer-token-file", &c.bearer_token_file}})
    if (!path->empty() && !Readable(*path))
      return absl::InvalidArgumentError(
          fmt::format("{}-{} {}: {}", flag, suffix, *path, std::strerror(errno)));
  if (c.cert_file.empty() != c.key_file.empty())
    return absl::InvalidArgumentError(
        fmt::format("{}-cert-file and {}-key-file go together", flag, flag));
  if (!c.basic_auth_password_file.empty() && c.basic_auth_user.empty())
    return absl::InvalidArgumentError(
        fmt::format("{}-basic-auth-password-file needs {}-basic-auth-user", flag, flag));
  if (!c.basic_auth_user.empty() && !c.bearer_token_file.empty())
    return absl::InvalidArgumentError(
        fmt::format("{}: basic auth or a bearer token, not both", flag));
  if (c.insecure_skip_verify && !c.ca_file.empty())
    return absl::InvalidArgumentError(
        fmt::format("{}-insecure-skip-verify with {}-ca-file: the CA would not be checked", flag,
                    flag));
  return absl::OkStatus();
}

std::string Url::Origin() const {
  const bool v6 = host.find(':') != std::string::npos;
  return fmt::format("{}://{}{}{}:{}", scheme, v6 ? "[" : "", host, v6 ? "]" : "", port);
}

absl::StatusOr<Url> ParseUrl(std::string_view text) {
  Url u;
  size_t scheme = text.find("://");
  if (scheme == std::string_view::npos)
    return absl::InvalidArgumentError(fmt::format("{:?}: want http://host:port or https://...", text));
  u.scheme = absl::AsciiStrToLower(std::string(text.substr(0, scheme)));
  if (u.scheme != "http" && u.scheme != "https")
    return absl::InvalidArgumentError(
        fmt::format("{:?}: scheme {:?}: want http or https", text, u.scheme));
  std::string_view rest = text.substr(scheme + 3);
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  u.prefix = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
  while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
  if (authority.find('@') != std::string_view::npos)
    return absl::InvalidArgumentError(fmt::format(
        "{:?}: credentials in a URL show in ps and logs; use the basic-auth flags", text));
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos)
      return absl::InvalidArgumentError(fmt::format("{:?}: unclosed '['", text));
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return absl::InvalidArgumentError(fmt::format("{:?}: bad host", text));
      port_text = after.substr(1);
    }
  } else {
    size_t colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (u.host.empty()) return absl::InvalidArgumentError(fmt::format("{:?}: no host", text));
  u.port = u.scheme == "https" ? 443 : 80;
  if (!port_text.empty() && (!absl::SimpleAtoi(std::string(port_text), &u.port) || u.port < 1 || u.port > 65535))
    return absl::InvalidArgumentError(fmt::format("{:?}: bad port {:?}", text, port_text));
  return u;
}

absl::StatusOr<HttpClient> HttpClient::Create(const Url& url, const HttpClientConfig& config,
                                              HttpTimeouts timeouts) {
  HttpClient c;
  c.url_ = url;
  c.config_ = config;
  c.timeouts_ = timeouts;
  if (url.scheme == "https") {
    auto tls = config.cert_file.empty()
                   ? std::make_unique<httplib::SSLClient>(url.host, url.port)
                   : std::make_unique<httplib::SSLClient>(url.host, url.port, config.cert_file,
                                                          config.key_file);
    if (!tls->is_valid())
      return absl::InvalidArgumentError(fmt::format(
          "{}: cannot load the client certificate {} with key {}: {}", url.Origin(),
          config.cert_file, config.key_file, OpenSslQueue()));
    if (!config.ca_file.empty()) tls->set_ca_cert_path(config.ca_file.c_str());
    tls->enable_server_certificate_verification(!config.insecure_skip_verify);
    c.tls_ = tls.get();
    c.client_ = std::move(tls);
  } else {
    if (!config.ca_file.empty() || !config.cert_file.empty() || config.insecure_skip_verify)
      return absl::InvalidArgumentError(fmt::format(
          "{}: TLS settings given for an http:// URL (want https://)", url.Origin()));
    c.client_ = std::make_unique<httplib::ClientImpl>(url.host, url.port);
  }
  c.client_->set_connection_timeout(absl::ToChronoMicroseconds(timeouts.connect));
  c.client_->set_read_timeout(absl::ToChronoMicroseconds(timeouts.io));
  c.client_->set_write_timeout(absl::ToChronoMicroseconds(timeouts.io));
  c.client_->set_keep_alive(true);
  return c;
}

HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;
HttpClient::~HttpClient() = default;

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> HttpClient::RequestHeaders()
    const {
  std::vector<std::pair<std::string, std::string>> h = config_.headers;
  if (!config_.basic_auth_user.empty()) {
    std::string password;
    if (!config_.basic_auth_password_file.empty()) {
      absl::StatusOr<std::string> p = ReadSecret(config_.basic_auth_password_file, "password file");
      if (!p.ok()) return p.status();
      password = *std::move(p);
    }
    h.emplace_back("Authorization", "Basic " + Base64(config_.basic_auth_user + ":" + password));
  } else if (!config_.bearer_token_file.empty()) {
    absl::StatusOr<std::string> t = ReadSecret(config_.bearer_token_file, "bearer token file");
    if (!t.ok()) return t.status();
    h.emplace_back("Authorization", "Bearer " + *t);
  }
  h.emplace_back("User-Agent", "svcmap");
  return h;
}

std::string HttpClient::Explain(int error) const {
  switch (static_cast<httplib::Error>(error)) {
    case httplib::Error::Connection:
    case httplib::Error::ConnectionTimeout:
      return WhyNoConnection(url_.host, url_.port, timeouts_.connect);
    case httplib::Error::Read:
      return fmt::format(
          "no complete answer: the server closed the connection, or was silent for {}",
          Seconds(timeouts_.io));
    case httplib::Error::Write:
      return fmt::format("sending the request failed: the connection closed or stalled for {}",
                         Seconds(timeouts_.io));
    case httplib::Error::SSLConnection:
    case httplib::Error::SSLServerVerification: {
      long verify = tls_ != nullptr ? tls_->get_openssl_verify_result() : X509_V_OK;
      std::string queue = OpenSslQueue();
      if (verify != X509_V_OK)
        return fmt::format("TLS: the server's certificate does not verify: {}{}",
                           X509_verify_cert_error_string(verify),
                           config_.ca_file.empty() ? " (no --*-ca-file given: the system's CAs)"
                                                   : fmt::format(" (CA {})", config_.ca_file));
      if (static_cast<httplib::Error>(error) == httplib::Error::SSLServerVerification)
        return fmt::format("TLS: the server's certificate is not for host {:?}", url_.host);
      return fmt::format("TLS handshake failed{}{} (is it an https server?)",
                         queue.empty() ? "" : ": ", queue);
    }
    case httplib::Error::SSLLoadingCerts:
      return fmt::format("TLS: cannot load the CA file {:?}: {}", config_.ca_file, OpenSslQueue());
    default:
      return httplib::to_string(static_cast<httplib::Error>(error));
  }
}

absl::StatusOr<HttpResponse> HttpClient::Get(
    std::string_view path, const std::vector<std::pair<std::string, std::string>>& query) {
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> h = RequestHeaders();
  if (!h.ok()) return h.status();
  httplib::Headers headers(h->begin(), h->end());
  httplib::Params params(query.begin(), query.end());
  httplib::Result res = client_->Get(url_.prefix + std::string(path), params, headers);
  if (!res)
    return absl::UnavailableError(
        fmt::format("{}: {}", url_.Origin(), Explain(static_cast<int>(res.error()))));
  return HttpResponse{res->status, std::move(res->body)};
}

absl::StatusOr<HttpResponse> HttpClient::Post(
    std::string_view path, const std::string& body, std::string_view content_type,
    const std::vector<std::pair<std::string, std::string>>& extra) {
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> h = RequestHeaders();
  if (!h.ok()) return h.status();
  httplib::Headers headers(h->begin(), h->end());
  headers.insert(extra.begin(), extra.end());
  httplib::Result res =
      client_->Post(url_.prefix + std::string(path), headers, body, std::string(content_type));
  if (!res)
    return absl::UnavailableError(
        fmt::format("{}: {}", url_.Origin(), Explain(static_cast<int>(res.error()))));
  return HttpResponse{res->status, std::move(res->body)};
}

std::string DescribeStatus(const HttpResponse& r) {
  std::string body = r.body.substr(0, 200);
  for (char& c : body)
    if (c == '\n' || c == '\r') c = ' ';
  while (!body.empty() && body.back() == ' ') body.pop_back();
  return body.empty() ? fmt::format("HTTP {}", r.status) : fmt::format("HTTP {}: {}", r.status, body);
}

}  // namespace svcmap::net
