#include "svcmap/net/web_config.h"

#include <crypt.h>

#include <string>

#include "gtest/gtest.h"
#include "openssl/evp.h"

namespace svcmap::net {
namespace {

// A bcrypt hash of `password` at the lowest cost, made here by libcrypt.
std::string Bcrypt(const std::string& password) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  EXPECT_NE(crypt_gensalt_rn("$2b$", 4, nullptr, 0, salt, sizeof(salt)), nullptr);
  crypt_data data{};
  return crypt_r(password.c_str(), salt, &data);
}

std::string BasicHeader(const std::string& user_pass) {
  std::string out(4 * ((user_pass.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(user_pass.data()),
                          static_cast<int>(user_pass.size()));
  out.resize(static_cast<size_t>(n));
  return "Basic " + out;
}

TEST(ParseWebConfig, TheExporterToolkitFieldsWithPathsFromTheFilesDirectory) {
  const std::string hash = Bcrypt("pw");
  absl::StatusOr<WebConfig> c = ParseWebConfig(
      "tls_server_config:\n"
      "  cert_file: tls/agent.pem\n"
      "  key_file: /etc/svcmap/agent.key\n"
      "  client_ca_file: ca.pem\n"
      "  min_version: TLS13\n"
      "http_server_config:\n"
      "  headers:\n"
      "    Strict-Transport-Security: max-age=31536000\n"
      "basic_auth_users:\n"
      "  prometheus: '" + hash + "'\n",
      "/etc/svcmap");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->tls.has_value());
  EXPECT_EQ(c->tls->cert_file, "/etc/svcmap/tls/agent.pem");
  EXPECT_EQ(c->tls->key_file, "/etc/svcmap/agent.key");
  EXPECT_EQ(c->tls->client_ca_file, "/etc/svcmap/ca.pem");
  // A client CA alone means client certificates required and verified.
  EXPECT_EQ(c->tls->client_auth_type, "RequireAndVerifyClientCert");
  EXPECT_EQ(c->tls->min_version, "TLS13");
  EXPECT_EQ(c->basic_auth_users.at("prometheus"), hash);
  ASSERT_EQ(c->headers.size(), 1u);
  EXPECT_EQ(c->headers[0].first, "Strict-Transport-Security");
  // Empty, or basic auth alone, are valid too.
  EXPECT_FALSE(ParseWebConfig("", "/")->tls.has_value());
  EXPECT_TRUE(ParseWebConfig("basic_auth_users:\n  a: '" + hash + "'\n", "/").ok());
}

TEST(ParseWebConfig, MistakesAreOneLineNamingTheKey) {
  auto message = [](const std::string& yaml) {
    absl::StatusOr<WebConfig> c = ParseWebConfig(yaml, "/x");
    return c.ok() ? std::string("ok") : std::string(c.status().message());
  };
  EXPECT_EQ(message("tls_server_config:\n  cert_file: a\n  key_file: b\n  certfile: c\n"),
            "--web.config.file: tls_server_config: unknown key \"certfile\"");
  EXPECT_EQ(message("tls_server_config:\n  cert_file: a\n"),
            "--web.config.file: tls_server_config needs cert_file and key_file");
  EXPECT_EQ(message("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n"),
            "--web.config.file: tls_server_config.cipher_suites: not supported by svcmap");
  EXPECT_NE(message("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS9\n")
                .find("TLS version \"TLS9\""),
            std::string::npos);
  EXPECT_NE(message("tls_server_config:\n  cert_file: a\n  key_file: b\n"
                    "  client_auth_type: VerifyClientCertIfGiven\n")
                .find("needs client_ca_file"),
            std::string::npos);
  EXPECT_NE(message("basic_auth_users:\n  a: plaintext\n").find("not a bcrypt hash"),
            std::string::npos);
  EXPECT_NE(message("basic_auth_user:\n  a: b\n").find("unknown key \"basic_auth_user\""),
            std::string::npos);
  EXPECT_NE(message("tls_server_config: [").find("--web.config.file: "), std::string::npos);
}

TEST(BasicAuth, OnlyTheRightPasswordForAKnownUser) {
  BasicAuth auth({{"prometheus", Bcrypt("s3cret")}});
  EXPECT_TRUE(auth.Allows(BasicHeader("prometheus:s3cret")));
  EXPECT_TRUE(auth.Allows(BasicHeader("prometheus:s3cret")));  // remembered
  EXPECT_FALSE(auth.Allows(BasicHeader("prometheus:s3cret ")));
  EXPECT_FALSE(auth.Allows(BasicHeader("prometheus:")));
  EXPECT_FALSE(auth.Allows(BasicHeader("other:s3cret")));
  EXPECT_FALSE(auth.Allows(BasicHeader("prometheus")));
  EXPECT_FALSE(auth.Allows("Bearer s3cret"));
  EXPECT_FALSE(auth.Allows("Basic !!!not-base64"));
  EXPECT_FALSE(auth.Allows(""));
}

}  // namespace
}  // namespace svcmap::net
