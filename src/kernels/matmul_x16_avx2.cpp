// x16 kernels, AVX2 (layout and arithmetic contract: kernels/interleaved.h). A 16-row group is done as
// two 8-row halves, one ymm lane per row; C = 4 tokens share each decoded weight vector. The int8 dot is
// maddubs (unsigned weights x signed activation dword broadcast); for the 4-bit types the int16 pair sums
// of a whole block fit in int16 (8 x 2 x 15 x 127 = 30480), so only one madd per block and token widens
// them. q8_0 moves each weight's sign onto the activation (sign_epi8) so |w| can sit on the unsigned side.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::avx2 {
namespace {

constexpr int kCols = 4;

inline __m256i bcast_dword(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}
inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline __m256 h2f8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// Q4 (q4_0 with kMin = false: the -8 offset is taken off through the activation's block sums; q4_1
// with kMin = true: the m * s term is a second FMA per block).
template <class WBlock, class ABlock, bool kMin>
struct Q4 {
  using W = WBlock;
  static constexpr int64_t kBlock = QK8_0;
  static constexpr bool kSums = !kMin;
  template <int C>
  static void part(int64_t nb, const W* wg, int h, const uint8_t* const* ar, const int32_t* const* sums, float* y,
                   int64_t ldy) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i s16[C];
      for (int c = 0; c < C; ++c) s16[c] = _mm256_setzero_si256();
      for (int j = 0; j < 4; ++j) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg[b].qs + 64 * j + 32 * h));
        const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        for (int c = 0; c < C; ++c) {
          const int8_t* q = reinterpret_cast<const ABlock*>(ar[c])[b].qs;
          s16[c] = _mm256_add_epi16(s16[c], _mm256_maddubs_epi16(lo, bcast_dword(q + 4 * j)));
          s16[c] = _mm256_add_epi16(s16[c], _mm256_maddubs_epi16(hi, bcast_dword(q + 16 + 4 * j)));
        }
      }
      const __m256 dw = h2f8(wg[b].d + 8 * h);
      for (int c = 0; c < C; ++c) {
        const ABlock& ab = reinterpret_cast<const ABlock*>(ar[c])[b];
        __m256i isum = _mm256_madd_epi16(s16[c], ones);
        if constexpr (!kMin) isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(8 * sums[c][b]));
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, _mm256_set1_ps(h2f(ab.d))), acc[c]);
        if constexpr (kMin) acc[c] = _mm256_fmadd_ps(h2f8(wg[b].m + 8 * h), _mm256_set1_ps(h2f(ab.s)), acc[c]);
      }
    }
    for (int c = 0; c < C; ++c) _mm256_storeu_ps(y + c * ldy, acc[c]);
  }
};

struct Q8_0 {
  using W = BlockQ8_0x16;
  using A = BlockQ8_0;
  static constexpr int64_t kBlock = QK8_0;
  static constexpr bool kSums = false;
  template <int C>
  static void part(int64_t nb, const W* wg, int h, const uint8_t* const* ar, const int32_t* const*, float* y,
                   int64_t ldy) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i s32[C];
      for (int c = 0; c < C; ++c) s32[c] = _mm256_setzero_si256();
      for (int j = 0; j < 8; ++j) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg[b].qs + 64 * j + 32 * h));
        const __m256i av = _mm256_sign_epi8(v, v);
        for (int c = 0; c < C; ++c) {
          const int8_t* q = reinterpret_cast<const A*>(ar[c])[b].qs;
          const __m256i p = _mm256_maddubs_epi16(av, _mm256_sign_epi8(bcast_dword(q + 4 * j), v));
          s32[c] = _mm256_add_epi32(s32[c], _mm256_madd_epi16(p, ones));
        }
      }
      const __m256 dw = h2f8(wg[b].d + 8 * h);
      for (int c = 0; c < C; ++c) {
        const __m256 d = _mm256_mul_ps(dw, _mm256_set1_ps(h2f(reinterpret_cast<const A*>(ar[c])[b].d)));
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32[c]), d, acc[c]);
      }
    }
    for (int c = 0; c < C; ++c) _mm256_storeu_ps(y + c * ldy, acc[c]);
  }
};

}  // namespace

#include "kernels/x16_driver.inc"

void fill_x16_k(KernelTable& t);  // the k-quants: matmul_x16_k_avx2.cpp

// C = 4 tokens x 2 halves of 8 rows.
void fill_x16(KernelTable& t) {
  fill_x16_k(t);
  t.x16_q4_0_q8_0 = x16<Q4<BlockQ4_0x16, BlockQ8_0, false>, kCols, 2>;
  t.x16_q4_1_q8_1 = x16<Q4<BlockQ4_1x16, BlockQ8_1, true>, kCols, 2>;
  t.x16_q8_0_q8_0 = x16<Q8_0, kCols, 2>;
}

}  // namespace qe::kernels::avx2
