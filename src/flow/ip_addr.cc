#include "svcmap/flow/ip_addr.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "fmt/format.h"

namespace svcmap::flow {
namespace {

constexpr uint8_t kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

IpAddr IpAddr::V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  IpAddr ip;
  ip.version_ = kV4;
  ip.bytes_[0] = a;
  ip.bytes_[1] = b;
  ip.bytes_[2] = c;
  ip.bytes_[3] = d;
  return ip;
}

IpAddr IpAddr::FromKernel(uint16_t family, const uint8_t* bytes) {
  IpAddr ip;
  if (family == AF_INET6) {
    if (std::memcmp(bytes, kV4MappedPrefix, sizeof(kV4MappedPrefix)) == 0) {
      std::copy_n(bytes + 12, 4, ip.bytes_.begin());
      ip.version_ = kV4;
    } else {
      std::copy_n(bytes, 16, ip.bytes_.begin());
      ip.version_ = kV6;
    }
  } else {
    std::copy_n(bytes, 4, ip.bytes_.begin());
    ip.version_ = kV4;
  }
  return ip;
}

std::optional<IpAddr> IpAddr::Parse(std::string_view text) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof(buf)) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  uint8_t bytes[16] = {};
  if (inet_pton(AF_INET, buf, bytes) == 1) return FromKernel(AF_INET, bytes);
  if (inet_pton(AF_INET6, buf, bytes) == 1) return FromKernel(AF_INET6, bytes);
  return std::nullopt;
}

bool IpAddr::IsLoopback() const {
  if (is_v4()) return bytes_[0] == 127;
  static constexpr uint8_t kLoop6[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                         0, 0, 0, 0, 0, 0, 0, 1};
  return std::memcmp(bytes_.data(), kLoop6, 16) == 0;
}

bool IpAddr::IsUnspecified() const {
  size_t n = is_v4() ? 4 : 16;
  return std::all_of(bytes_.begin(), bytes_.begin() + n,
                     [](uint8_t b) { return b == 0; });
}

std::string IpAddr::ToString() const {
  std::string out;
  AppendTo(out);
  return out;
}

void IpAddr::AppendTo(std::string& out) const {
  if (is_v4()) {
    // inet_ntop costs ~200 ns here; four small numbers do not need it.
    for (int i = 0; i < 4; ++i) {
      if (i) out.push_back('.');
      out.append(fmt::format_int(bytes_[i]).c_str());
    }
    return;
  }
  char buf[INET6_ADDRSTRLEN];
  const char* s = inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes_.data(), buf, sizeof(buf));
  out.append(s ? s : "?");
}

}  // namespace svcmap::flow
