// x16 k-quant kernels, AVX2 (layout and arithmetic contract: kernels/interleaved.h). A 16-row group is
// done as two 8-row halves, one ymm lane per row; C = 4 tokens share each decoded weight vector. The
// int8 dot is maddubs (unsigned weights x the signed activation dword broadcast), summed in int16 as far
// as it cannot overflow for any int8 activation (|a| <= 128): q4_K 8 slices (16 x 15 x 128 = 30720),
// q5_K 4 slices (8 x 31 x 128 = 31744), q6_K 2 slices (4 x 63 x 128 = 32256); then one madd against the
// rows' (scale, scale) int16 pairs widens and scales them in one step. The q4_K / q5_K mins and q6_K's
// -32 offset are madds of the rows' int16 pairs against a broadcast bsums dword.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::avx2 {
namespace {

constexpr int kCols = 4;

inline __m256i bcast_dword(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}
inline __m256i load(const void* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m256 h2f8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
// 16-bit lane shifts, left for s >= 0 and right for s < 0 (callers mask to bits that stay in their byte).
inline __m256i shift16(__m256i v, int s) {
  return s >= 0 ? _mm256_sll_epi16(v, _mm_cvtsi32_si128(s)) : _mm256_srl_epi16(v, _mm_cvtsi32_si128(-s));
}
inline const BlockQ8_K& act(const uint8_t* row, int64_t b) { return reinterpret_cast<const BlockQ8_K*>(row)[b]; }
// (x, x) int16 pairs from 8 bytes: one row per dword lane.
inline __m256i u8x8_pairs(const uint8_t* p) {
  int64_t v;
  std::memcpy(&v, p, 8);
  const __m256i x = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v));
  return _mm256_or_si256(x, _mm256_slli_epi32(x, 16));
}

// The 6-bit scales and mins of a q4_K / q5_K group, unpacked to sc[16 * s + r], mn[16 * s + r].
inline void decode_scales(const uint8_t* lo, const uint8_t* hi, uint8_t* sc, uint8_t* mn) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x03), m30 = _mm256_set1_epi8(0x30);
  for (int i = 0; i < 4; ++i) {  // sub-blocks 2i, 2i + 1 (32 bytes); their high bits: hi half i % 2, shift 2 * (i / 2)
    const __m256i l = load(lo + 32 * i), h = _mm256_srli_epi16(load(hi + 32 * (i % 2)), 2 * (i / 2));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(sc + 32 * i),
                        _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(mn + 32 * i),
                        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l, 4), m4), _mm256_and_si256(h, m30)));
  }
}

template <bool kQ5>
struct K45 {
  using W = std::conditional_t<kQ5, BlockQ5_Kx16, BlockQ4_Kx16>;
  static constexpr int64_t kBlock = QK_K;
  static constexpr bool kSums = false;
  static constexpr int kRun = kQ5 ? 4 : 8;  // slices summed in int16 before the madd
  template <int C>
  static void part(int64_t nb, const W* wg, int h, const uint8_t* const* ar, const int32_t* const*, float* y,
                   int64_t ldy) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
    __m256 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const W& blk = wg[b];
      alignas(32) uint8_t sc[128], mn[128];
      decode_scales(blk.scales_lo, blk.scales_hi, sc, mn);
      __m256i is[C], im[C];
      for (int c = 0; c < C; ++c) is[c] = im[c] = _mm256_setzero_si256();
      for (int s = 0; s < 8; ++s) {
        const int u = s / 2, half = s % 2;
        const __m256i scp = u8x8_pairs(sc + 16 * s + 8 * h);
        for (int k0 = 0; k0 < 8; k0 += kRun) {
          __m256i s16[C];
          for (int c = 0; c < C; ++c) s16[c] = _mm256_setzero_si256();
          for (int k = k0; k < k0 + kRun; ++k) {
            const __m256i v = load(blk.qs + 64 * (8 * u + k) + 32 * h);
            __m256i q = _mm256_and_si256(half ? _mm256_srli_epi16(v, 4) : v, m4);
            if constexpr (kQ5) q = _mm256_or_si256(q, _mm256_and_si256(shift16(load(blk.qh + 64 * k + 32 * h), 4 - s), b4));
            for (int c = 0; c < C; ++c)
              s16[c] = _mm256_add_epi16(s16[c], _mm256_maddubs_epi16(q, bcast_dword(act(ar[c], b).qs + 4 * (8 * s + k))));
          }
          for (int c = 0; c < C; ++c) is[c] = _mm256_add_epi32(is[c], _mm256_madd_epi16(s16[c], scp));
        }
        const __m256i mp = u8x8_pairs(mn + 16 * s + 8 * h);
        for (int c = 0; c < C; ++c) im[c] = _mm256_add_epi32(im[c], _mm256_madd_epi16(mp, bcast_dword(act(ar[c], b).bsums + 2 * s)));
      }
      const __m256 dw = h2f8(blk.d + 8 * h), dm = h2f8(blk.dmin + 8 * h);
      for (int c = 0; c < C; ++c) {
        const __m256 da = _mm256_set1_ps(act(ar[c], b).d);
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[c]), _mm256_mul_ps(dw, da), acc[c]);
        acc[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(im[c]), _mm256_mul_ps(dm, da), acc[c]);
      }
    }
    for (int c = 0; c < C; ++c) _mm256_storeu_ps(y + c * ldy, acc[c]);
  }
};

struct K6 {
  using W = BlockQ6_Kx16;
  static constexpr int64_t kBlock = QK_K;
  static constexpr bool kSums = false;
  template <int C>
  static void part(int64_t nb, const W* wg, int h, const uint8_t* const* ar, const int32_t* const*, float* y,
                   int64_t ldy) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i hi16 = _mm256_set1_epi32(static_cast<int32_t>(0xFFFF0000u));
    __m256 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const W& blk = wg[b];
      __m256i is[C], off[C];
      for (int c = 0; c < C; ++c) is[c] = off[c] = _mm256_setzero_si256();
      for (int vh = 0; vh < 2; ++vh)
        for (int part = 0; part < 4; ++part) {  // values 128 vh + 32 part .. +31: groups 8 vh + 2 part + q
          const int t = 4 * vh + part;
          const __m256i sp = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales + 32 * t + 16 * h)));
          for (int c = 0; c < C; ++c) off[c] = _mm256_add_epi32(off[c], _mm256_madd_epi16(sp, bcast_dword(act(ar[c], b).bsums + 2 * t)));
          for (int q = 0; q < 2; ++q) {
            const __m256i x = q ? _mm256_and_si256(sp, hi16) : _mm256_slli_epi32(sp, 16);
            const __m256i scp = _mm256_or_si256(x, _mm256_srli_epi32(x, 16));  // (sc, sc) of group 2t + q
            for (int i0 = 0; i0 < 4; i0 += 2) {
              __m256i s16[C];
              for (int c = 0; c < C; ++c) s16[c] = _mm256_setzero_si256();
              for (int i = i0; i < i0 + 2; ++i) {
                const int l4 = 4 * q + i;
                const __m256i v = load(blk.ql + 64 * (16 * vh + 8 * (part & 1) + l4) + 32 * h);
                const __m256i lo = _mm256_and_si256(part < 2 ? v : _mm256_srli_epi16(v, 4), m4);
                const __m256i hb = _mm256_and_si256(shift16(load(blk.qh + 64 * (8 * vh + l4) + 32 * h), 4 - 2 * part), m30);
                const __m256i w = _mm256_or_si256(lo, hb);
                for (int c = 0; c < C; ++c)
                  s16[c] = _mm256_add_epi16(
                      s16[c], _mm256_maddubs_epi16(w, bcast_dword(act(ar[c], b).qs + 4 * (32 * vh + 8 * part + l4))));
              }
              for (int c = 0; c < C; ++c) is[c] = _mm256_add_epi32(is[c], _mm256_madd_epi16(s16[c], scp));
            }
          }
        }
      const __m256 dw = h2f8(blk.d + 8 * h);
      for (int c = 0; c < C; ++c) {
        const __m256i v = _mm256_sub_epi32(is[c], _mm256_slli_epi32(off[c], 5));
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(dw, _mm256_set1_ps(act(ar[c], b).d)), acc[c]);
      }
    }
    for (int c = 0; c < C; ++c) _mm256_storeu_ps(y + c * ldy, acc[c]);
  }
};

}  // namespace

#include "kernels/x16_driver.inc"

// C = 4 tokens x 2 halves of 8 rows. Called from fill_x16 (matmul_x16_avx2.cpp).
void fill_x16_k(KernelTable& t) {
  t.x16_q4_K_q8_K = x16<K45<false>, kCols, 2>;
  t.x16_q5_K_q8_K = x16<K45<true>, kCols, 2>;
  t.x16_q6_K_q8_K = x16<K6, kCols, 2>;
}

}  // namespace qe::kernels::avx2
