#ifndef SVCMAP_FLOW_IP_ADDR_H_
#define SVCMAP_FLOW_IP_ADDR_H_

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace svcmap::flow {

// An IPv4 or IPv6 address, bytes in network order. A v4-mapped IPv6 address
// (::ffff:a.b.c.d, what a dual-stack socket reports) is stored as IPv4, so
// that the two halves of one connection compare equal whichever socket
// family each end used.
class IpAddr {
 public:
  static constexpr uint8_t kV4 = 4;
  static constexpr uint8_t kV6 = 6;

  IpAddr() = default;  // 0.0.0.0
  static IpAddr V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d);
  // `family` is AF_INET or AF_INET6; `bytes` holds 4 or 16 bytes.
  static IpAddr FromKernel(uint16_t family, const uint8_t* bytes);
  static std::optional<IpAddr> Parse(std::string_view text);

  uint8_t version() const { return version_; }
  bool is_v4() const { return version_ == kV4; }
  bool IsLoopback() const;
  bool IsUnspecified() const;
  std::string ToString() const;
  // Appends the text form without a temporary (hot in `svcmap trace`).
  void AppendTo(std::string& out) const;
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }

  friend auto operator<=>(const IpAddr&, const IpAddr&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const IpAddr& a) {
    return H::combine(std::move(h), a.version_, a.bytes_);
  }

 private:
  uint8_t version_ = kV4;
  std::array<uint8_t, 16> bytes_{};  // IPv4 uses the first 4
};

}  // namespace svcmap::flow

#endif  // SVCMAP_FLOW_IP_ADDR_H_
