// Random bytes as one sock_diag datagram: headers, lengths and attributes
// all lie. The parser must stay inside the buffer.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "svcmap/scan/inet_diag.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<svcmap::scan::DiagSock> out;
  (void)svcmap::scan::ParseTcpDiagDatagram(absl::MakeConstSpan(data, size), out);
  return 0;
}
