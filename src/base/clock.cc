#include "svcmap/base/clock.h"

#include <time.h>

namespace svcmap {

uint64_t BoottimeNs() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + ts.tv_nsec;
}

int64_t RealtimeMinusBoottimeNs() {
  timespec rt{}, bt{};
  clock_gettime(CLOCK_REALTIME, &rt);
  clock_gettime(CLOCK_BOOTTIME, &bt);
  return (static_cast<int64_t>(rt.tv_sec) - bt.tv_sec) * 1'000'000'000LL +
         (rt.tv_nsec - bt.tv_nsec);
}

}  // namespace svcmap
