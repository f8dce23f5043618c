// CPU feature detection and ISA levels. A level is a bundle of features that a kernel translation unit
// is compiled for; a level is usable only when the CPU has every feature AND the OS saves the registers
// (XCR0 on x86), otherwise the first vector instruction would fault.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace qe::kernels {

// Ordered: on x86 a higher level implies every lower one. neon is the arm64 level (armv8.2 dotprod).
enum class Isa { ref = 0, avx2 = 1, avx512 = 2, neon = 3 };

struct CpuFeatures {
  // x86
  bool avx2 = false, fma = false, f16c = false, bmi2 = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512vnni = false;
  bool avx512bf16 = false;  // vdpbf16ps (Cooper Lake, Sapphire Rapids, Zen 4): not part of a level, an
                            // extra the AVX-512 level uses for bf16 weights when present
  bool gfni = false;        // gf2p8affineqb (Ice Lake, Zen 4): an extra the AVX-512 level uses for q5_K
  bool os_ymm = false, os_zmm = false;  // XCR0: OS saves YMM / ZMM+opmask state
  // arm64
  bool asimd = false, asimddp = false, fphp = false;
  std::string brand;  // CPUID brand string or "unknown"
  // x86: CPUID leaf 0's vendor ("GenuineIntel", "AuthenticAMD", "HygonGenuine", ...); else empty.
  std::string vendor;
};

// Detected once (thread-safe), then cached.
const CpuFeatures& cpu_features();

// True when this build has kernels for the level and the CPU + OS can run them.
bool isa_supported(Isa isa);
// Highest supported level for this machine (ref when nothing else is).
Isa best_isa();

std::string_view isa_name(Isa isa);
std::optional<Isa> isa_from_name(std::string_view name);  // "ref", "avx2", "avx512", "neon" (case-insensitive)

// Implemented per architecture (cpu_features_x86.cpp / cpu_features_arm64.cpp).
CpuFeatures detect_cpu_features();
bool cpu_has_isa(const CpuFeatures& f, Isa isa);

}  // namespace qe::kernels
