// x86-64 detection: CPUID leaves 1 and 7 for the instructions, XGETBV(0) for what the OS saves on
// context switch. A hypervisor can hide AVX state even when CPUID lists AVX2, so both are required.
#include <cpuid.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu_features.h"

namespace qe::kernels {
namespace {

uint64_t read_xcr0() {
  uint32_t eax = 0, edx = 0;
  // xgetbv as raw bytes so this file needs no -mxsave; only called after CPUID says OSXSAVE.
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

}  // namespace

CpuFeatures detect_cpu_features() {
  CpuFeatures f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  const unsigned max_leaf = __get_cpuid_max(0, nullptr);
  __cpuid_count(0, 0, a, b, c, d);
  char vendor[13] = {};
  std::memcpy(vendor + 0, &b, 4);  // EBX, EDX, ECX: "Genu" "ineI" "ntel"
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  f.vendor = vendor;
  if (max_leaf < 1) return f;
  __cpuid_count(1, 0, a, b, c, d);
  const bool osxsave = (c >> 27) & 1;
  f.fma = (c >> 12) & 1;
  f.f16c = (c >> 29) & 1;
  if (osxsave) {
    const uint64_t xcr0 = read_xcr0();
    f.os_ymm = (xcr0 & 0x6) == 0x6;           // SSE + AVX state
    f.os_zmm = (xcr0 & 0xe6) == 0xe6;         // + opmask, ZMM_Hi256, Hi16_ZMM
  }
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = (b >> 5) & 1;
    f.bmi2 = (b >> 8) & 1;
    f.avx512f = (b >> 16) & 1;
    f.avx512dq = (b >> 17) & 1;
    f.avx512bw = (b >> 30) & 1;
    f.avx512vl = (b >> 31) & 1;
    f.avx512vnni = (c >> 11) & 1;
    f.gfni = (c >> 8) & 1;
    if (a >= 1) {  // leaf 7's max subleaf; subleaf 1 EAX bit 5: AVX512_BF16
      __cpuid_count(7, 1, a, b, c, d);
      f.avx512bf16 = ((a >> 5) & 1) && f.avx512f && f.os_zmm;
    }
  }
  char brand[49] = {};
  if (static_cast<unsigned>(__get_cpuid_max(0x80000000, nullptr)) >= 0x80000004u) {
    for (unsigned i = 0; i < 3; ++i) {
      __cpuid_count(0x80000002 + i, 0, a, b, c, d);
      std::memcpy(brand + 16 * i + 0, &a, 4);
      std::memcpy(brand + 16 * i + 4, &b, 4);
      std::memcpy(brand + 16 * i + 8, &c, 4);
      std::memcpy(brand + 16 * i + 12, &d, 4);
    }
  }
  f.brand = brand[0] ? brand : "unknown x86-64";
  return f;
}

bool cpu_has_isa(const CpuFeatures& f, Isa isa) {
  switch (isa) {
    case Isa::ref: return true;
    case Isa::avx2: return f.os_ymm && f.avx2 && f.fma && f.f16c && f.bmi2;
    case Isa::avx512:
      return cpu_has_isa(f, Isa::avx2) && f.os_zmm && f.avx512f && f.avx512bw && f.avx512vl &&
             f.avx512dq && f.avx512vnni;
    case Isa::neon: return false;
  }
  return false;
}

}  // namespace qe::kernels
