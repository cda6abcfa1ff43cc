// Random bytes into the topology's parsers: a snapshot document, a
// Prometheus query answer, a window. The first byte picks the parser. They
// must never crash, hang or read out of bounds, whatever an agent, a store
// or a file says.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "svcmap/topology/sources.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0: (void)svcmap::topology::ParseSnapshot(text, "fuzz"); break;
    case 1: (void)svcmap::topology::ParsePromVector(text); break;
    case 2: (void)svcmap::topology::ParseWindow(text, absl::FromUnixSeconds(1700000000)); break;
  }
  return 0;
}
