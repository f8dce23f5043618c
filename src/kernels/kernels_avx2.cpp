// AVX2 level (AVX2 + FMA + F16C + BMI2, Haswell / Zen 1 and later). The int8 dot is maddubs (u8 x s8 ->
// pairs in int16) + madd with ones (-> int32): 2 uops per 32 products; Zen 3 issues maddubs on 2 pipes.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::avx2 {

constexpr Isa kIsa = Isa::avx2;

namespace {
inline __m256i dot_u8s8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}
// acc + madd(p, s): int16 pairs p * s summed into int32 lanes (k-quant scales, x86_matmul_tiles_k.inc).
inline __m256i madd_i16_acc(__m256i acc, __m256i p, __m256i s) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));
}
}  // namespace

#include "kernels/x86_simd_common.inc"
#include "kernels/x86_quantize.inc"
#include "kernels/x86_matmul_tiles.inc"
#include "kernels/x86_matmul_tiles_k.inc"
#include "kernels/x86_ops.inc"
#include "kernels/x86_fill_table.inc"

}  // namespace qe::kernels::avx2
