#include "svcmap/scan/proc_parse.h"

#include <array>
#include <charconv>
#include <cstring>

#include "fmt/format.h"

namespace svcmap::scan {
namespace {

// Splits on runs of spaces and tabs, without allocating.
class Fields {
 public:
  explicit Fields(std::string_view s) : rest_(s) {}
  std::optional<std::string_view> Next() {
    size_t b = rest_.find_first_not_of(" \t");
    if (b == std::string_view::npos) return std::nullopt;
    rest_.remove_prefix(b);
    size_t e = rest_.find_first_of(" \t");
    std::string_view f = rest_.substr(0, e);
    rest_.remove_prefix(e == std::string_view::npos ? rest_.size() : e);
    return f;
  }

 private:
  std::string_view rest_;
};

template <typename T>
bool ParseUnsigned(std::string_view s, T& out, int base = 10) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && p == s.data() + s.size();
}

// "0100007F:1F90" (tcp) or 32 hex digits + ":" + port (tcp6).
bool ParseHexEndpoint(std::string_view s, bool ipv6, flow::IpAddr& ip, uint16_t& port) {
  size_t colon = s.find(':');
  const size_t words = ipv6 ? 4 : 1;
  if (colon != words * 8) return false;
  std::array<uint8_t, 16> bytes{};
  for (size_t w = 0; w < words; ++w) {
    uint32_t v = 0;
    if (!ParseUnsigned(s.substr(w * 8, 8), v, 16)) return false;
    // The kernel printed a network-order word as a host (little-endian)
    // integer: its first byte is the low byte.
    std::memcpy(&bytes[w * 4], &v, 4);
  }
  if (!ParseUnsigned(s.substr(colon + 1), port, 16)) return false;
  ip = flow::IpAddr::FromKernel(ipv6 ? 10 : 2, bytes.data());
  return true;
}

}  // namespace

std::optional<uint64_t> ParseSocketLink(std::string_view link) {
  constexpr std::string_view kPrefix = "socket:[";
  if (link.size() <= kPrefix.size() + 1 || link.substr(0, kPrefix.size()) != kPrefix ||
      link.back() != ']')
    return std::nullopt;
  uint64_t ino = 0;
  if (!ParseUnsigned(link.substr(kPrefix.size(), link.size() - kPrefix.size() - 1), ino))
    return std::nullopt;
  return ino;
}

absl::StatusOr<TcpOpens> ParseSnmpTcp(std::string_view snmp) {
  // Two "Tcp:" lines: the names, then the values, in the same order.
  std::optional<std::string_view> names, values;
  while (!snmp.empty()) {
    size_t nl = snmp.find('\n');
    std::string_view line = snmp.substr(0, nl);
    snmp.remove_prefix(nl == std::string_view::npos ? snmp.size() : nl + 1);
    if (line.substr(0, 4) != "Tcp:") continue;
    if (!names)
      names = line.substr(4);
    else if (!values)
      values = line.substr(4);
  }
  if (!names || !values) return absl::InvalidArgumentError("snmp: no Tcp: name and value lines");
  Fields n(*names), v(*values);
  TcpOpens out;
  int found = 0;
  for (;;) {
    std::optional<std::string_view> name = n.Next(), value = v.Next();
    if (!name || !value) break;
    uint64_t* dst = *name == "ActiveOpens"    ? &out.active_opens
                    : *name == "PassiveOpens" ? &out.passive_opens
                                              : nullptr;
    if (dst == nullptr) continue;
    if (!ParseUnsigned(*value, *dst))
      return absl::InvalidArgumentError(fmt::format("snmp: {} is not a number", *name));
    ++found;
  }
  if (found != 2) return absl::InvalidArgumentError("snmp: no ActiveOpens/PassiveOpens");
  return out;
}

absl::StatusOr<ProcStat> ParseProcStat(std::string_view stat) {
  size_t open = stat.find('(');
  size_t close = stat.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open)
    return absl::InvalidArgumentError("stat: no (comm)");
  ProcStat out;
  out.comm = std::string(stat.substr(open + 1, close - open - 1));
  // After ") " come fields 3 (state) onwards; starttime is field 22.
  Fields f(stat.substr(close + 1));
  std::optional<std::string_view> field;
  for (int i = 3; i <= 22; ++i) {
    field = f.Next();
    if (!field) return absl::InvalidArgumentError(fmt::format("stat: only {} fields", i - 1));
    if (i == 3 && !field->empty()) out.state = (*field)[0];
  }
  if (!ParseUnsigned(*field, out.start_ticks))
    return absl::InvalidArgumentError("stat: starttime is not a number");
  return out;
}

ProcNetTcp ParseProcNetTcp(std::string_view text, bool ipv6) {
  ProcNetTcp out;
  bool header = true;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (header) {
      header = false;
      continue;
    }
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    Fields f(line);
    std::optional<std::string_view> sl = f.Next(), local = f.Next(), remote = f.Next(),
                                     st = f.Next();
    std::optional<std::string_view> inode;
    for (int i = 0; i < 6; ++i) inode = f.Next();  // tx:rx tr:when retrnsmt uid timeout inode
    DiagSock e;
    e.family = ipv6 ? 10 : 2;  // AF_INET6, AF_INET
    if (!sl || !inode || !ParseHexEndpoint(*local, ipv6, e.local_ip, e.local_port) ||
        !ParseHexEndpoint(*remote, ipv6, e.remote_ip, e.remote_port) ||
        !ParseUnsigned(*st, e.state, 16) || !ParseUnsigned(*inode, e.inode)) {
      ++out.bad_lines;
      continue;
    }
    out.entries.push_back(e);
  }
  return out;
}

}  // namespace svcmap::scan
