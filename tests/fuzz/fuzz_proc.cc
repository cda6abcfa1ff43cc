// Random bytes into every /proc text parser. The first byte picks the
// parser, so one corpus covers them all; the parsers must never crash,
// hang or read out of bounds, whatever the kernel (or a fake /proc) says.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "svcmap/scan/proc_parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 5) {
    case 0: (void)svcmap::scan::ParseSocketLink(text); break;
    case 1: (void)svcmap::scan::ParseSnmpTcp(text); break;
    case 2: (void)svcmap::scan::ParseProcStat(text); break;
    case 3: (void)svcmap::scan::ParseProcNetTcp(text, false); break;
    case 4: (void)svcmap::scan::ParseProcNetTcp(text, true); break;
  }
  return 0;
}
