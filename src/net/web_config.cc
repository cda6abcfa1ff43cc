#include "svcmap/net/web_config.h"

#include <crypt.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fmt/format.h"
#include "httplib.h"
#include "openssl/crypto.h"
#include "openssl/err.h"
#include "openssl/evp.h"
#include "openssl/sha.h"
#include "openssl/ssl.h"
#include "yaml-cpp/yaml.h"

namespace svcmap::net {
namespace {

constexpr size_t kMaxRemembered = 256;

absl::Status Bad(std::string_view what) {
  return absl::InvalidArgumentError(fmt::format("--web.config.file: {}", what));
}

std::string Resolve(const std::string& dir, const std::string& path) {
  if (path.empty() || path.front() == '/' || dir.empty()) return path;
  return dir + "/" + path;
}

// Keys a mapping may have: anything else is a typo the operator must hear of.
absl::Status OnlyKeys(const YAML::Node& map, std::string_view where,
                      std::initializer_list<std::string_view> known,
                      std::initializer_list<std::string_view> unsupported = {}) {
  if (!map.IsMap()) return Bad(fmt::format("{}: want a mapping", where));
  for (const auto& kv : map) {
    const std::string key = kv.first.as<std::string>();
    bool ok = false;
    for (std::string_view k : known) ok = ok || key == k;
    for (std::string_view k : unsupported)
      if (key == k) return Bad(fmt::format("{}.{}: not supported by svcmap", where, key));
    if (!ok) return Bad(fmt::format("{}: unknown key {:?}", where, key));
  }
  return absl::OkStatus();
}

int TlsVersion(std::string_view name) {
  if (name == "TLS10") return TLS1_VERSION;
  if (name == "TLS11") return TLS1_1_VERSION;
  if (name == "TLS12") return TLS1_2_VERSION;
  if (name == "TLS13") return TLS1_3_VERSION;
  return -1;
}

bool IsBcrypt(const std::string& hash) {
  return hash.size() == 60 && hash[0] == '$' && hash[1] == '2' &&
         (hash[2] == 'a' || hash[2] == 'b' || hash[2] == 'y') && hash[3] == '$';
}

std::string Sha256(std::string_view s) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  return std::string(reinterpret_cast<char*>(d), sizeof(d));
}

std::optional<std::string> Unbase64(std::string_view in) {
  std::string out(3 * (in.size() / 4) + 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0 || in.size() % 4 != 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding's zero bytes too.
  size_t pad = 0;
  for (size_t i = in.size(); i > 0 && in[i - 1] == '='; --i) ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

bool BcryptMatches(const std::string& password, const std::string& hash) {
  crypt_data data{};
  const char* got = crypt_r(password.c_str(), hash.c_str(), &data);
  return got != nullptr && std::strlen(got) == hash.size() &&
         CRYPTO_memcmp(got, hash.data(), hash.size()) == 0;
}

}  // namespace

absl::StatusOr<WebConfig> ParseWebConfig(std::string_view yaml, const std::string& dir) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return Bad(e.what());
  }
  WebConfig c;
  if (root.IsNull()) return c;
  try {
    if (absl::Status s = OnlyKeys(root, "top level",
                                  {"tls_server_config", "http_server_config", "basic_auth_users"});
        !s.ok())
      return s;
    if (YAML::Node t = root["tls_server_config"]; t && !t.IsNull()) {
      if (absl::Status s = OnlyKeys(t, "tls_server_config",
                                    {"cert_file", "key_file", "client_auth_type",
                                     "client_ca_file", "min_version", "max_version"},
                                    {"cert", "key", "client_ca", "cipher_suites",
                                     "curve_preferences", "prefer_server_cipher_suites",
                                     "client_allowed_sans"});
          !s.ok())
        return s;
      WebConfig::Tls tls;
      tls.cert_file = Resolve(dir, t["cert_file"].as<std::string>(""));
      tls.key_file = Resolve(dir, t["key_file"].as<std::string>(""));
      tls.client_ca_file = Resolve(dir, t["client_ca_file"].as<std::string>(""));
      // As exporter-toolkit: a client CA alone means verified client certificates.
      tls.client_auth_type = t["client_auth_type"].as<std::string>(
          tls.client_ca_file.empty() ? "NoClientCert" : "RequireAndVerifyClientCert");
      tls.min_version = t["min_version"].as<std::string>("TLS12");
      tls.max_version = t["max_version"].as<std::string>("");
      if (tls.cert_file.empty() || tls.key_file.empty())
        return Bad("tls_server_config needs cert_file and key_file");
      for (const std::string& v : {tls.min_version, tls.max_version})
        if (!v.empty() && TlsVersion(v) < 0)
          return Bad(fmt::format("tls_server_config: TLS version {:?}: want TLS10, TLS11, TLS12 "
                                 "or TLS13",
                                 v));
      const std::string& a = tls.client_auth_type;
      if (a != "NoClientCert" && a != "RequestClientCert" && a != "RequireAnyClientCert" &&
          a != "VerifyClientCertIfGiven" && a != "RequireAndVerifyClientCert")
        return Bad(fmt::format("tls_server_config.client_auth_type {:?}: want NoClientCert, "
                               "RequestClientCert, RequireAnyClientCert, "
                               "VerifyClientCertIfGiven or RequireAndVerifyClientCert",
                               a));
      if ((a == "VerifyClientCertIfGiven" || a == "RequireAndVerifyClientCert") &&
          tls.client_ca_file.empty())
        return Bad(fmt::format("tls_server_config.client_auth_type {} needs client_ca_file", a));
      c.tls = tls;
    }
    if (YAML::Node h = root["http_server_config"]; h && !h.IsNull()) {
      if (absl::Status s = OnlyKeys(h, "http_server_config", {"headers", "http2"}); !s.ok())
        return s;
      if (YAML::Node headers = h["headers"]; headers && !headers.IsNull()) {
        if (!headers.IsMap()) return Bad("http_server_config.headers: want a mapping");
        for (const auto& kv : headers)
          c.headers.emplace_back(kv.first.as<std::string>(), kv.second.as<std::string>());
      }
    }
    if (YAML::Node users = root["basic_auth_users"]; users && !users.IsNull()) {
      if (!users.IsMap()) return Bad("basic_auth_users: want user: bcrypt-hash pairs");
      for (const auto& kv : users) {
        std::string user = kv.first.as<std::string>(), hash = kv.second.as<std::string>();
        if (!IsBcrypt(hash))
          return Bad(fmt::format("basic_auth_users.{}: not a bcrypt hash (htpasswd -nBC 10 {}, "
                                 "or python3's crypt with METHOD_BLOWFISH)",
                                 user, user));
        c.basic_auth_users[user] = hash;
      }
    }
  } catch (const YAML::Exception& e) {
    return Bad(e.what());
  }
  return c;
}

absl::StatusOr<WebConfig> LoadWebConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Bad(fmt::format("{}: {}", path, std::strerror(errno)));
  std::stringstream text;
  text << in.rdbuf();
  const size_t slash = path.rfind('/');
  absl::StatusOr<WebConfig> c =
      ParseWebConfig(text.str(), slash == std::string::npos ? "." : path.substr(0, slash));
  if (!c.ok())
    return absl::InvalidArgumentError(
        fmt::format("--web.config.file {}: {}", path,
                    std::string(c.status().message()).substr(std::strlen("--web.config.file: "))));
  if (c->tls)
    for (const std::string* f : {&c->tls->cert_file, &c->tls->key_file, &c->tls->client_ca_file})
      if (!f->empty() && access(f->c_str(), R_OK) != 0)
        return Bad(fmt::format("{}: {}: {}", path, *f, std::strerror(errno)));
  return c;
}

bool BasicAuth::Allows(std::string_view authorization) const {
  constexpr std::string_view kBasic = "Basic ";
  if (authorization.substr(0, kBasic.size()) != kBasic) return false;
  const std::string digest = Sha256(authorization);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (passed_.count(digest) != 0) return true;
  }
  std::optional<std::string> pair = Unbase64(authorization.substr(kBasic.size()));
  if (!pair) return false;
  const size_t colon = pair->find(':');
  if (colon == std::string::npos) return false;
  const std::string user = pair->substr(0, colon), password = pair->substr(colon + 1);
  auto it = users_.find(user);
  // An unknown user costs the same bcrypt as a known one: the time taken
  // does not tell which user names exist.
  static const std::string kDummy = "$2b$10$6o1KfaSDuSDsfj8W3w0as.YsRZADYfWgmfuoz7H0J2jK/CQB1DURS";
  const bool ok = BcryptMatches(password, it == users_.end() ? kDummy : it->second) &&
                  it != users_.end();
  if (ok) {
    std::lock_guard<std::mutex> lock(mu_);
    if (passed_.size() >= kMaxRemembered) passed_.clear();
    passed_.insert(digest);
  }
  return ok;
}

absl::StatusOr<std::unique_ptr<httplib::Server>> MakeServer(const WebConfig& config) {
  std::unique_ptr<httplib::Server> server;
  if (config.tls) {
    const WebConfig::Tls tls = *config.tls;
    std::string error;
    auto setup = [&tls, &error](SSL_CTX& ctx) {
      auto fail = [&](std::string what) {
        char buf[256] = "";
        if (unsigned long e = ERR_get_error(); e != 0) ERR_error_string_n(e, buf, sizeof(buf));
        error = fmt::format("{}: {}", what, buf);
        ERR_clear_error();
        return false;
      };
      if (SSL_CTX_use_certificate_chain_file(&ctx, tls.cert_file.c_str()) != 1)
        return fail(fmt::format("cert_file {}", tls.cert_file));
      if (SSL_CTX_use_PrivateKey_file(&ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1)
        return fail(fmt::format("key_file {}", tls.key_file));
      if (SSL_CTX_check_private_key(&ctx) != 1)
        return fail(fmt::format("key_file {} does not match cert_file {}", tls.key_file,
                                tls.cert_file));
      SSL_CTX_set_min_proto_version(&ctx, TlsVersion(tls.min_version));
      if (!tls.max_version.empty()) SSL_CTX_set_max_proto_version(&ctx, TlsVersion(tls.max_version));
      if (!tls.client_ca_file.empty()) {
        if (SSL_CTX_load_verify_locations(&ctx, tls.client_ca_file.c_str(), nullptr) != 1)
          return fail(fmt::format("client_ca_file {}", tls.client_ca_file));
        SSL_CTX_set_client_CA_list(&ctx, SSL_load_client_CA_file(tls.client_ca_file.c_str()));
      }
      const std::string& a = tls.client_auth_type;
      auto accept_any = [](int, X509_STORE_CTX*) { return 1; };
      if (a == "RequestClientCert") SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER, accept_any);
      if (a == "RequireAnyClientCert")
        SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, accept_any);
      if (a == "VerifyClientCertIfGiven") SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER, nullptr);
      if (a == "RequireAndVerifyClientCert")
        SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
      return true;
    };
    auto ssl = std::make_unique<httplib::SSLServer>(setup);
    if (!ssl->is_valid())
      return absl::InvalidArgumentError(fmt::format("--web.config.file: tls_server_config: {}",
                                                    error.empty() ? "TLS setup failed" : error));
    server = std::move(ssl);
  } else {
    server = std::make_unique<httplib::Server>();
  }
  if (!config.headers.empty()) {
    httplib::Headers headers(config.headers.begin(), config.headers.end());
    server->set_default_headers(headers);
  }
  if (!config.basic_auth_users.empty()) {
    auto auth = std::make_shared<BasicAuth>(config.basic_auth_users);
    server->set_pre_routing_handler([auth](const httplib::Request& req, httplib::Response& res) {
      if (auth->Allows(req.get_header_value("Authorization")))
        return httplib::Server::HandlerResponse::Unhandled;
      res.status = 401;
      res.set_header("WWW-Authenticate", "Basic realm=\"svcmap\"");
      res.set_content("Unauthorized\n", "text/plain");
      return httplib::Server::HandlerResponse::Handled;
    });
  }
  return server;
}

}  // namespace svcmap::net
