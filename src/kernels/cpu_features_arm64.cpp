// arm64 detection from the kernel's HWCAP bits (the only portable way on Linux: the ID registers are
// trapped and emulated, and HWCAP also tells that the OS supports the state).
#include <sys/auxv.h>

#include "kernels/cpu_features.h"

#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_FPHP
#define HWCAP_FPHP (1 << 9)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif

namespace qe::kernels {

CpuFeatures detect_cpu_features() {
  CpuFeatures f;
  const unsigned long hw = getauxval(AT_HWCAP);
  f.asimd = hw & HWCAP_ASIMD;
  f.fphp = hw & HWCAP_FPHP;
  f.asimddp = hw & HWCAP_ASIMDDP;
  f.brand = "arm64";
  return f;
}

bool cpu_has_isa(const CpuFeatures& f, Isa isa) {
  switch (isa) {
    case Isa::ref: return true;
    case Isa::neon: return f.asimd && f.asimddp && f.fphp;
    default: return false;
  }
}

}  // namespace qe::kernels
