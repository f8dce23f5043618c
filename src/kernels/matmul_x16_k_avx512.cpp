// x16 k-quant kernels, AVX-512 VNNI (layout and arithmetic contract: kernels/interleaved.h). One zmm lane
// per row of the 16-row group; one vpdpbusd per 4-value slice advances all 16 rows against one broadcast
// q8_K dword. The weights (q4: 0..15, q5: 0..31, q6: 0..63) sit on vpdpbusd's unsigned side; each
// sub-block's int32 sums are scaled by their 6-bit / int8 scales with vpmulld, and the per-token terms
// that need only the activation's bsums (q4_K / q5_K mins, q6_K's -32 offset) are 8 vpdpwssd of the
// rows' int16 scale pairs against one broadcast bsums dword. C = 8 tokens share each decoded weight
// vector (8 sub-block sums + 8 super-block sums + the weights fit the 32 zmm; the float accumulators,
// touched once per super-block, may live on the stack).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"

#if defined(__GNUC__) && !defined(__clang__)  // GCC 12 header false positives, see matmul_x16_avx512.cpp
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace qe::kernels::avx512 {
namespace {

constexpr int kCols = 8;

inline __m512i bcast_dword(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}
inline __m512i load(const void* p) { return _mm512_loadu_si512(p); }
inline __m512 h2f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
// 16-bit lane shifts by a (compile-time after unrolling) count; left for s >= 0, right for s < 0. The
// callers mask to bits that never cross a byte boundary for the counts they use.
inline __m512i shift16(__m512i v, int s) {
  return s >= 0 ? _mm512_sll_epi16(v, _mm_cvtsi32_si128(s)) : _mm512_srl_epi16(v, _mm_cvtsi32_si128(-s));
}
inline const BlockQ8_K& act(const uint8_t* row, int64_t b) { return reinterpret_cast<const BlockQ8_K*>(row)[b]; }

// The 6-bit scales and mins of a q4_K / q5_K group, unpacked to sc[16 * s + r], mn[16 * s + r].
inline void decode_scales(const uint8_t* lo, const uint8_t* hi, uint8_t* sc, uint8_t* mn) {
  const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(0x03), m30 = _mm512_set1_epi8(0x30);
  const __m512i l0 = load(lo), l1 = load(lo + 64), h = load(hi), h2 = _mm512_srli_epi16(h, 2);
  _mm512_storeu_si512(sc, _mm512_or_si512(_mm512_and_si512(l0, m4), _mm512_slli_epi16(_mm512_and_si512(h, m3), 4)));
  _mm512_storeu_si512(sc + 64, _mm512_or_si512(_mm512_and_si512(l1, m4), _mm512_slli_epi16(_mm512_and_si512(h2, m3), 4)));
  _mm512_storeu_si512(mn, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l0, 4), m4), _mm512_and_si512(h, m30)));
  _mm512_storeu_si512(mn + 64, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l1, 4), m4), _mm512_and_si512(h2, m30)));
}

inline __m512i u8x16_to_i32(const uint8_t* p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// q4_K (kQ5 = false) and q5_K.
template <bool kQ5>
struct K45 {
  using W = std::conditional_t<kQ5, BlockQ5_Kx16, BlockQ4_Kx16>;
  static constexpr int64_t kBlock = QK_K;
  static constexpr bool kSums = false;
  template <int C>
  static void part(int64_t nb, const W* wg, int /*p: the whole group*/, const uint8_t* const* ar, const int32_t* const*,
                   float* y, int64_t ldy) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), b4 = _mm512_set1_epi8(0x10);
    __m512 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const W& blk = wg[b];
      alignas(64) uint8_t sc[128], mn[128];
      decode_scales(blk.scales_lo, blk.scales_hi, sc, mn);
      __m512i is[C];
      for (int c = 0; c < C; ++c) is[c] = _mm512_setzero_si512();
      for (int s = 0; s < 8; ++s) {
        const int u = s / 2, half = s % 2;
        __m512i t[C];
        for (int c = 0; c < C; ++c) t[c] = _mm512_setzero_si512();
        for (int k = 0; k < 8; ++k) {
          const __m512i v = load(blk.qs + 64 * (8 * u + k));
          __m512i q = _mm512_and_si512(half ? _mm512_srli_epi16(v, 4) : v, m4);
          if constexpr (kQ5) q = _mm512_or_si512(q, _mm512_and_si512(shift16(load(blk.qh + 64 * k), 4 - s), b4));
          for (int c = 0; c < C; ++c) t[c] = _mm512_dpbusd_epi32(t[c], q, bcast_dword(act(ar[c], b).qs + 4 * (8 * s + k)));
        }
        const __m512i scv = u8x16_to_i32(sc + 16 * s);
        for (int c = 0; c < C; ++c) is[c] = _mm512_add_epi32(is[c], _mm512_mullo_epi32(t[c], scv));
      }
      // IM: the rows' (m, m) int16 pairs against the (bsums[2s], bsums[2s + 1]) dword.
      __m512i im[C];
      for (int c = 0; c < C; ++c) im[c] = _mm512_setzero_si512();
      for (int s = 0; s < 8; ++s) {
        const __m512i m = u8x16_to_i32(mn + 16 * s), mp = _mm512_or_si512(m, _mm512_slli_epi32(m, 16));
        for (int c = 0; c < C; ++c) im[c] = _mm512_dpwssd_epi32(im[c], mp, bcast_dword(act(ar[c], b).bsums + 2 * s));
      }
      const __m512 dw = h2f16(blk.d), dm = h2f16(blk.dmin);
      for (int c = 0; c < C; ++c) {
        const __m512 da = _mm512_set1_ps(act(ar[c], b).d);
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[c]), _mm512_mul_ps(dw, da), acc[c]);
        acc[c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(im[c]), _mm512_mul_ps(dm, da), acc[c]);
      }
    }
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + c * ldy, acc[c]);
  }
};

struct K6 {
  using W = BlockQ6_Kx16;
  static constexpr int64_t kBlock = QK_K;
  static constexpr bool kSums = false;
  template <int C>
  static void part(int64_t nb, const W* wg, int /*p: the whole group*/, const uint8_t* const* ar, const int32_t* const*,
                   float* y, int64_t ldy) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    __m512 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const W& blk = wg[b];
      __m512i is[C], off[C];
      for (int c = 0; c < C; ++c) is[c] = off[c] = _mm512_setzero_si512();
      for (int h = 0; h < 2; ++h)
        for (int part = 0; part < 4; ++part) {  // values 128h + 32 part .. +31: groups 8h + 2 part + q
          const int t = 4 * h + part;
          // Row r's (sc[2t], sc[2t + 1]) as an int16 pair: the -32 offsets' vpdpwssd, and each scale.
          const __m512i sp = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.scales + 32 * t)));
          for (int c = 0; c < C; ++c) off[c] = _mm512_dpwssd_epi32(off[c], sp, bcast_dword(act(ar[c], b).bsums + 2 * t));
          for (int q = 0; q < 2; ++q) {
            __m512i g[C];
            for (int c = 0; c < C; ++c) g[c] = _mm512_setzero_si512();
            for (int i = 0; i < 4; ++i) {
              const int l4 = 4 * q + i;
              const __m512i v = load(blk.ql + 64 * (16 * h + 8 * (part & 1) + l4));
              const __m512i lo = _mm512_and_si512(part < 2 ? v : _mm512_srli_epi16(v, 4), m4);
              const __m512i hi = _mm512_and_si512(shift16(load(blk.qh + 64 * (8 * h + l4)), 4 - 2 * part), m30);
              const __m512i w = _mm512_or_si512(lo, hi);
              for (int c = 0; c < C; ++c)
                g[c] = _mm512_dpbusd_epi32(g[c], w, bcast_dword(act(ar[c], b).qs + 4 * (32 * h + 8 * part + l4)));
            }
            const __m512i scv = q ? _mm512_srai_epi32(sp, 16) : _mm512_srai_epi32(_mm512_slli_epi32(sp, 16), 16);
            for (int c = 0; c < C; ++c) is[c] = _mm512_add_epi32(is[c], _mm512_mullo_epi32(g[c], scv));
          }
        }
      const __m512 dw = h2f16(blk.d);
      for (int c = 0; c < C; ++c) {
        const __m512i v = _mm512_sub_epi32(is[c], _mm512_slli_epi32(off[c], 5));
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(dw, _mm512_set1_ps(act(ar[c], b).d)), acc[c]);
      }
    }
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + c * ldy, acc[c]);
  }
};

}  // namespace

#include "kernels/x16_driver.inc"

// C = 8 tokens x the whole 16-row group in one zmm. Called from fill_x16 (matmul_x16_avx512.cpp).
void fill_x16_k(KernelTable& t) {
  t.x16_q4_K_q8_K = x16<K45<false>, kCols, 1>;
  t.x16_q5_K_q8_K = x16<K45<true>, kCols, 1>;
  t.x16_q6_K_q8_K = x16<K6, kCols, 1>;
}

}  // namespace qe::kernels::avx512
