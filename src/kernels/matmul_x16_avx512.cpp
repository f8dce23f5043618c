// x16 kernels, AVX-512 VNNI (layout and arithmetic contract: kernels/interleaved.h). One zmm lane per
// row of the 16-row group; one vpdpbusd per 4-element slice advances all 16 rows against one broadcast
// activation dword. C = 8 tokens share each decoded weight vector: 8 integer + 8 float accumulators +
// the weight vectors fit the 32 zmm registers. The weights sit on the unsigned side: nibbles 0..15
// (q4), or w + 128 (q8_0, an xor of the sign bit); the integer accumulator starts at -8 * sum(a) or
// -128 * sum(a) (the activation rows' block sums) so it ends at the exact signed dot.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"

// GCC 12's _mm512_cvtepi32_ps / _mm512_cvtph_ps pass _mm512_undefined_ps() as the unused merge source,
// which -Wmaybe-uninitialized reports once inlined into a loop (a known header false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace qe::kernels::avx512 {
namespace {

constexpr int kCols = 8;

inline __m512i bcast_dword(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}
inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline __m512 h2f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Q4 (q4_0 with kMin = false, q4_1 with kMin = true).
template <class WBlock, class ABlock, bool kMin>
struct Q4 {
  using W = WBlock;
  static constexpr int64_t kBlock = QK8_0;
  static constexpr bool kSums = !kMin;
  template <int C>
  static void part(int64_t nb, const W* wg, int /*p: the whole group*/, const uint8_t* const* ar,
                   const int32_t* const* sums, float* y, int64_t ldy) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m512i isum[C];
      for (int c = 0; c < C; ++c) isum[c] = kMin ? _mm512_setzero_si512() : _mm512_set1_epi32(-8 * sums[c][b]);
      for (int j = 0; j < 4; ++j) {
        const __m512i v = _mm512_loadu_si512(wg[b].qs + 64 * j);
        const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        for (int c = 0; c < C; ++c) {
          const int8_t* q = reinterpret_cast<const ABlock*>(ar[c])[b].qs;
          isum[c] = _mm512_dpbusd_epi32(isum[c], lo, bcast_dword(q + 4 * j));
          isum[c] = _mm512_dpbusd_epi32(isum[c], hi, bcast_dword(q + 16 + 4 * j));
        }
      }
      const __m512 dw = h2f16(wg[b].d);
      for (int c = 0; c < C; ++c) {
        const ABlock& ab = reinterpret_cast<const ABlock*>(ar[c])[b];
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_mul_ps(dw, _mm512_set1_ps(h2f(ab.d))), acc[c]);
        if constexpr (kMin) acc[c] = _mm512_fmadd_ps(h2f16(wg[b].m), _mm512_set1_ps(h2f(ab.s)), acc[c]);
      }
    }
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + c * ldy, acc[c]);
  }
};

struct Q8_0 {
  using W = BlockQ8_0x16;
  static constexpr int64_t kBlock = QK8_0;
  static constexpr bool kSums = true;
  template <int C>
  static void part(int64_t nb, const W* wg, int /*p: the whole group*/, const uint8_t* const* ar,
                   const int32_t* const* sums, float* y, int64_t ldy) {
    const __m512i sign = _mm512_set1_epi8(static_cast<char>(0x80));
    __m512 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m512i isum[C];
      for (int c = 0; c < C; ++c) isum[c] = _mm512_set1_epi32(-128 * sums[c][b]);
      for (int j = 0; j < 8; ++j) {
        const __m512i u = _mm512_xor_si512(_mm512_loadu_si512(wg[b].qs + 64 * j), sign);  // w + 128
        for (int c = 0; c < C; ++c)
          isum[c] = _mm512_dpbusd_epi32(isum[c], u, bcast_dword(reinterpret_cast<const BlockQ8_0*>(ar[c])[b].qs + 4 * j));
      }
      const __m512 dw = h2f16(wg[b].d);
      for (int c = 0; c < C; ++c) {
        const float da = h2f(reinterpret_cast<const BlockQ8_0*>(ar[c])[b].d);
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_mul_ps(dw, _mm512_set1_ps(da)), acc[c]);
      }
    }
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + c * ldy, acc[c]);
  }
};

}  // namespace

#include "kernels/x16_driver.inc"

void fill_x16_k(KernelTable& t);  // the k-quants: matmul_x16_k_avx512.cpp

// C = 8 tokens x the whole 16-row group in one zmm.
void fill_x16(KernelTable& t) {
  fill_x16_k(t);
  t.x16_q4_0_q8_0 = x16<Q4<BlockQ4_0x16, BlockQ8_0, false>, kCols, 1>;
  t.x16_q4_1_q8_1 = x16<Q4<BlockQ4_1x16, BlockQ8_1, true>, kCols, 1>;
  t.x16_q8_0_q8_0 = x16<Q8_0, kCols, 1>;
}

}  // namespace qe::kernels::avx512
