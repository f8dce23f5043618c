// Activation quantizers f32 -> q8_0 / q8_1 on 512-bit vectors, 16 blocks at a time, byte-identical to the
// reference quantizers (src/formats/blocks.cpp) as the 256-bit ones (x86_quantize.inc) are: the same amax,
// d = amax / 127 and id = 1 / d as IEEE divisions, roundf's half-away-from-zero rounding, and q8_1's
// s = sum(q) * d rounded once to half.
//
// Why: per block, the 256-bit code runs a chain of a horizontal max, two scalar divisions, the
// rounding and a horizontal sum, ~70 cycles of latency that out-of-order execution overlaps over only
// two or three blocks; it took 3.7-3.8% of an 8-token batched decode step (SmolLM2-135M q4_1, Zen 4).
// Here the 16 blocks' maxima sit in one vector, so their d and 1/d are two vector divisions, and each
// block's reductions are independent of the others'. A row's last group may hold fewer than 16 blocks
// (576 floats: 16 + 2); it runs the same code with the lanes past its count left out, where the 256-bit
// code took 64 ns for those 2 blocks (a 576-float q8_1 row 252 -> 207 ns, 2-vCPU Xeon, Emerald Rapids).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

// GCC 12's 512-bit intrinsics pass _mm512_undefined_ps() as the unused merge source, which
// -Wmaybe-uninitialized reports once inlined (a known header false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace qe::kernels::avx512 {
namespace {

constexpr int kBlocks = 16;

// roundf(x) exactly, lane by lane (see round_half_away in x86_simd_common.inc): x - trunc(x) is exact
// for |x| < 2^23, and a fraction of at least one half moves one step away from zero.
inline __m512 round_half_away16(__m512 x) {
  const __m512 t = _mm512_roundscale_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(x, t));
  const __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 step = _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(x, _mm512_set1_ps(-0.0f)));
  return _mm512_mask_add_ps(t, up, t, step);
}

// count <= 16 blocks of 32 floats from x: writes their quants to qs(b) (32 bytes each) and returns d and
// the sums of the quants, one lane per block (lanes past count: 0).
template <class QsAt>
inline void quantize16(const float* x, int count, QsAt qs, __m512* d_out, __m512i* sums_out) {
  // Each block's reduction lands in its lane by a masked move: storing 16 scalars and loading them as
  // one vector would stall on store forwarding.
  __m512 amax = _mm512_setzero_ps();
  for (int b = 0; b < count; ++b) {
    const __m512 a = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 32 * b)),
                                   _mm512_abs_ps(_mm512_loadu_ps(x + 32 * b + 16)));
    amax = _mm512_mask_mov_ps(amax, static_cast<__mmask16>(1u << b), _mm512_set1_ps(_mm512_reduce_max_ps(a)));
  }
  const __m512 d = _mm512_div_ps(amax, _mm512_set1_ps(127.0f));
  const __mmask16 nonzero = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_UQ);  // NaN: 1 / d, as `d != 0`
  const __m512 id = _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(1.0f), d);
  __m512i sums = _mm512_setzero_si512();
  for (int b = 0; b < count; ++b) {
    const __m512 vid = _mm512_permutexvar_ps(_mm512_set1_epi32(b), id);
    const __m512i q0 = _mm512_cvtps_epi32(round_half_away16(_mm512_mul_ps(_mm512_loadu_ps(x + 32 * b), vid)));
    const __m512i q1 =
        _mm512_cvtps_epi32(round_half_away16(_mm512_mul_ps(_mm512_loadu_ps(x + 32 * b + 16), vid)));
    int8_t* out = qs(b);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16), _mm512_cvtsepi32_epi8(q1));
    sums = _mm512_mask_mov_epi32(sums, static_cast<__mmask16>(1u << b),
                                 _mm512_set1_epi32(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1))));
  }
  *d_out = d;
  *sums_out = sums;
}

// Rows of q8_0 or q8_1 blocks (q8_1 also stores s = sum(q) * d), 16 blocks at a time and the rest
// (a 576-float row's last 2) as one shorter group: its lanes past the count stay out of every step.
template <class Block>
void quantize_rows(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<Block*>(vy);
  constexpr int64_t kQ = sizeof(Block::qs);
  const int64_t nb = n / kQ;
  for (int64_t b0 = 0; b0 < nb; b0 += kBlocks) {
    const int count = static_cast<int>(std::min<int64_t>(kBlocks, nb - b0));
    __m512 d;
    __m512i sums;
    quantize16(
        x + b0 * kQ, count, [&](int b) { return y[b0 + b].qs; }, &d, &sums);
    alignas(32) uint16_t dh[kBlocks], sh[kBlocks];
    _mm256_store_si256(reinterpret_cast<__m256i*>(dh), _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));
    if constexpr (std::is_same_v<Block, BlockQ8_1>) {
      const __m512 s = _mm512_mul_ps(_mm512_cvtepi32_ps(sums), d);
      _mm256_store_si256(reinterpret_cast<__m256i*>(sh), _mm512_cvtps_ph(s, _MM_FROUND_TO_NEAREST_INT));
    }
    for (int b = 0; b < count; ++b) {
      y[b0 + b].d = dh[b];
      if constexpr (std::is_same_v<Block, BlockQ8_1>) y[b0 + b].s = sh[b];
    }
  }
}

void quantize_q8_0_16(const float* x, void* y, int64_t n) {
  quantize_rows<BlockQ8_0>(x, y, n);
}
void quantize_q8_1_16(const float* x, void* y, int64_t n) {
  quantize_rows<BlockQ8_1>(x, y, n);
}

}  // namespace

void fill_quantize(KernelTable& t) {
  t.quantize_q8_0 = quantize_q8_0_16;
  t.quantize_q8_1 = quantize_q8_1_16;
}

}  // namespace qe::kernels::avx512
