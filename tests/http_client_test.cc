#include "svcmap/net/http_client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "gtest/gtest.h"
#include "httplib.h"

namespace svcmap::net {
namespace {

TEST(ParseUrl, SplitsHostPortAndPrefix) {
  absl::StatusOr<Url> u = ParseUrl("https://vm.example:8427/select/0/prometheus/");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->host, "vm.example");
  EXPECT_EQ(u->port, 8427);
  EXPECT_EQ(u->prefix, "/select/0/prometheus");
  EXPECT_EQ(u->Origin(), "https://vm.example:8427");
  u = ParseUrl("http://[fd00::1]");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "fd00::1");
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->Origin(), "http://[fd00::1]:80");
  EXPECT_EQ(ParseUrl("HTTPS://h")->port, 443);
  for (const char* bad : {"vm:8428", "ftp://vm", "http://", "http://:80", "http://vm:0",
                          "http://vm:99999", "http://vm:x", "http://[::1", "http://u:p@vm"})
    EXPECT_FALSE(ParseUrl(bad).ok()) << bad;
  EXPECT_NE(ParseUrl("http://u:p@vm").status().message().find("basic-auth"), std::string::npos);
}

TEST(ParseHeader, NameColonValue) {
  auto h = ParseHeader("X-Scope-OrgID:  team-a ");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->first, "X-Scope-OrgID");
  EXPECT_EQ(h->second, "team-a");
  for (const char* bad : {"novalue", ": x", "Bad Name: x", "X-A: a\r\nX-B: b"})
    EXPECT_FALSE(ParseHeader(bad).ok()) << bad;
  // Credentials belong in files, not in argv.
  EXPECT_FALSE(ParseHeader("Authorization: Bearer x").ok());
}

TEST(ValidateHttpClientConfig, NamesTheFlagThatIsWrong) {
  HttpClientConfig c;
  EXPECT_TRUE(ValidateHttpClientConfig(c, "--tsdb").ok());
  c.ca_file = "/nonexistent/ca.pem";
  absl::Status s = ValidateHttpClientConfig(c, "--tsdb");
  EXPECT_EQ(s.message(), "--tsdb-ca-file /nonexistent/ca.pem: No such file or directory");
  c = {};
  c.cert_file = "/etc/hostname";
  EXPECT_EQ(ValidateHttpClientConfig(c, "--tsdb").message(),
            "--tsdb-cert-file and --tsdb-key-file go together");
  c = {};
  c.basic_auth_user = "u";
  c.bearer_token_file = "/etc/hostname";
  EXPECT_EQ(ValidateHttpClientConfig(c, "--agents").message(),
            "--agents: basic auth or a bearer token, not both");
  c = {};
  c.basic_auth_password_file = "/etc/hostname";
  EXPECT_FALSE(ValidateHttpClientConfig(c, "--agents").ok());
  c = {};
  c.insecure_skip_verify = true;
  c.ca_file = "/etc/hostname";
  EXPECT_FALSE(ValidateHttpClientConfig(c, "--agents").ok());
}

TEST(HttpClient, TlsSettingsOnPlainHttpAreRefused) {
  HttpClientConfig c;
  c.insecure_skip_verify = true;
  EXPECT_FALSE(HttpClient::Create(*ParseUrl("http://127.0.0.1:9"), c).ok());
}

// A loopback port that is bound but not listening refuses every connect.
TEST(HttpClient, ARefusedConnectionSaysSo) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  absl::StatusOr<HttpClient> c =
      HttpClient::Create(*ParseUrl("http://127.0.0.1:" + std::to_string(port)), {});
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<HttpResponse> r = c->Get("/api/v1/query");
  close(fd);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "http://127.0.0.1:" + std::to_string(port) + ": connection refused");
}

TEST(HttpClient, AnUnreadableSecretFailsTheRequestNamingTheFile) {
  HttpClientConfig cfg;
  cfg.bearer_token_file = "/nonexistent/token";
  absl::StatusOr<HttpClient> c = HttpClient::Create(*ParseUrl("http://127.0.0.1:9"), cfg);
  ASSERT_TRUE(c.ok());
  absl::StatusOr<HttpResponse> r = c->Get("/");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "bearer token file /nonexistent/token: No such file or directory");
}

// What a store behind a tenant proxy sees: the header, and credentials read
// from their files at each request (a rotated secret is used at once).
TEST(HttpClient, SendsHeadersAndCredentialsFromFilesReadAtEachRequest) {
  httplib::Server server;
  std::string seen_auth, seen_tenant, seen_body;
  server.Post("/write", [&](const httplib::Request& req, httplib::Response& res) {
    seen_auth = req.get_header_value("Authorization");
    seen_tenant = req.get_header_value("X-Scope-OrgID");
    seen_body = req.body;
    res.status = 204;
  });
  server.set_keep_alive_max_count(1);  // stop() would wait out a kept-alive connection
  const int port = server.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread serving([&] { server.listen_after_bind(); });
  const std::string token = testing::TempDir() + "/svcmap-token";
  std::ofstream(token) << "first\n";
  HttpClientConfig cfg;
  cfg.bearer_token_file = token;
  cfg.headers = {{"X-Scope-OrgID", "team-a"}};
  absl::StatusOr<HttpClient> c =
      HttpClient::Create(*ParseUrl("http://127.0.0.1:" + std::to_string(port)), cfg);
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<HttpResponse> r = c->Post("/write", "abc", "application/x-protobuf", {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 204);
  EXPECT_EQ(seen_auth, "Bearer first");
  EXPECT_EQ(seen_tenant, "team-a");
  EXPECT_EQ(seen_body, "abc");
  std::ofstream(token) << "second";
  ASSERT_TRUE(c->Post("/write", "", "text/plain", {}).ok());
  EXPECT_EQ(seen_auth, "Bearer second");

  const std::string password = testing::TempDir() + "/svcmap-password";
  std::ofstream(password) << "s3cret\n";
  cfg = {};
  cfg.basic_auth_user = "svcmap";
  cfg.basic_auth_password_file = password;
  c = HttpClient::Create(*ParseUrl("http://127.0.0.1:" + std::to_string(port)), cfg);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->Post("/write", "", "text/plain", {}).ok());
  EXPECT_EQ(seen_auth, "Basic c3ZjbWFwOnMzY3JldA==");  // base64("svcmap:s3cret")
  server.stop();
  serving.join();
}

TEST(DescribeStatus, OneLineAndBounded) {
  EXPECT_EQ(DescribeStatus({401, "Unauthorized\n"}), "HTTP 401: Unauthorized");
  EXPECT_EQ(DescribeStatus({502, ""}), "HTTP 502");
  EXPECT_EQ(DescribeStatus({500, std::string(1000, 'x')}).size(), std::string("HTTP 500: ").size() + 200);
}

}  // namespace
}  // namespace svcmap::net
