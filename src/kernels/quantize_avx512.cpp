// Activation quantizers f32 -> q8_0 / q8_1 on 512-bit vectors, 16 blocks at a time, byte-identical to the
// reference quantizers (src/formats/blocks.cpp) as the 256-bit ones (x86_quantize.inc) are: the same amax,
// d = amax / 127 and id = 1 / d as IEEE divisions, roundf's half-away-from-zero rounding, and q8_1's
// s = sum(q) * d rounded once to half.
//
// Why: per block, the 256-bit code runs a chain of a horizontal max, two scalar divisions, the
// rounding and a horizontal sum, ~70 cycles of latency that out-of-order execution overlaps over only
// two or three blocks; it took 3.7-3.8% of an 8-token batched decode step (SmolLM2-135M q4_1, Zen 4).
// Here the 16 blocks' maxima sit in one vector, so their d and 1/d are two vector divisions. Their
// maxima and their sums of quants are each one transposing reduction of 16 vectors (reduce16: 45
// operations, not 16 horizontal reductions of ~10 each), the absolute maximum of a block's two halves one
// vrangeps, and roundf three operations (round_half_away_epi32). A row's last group may hold fewer than
// 16 blocks (576 floats: 16 + 2); it runs the same code with the blocks past its count as zeros. 2-vCPU
// Xeon (Emerald Rapids), q8_1 rows of 256 / 1536 floats: 120 -> 71 ns, 576 -> 302 ns; in an 8-stream
// decode step (SmolLM2-135M q4_1) 0.35% less time, the rows mostly waiting on memory there.
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

// roundf(x) as an int32, exactly: x + copysign(0.5, x) rounded toward zero, then truncated. The sum's
// integer part is roundf(x): rounding toward zero never carries it past the next integer (the exact sum
// lies below it) nor below roundf(x) (an integer under 2^24 is exact, and the sum is not below it), so
// 0.49999997 stays 0 where a nearest-rounded add would give 1. Three operations against the
// seven of a truncate-and-compare.
inline __m512i round_half_away_epi32(__m512 x) {
  const __m512 half = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
      _mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN), _mm512_castps_si512(_mm512_set1_ps(0.5f)),
      0xEA));  // (x & sign) | 0.5
  return _mm512_cvtt_roundps_epi32(_mm512_add_round_ps(x, half, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC),
                                   _MM_FROUND_NO_EXC);
}

// 16 vectors in, one out whose lane b is v[b]'s 16 lanes reduced by op (max or add: any order gives
// the same result): halves of 256, 128, 64 and 32 bits are paired off in four rounds of shuffles, 45
// operations for the 16 reductions against ~10 each as separate horizontal reductions.
template <class Op>
inline __m512 reduce16(const __m512* v, Op op) {
  __m512 r1[8], r2[4], r3[2];
  for (int p = 0; p < 8; ++p)  // [a 0-7 | b 0-7]
    r1[p] = op(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
               _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  for (int p = 0; p < 4; ++p)  // 128-bit lane j: block 4p + j's 4 partials
    r2[p] = op(_mm512_shuffle_f32x4(r1[2 * p], r1[2 * p + 1], _MM_SHUFFLE(2, 0, 2, 0)),
               _mm512_shuffle_f32x4(r1[2 * p], r1[2 * p + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  for (int p = 0; p < 2; ++p)  // lane j: 2 partials of block 8p + j, then 2 of block 8p + 4 + j
    r3[p] = op(_mm512_shuffle_ps(r2[2 * p], r2[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
               _mm512_shuffle_ps(r2[2 * p], r2[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  // element 4j + e holds block j + 4e
  const __m512 r = op(_mm512_shuffle_ps(r3[0], r3[1], _MM_SHUFFLE(2, 0, 2, 0)),
                      _mm512_shuffle_ps(r3[0], r3[1], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), r);
}

// count <= 16 blocks of 32 floats from x: writes their quants to qs(b) (32 bytes each) and returns d and
// the sums of the quants, one lane per block (lanes past count: 0).
template <class QsAt>
inline void quantize16(const float* x, int count, QsAt qs, __m512* d_out, __m512i* sums_out) {
  __m512 v[kBlocks];
  for (int b = 0; b < kBlocks; ++b)  // max(|lo|, |hi|) in one vrangeps
    v[b] = b < count ? _mm512_range_ps(_mm512_loadu_ps(x + 32 * b), _mm512_loadu_ps(x + 32 * b + 16), 0x0B)
                     : _mm512_setzero_ps();
  const __m512 amax = reduce16(v, [](__m512 a, __m512 b) { return _mm512_max_ps(a, b); });
  const __m512 d = _mm512_div_ps(amax, _mm512_set1_ps(127.0f));
  const __mmask16 nonzero = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_UQ);  // NaN: 1 / d, as `d != 0`
  // 1 / d by block from memory: a broadcast load, where a lane permute would take the shuffle port that
  // the conversions to bytes need.
  alignas(64) float id[kBlocks];
  _mm512_store_ps(id, _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(1.0f), d));
  for (int b = 0; b < count; ++b) {  // v[b] becomes block b's quants; those past count stay zeros
    const __m512 vid = _mm512_set1_ps(id[b]);
    const __m512i q0 = round_half_away_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 32 * b), vid));
    const __m512i q1 = round_half_away_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 32 * b + 16), vid));
    int8_t* out = qs(b);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 16), _mm512_cvtsepi32_epi8(q1));
    v[b] = _mm512_castsi512_ps(_mm512_add_epi32(q0, q1));
  }
  *d_out = d;
  *sums_out = _mm512_castps_si512(reduce16(v, [](__m512 a, __m512 b) {
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
  }));
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
