// AVX-512 level (F + BW + VL + DQ + VNNI: Ice Lake, Sapphire Rapids, Zen 4). Same kernels as AVX2 on
// 256-bit vectors (no frequency penalty, same tile shapes), but the int8 dot is one VNNI vpdpbusd
// instead of maddubs + madd: half the uops in the GEMM inner loop. Not run on the development box
// (no AVX-512); tests skip it there and qbench reports it as unavailable.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::avx512 {

constexpr Isa kIsa = Isa::avx512;

namespace {
inline __m256i dot_u8s8(__m256i u, __m256i s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }
// acc + madd(p, s) in one VNNI vpdpwssd (k-quant scales, x86_matmul_tiles_k.inc).
inline __m256i madd_i16_acc(__m256i acc, __m256i p, __m256i s) { return _mm256_dpwssd_epi32(acc, p, s); }
}  // namespace

#include "kernels/x86_simd_common.inc"
#include "kernels/x86_quantize.inc"
#include "kernels/x86_matmul_tiles.inc"
#include "kernels/x86_matmul_tiles_k.inc"
#include "kernels/x86_ops.inc"
#include "kernels/x86_fill_table.inc"

}  // namespace qe::kernels::avx512
