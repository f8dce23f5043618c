// x16 k-quant kernels, AVX-512 VNNI (layout and arithmetic contract: kernels/interleaved.h). One zmm lane
// per row of the 16-row group; one vpdpbusd per 4-value slice advances all 16 rows against one broadcast
// q8_K dword. The weights (q4: 0..15, q5: 0..31, q6: 0..63) sit on vpdpbusd's unsigned side; each
// sub-block's int32 sums are scaled by their 6-bit / int8 scales with vpmulld, and the per-token terms
// that need only the activation's bsums (q4_K / q5_K mins, q6_K's -32 offset) are vpdpwssd of the rows'
// int16 scale pairs against one broadcast bsums dword (q6_K's pairs pre-multiplied by -32, so the offset
// lands in the same accumulator). C = 8 tokens share each decoded weight vector: 8 super-block sums + 8
// sub-block sums + the weights fit the 32 zmm; the float accumulators, touched once per super-block,
// may live on the stack.
//
// Every loop that picks a shift count or a bit position is unrolled at compile time (unroll<N>), so the
// decode is immediate shifts and one vpternlogd bit-select per weight vector, with no branches: with
// the counts a run-time variable, the q6_K GEMV ran ~4x slower than q4_K's per byte (compute bound).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"

#if defined(__GNUC__) && !defined(__clang__)  // GCC 12 header false positives, see matmul_x16_avx512.cpp
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace qe::kernels::avx512 {
namespace {

constexpr int kCols = 8;

// f(std::integral_constant<int, I>{}) for I = 0 .. N - 1, in order.
template <int N, class F>
inline __attribute__((always_inline)) void unroll(F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) __attribute__((always_inline)) {
    (f(std::integral_constant<int, I>{}), ...);
  }(std::make_integer_sequence<int, N>{});
}

inline __m512i bcast_dword(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}
inline __m512i load(const void* p) { return _mm512_loadu_si512(p); }
inline __m512 h2f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
// 16-bit lane shift by a compile-time count: left for S > 0, right for S < 0. The callers keep only bits
// that stay inside their byte.
template <int S>
inline __m512i shift16(__m512i v) {
  if constexpr (S > 0) return _mm512_slli_epi16(v, S);
  else if constexpr (S < 0) return _mm512_srli_epi16(v, -S);
  else return v;
}
// Bit select: (lo & m) | (hi & ~m), one vpternlogd (0xCA = A ? B : C).
inline __m512i select(__m512i m, __m512i lo, __m512i hi) { return _mm512_ternarylogic_epi32(m, lo, hi, 0xCA); }
// Software prefetch of line `i` of the super-block kPfBlocks ahead in the weight stream (a thread's
// groups are contiguous, so "ahead" runs on into the next group).
constexpr int kPfBlocks = 1;
constexpr int kPfMaxCols = 0;
template <class W>
inline void prefetch_line(const W* blk, int i) {
  if (i * 64 < static_cast<int>(sizeof(W))) _mm_prefetch(reinterpret_cast<const char*>(blk + kPfBlocks) + 64 * i, _MM_HINT_T0);
}
inline const BlockQ8_K& act(const uint8_t* row, int64_t b) { return reinterpret_cast<const BlockQ8_K*>(row)[b]; }

// The 6-bit scales and mins of a q4_K / q5_K group, unpacked to sc[16 * s + r], mn[16 * s + r].
inline void decode_scales(const uint8_t* lo, const uint8_t* hi, uint8_t* sc, uint8_t* mn) {
  const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(0x03), m30 = _mm512_set1_epi8(0x30);
  const __m512i l0 = load(lo), l1 = load(lo + 64), h = load(hi), h2 = _mm512_srli_epi16(h, 2);
  _mm512_store_si512(sc, select(m4, l0, _mm512_slli_epi16(_mm512_and_si512(h, m3), 4)));
  _mm512_store_si512(sc + 64, select(m4, l1, _mm512_slli_epi16(_mm512_and_si512(h2, m3), 4)));
  _mm512_store_si512(mn, select(m4, _mm512_srli_epi16(l0, 4), _mm512_and_si512(h, m30)));
  _mm512_store_si512(mn + 64, select(m4, _mm512_srli_epi16(l1, 4), _mm512_and_si512(h2, m30)));
}

inline __m512i u8x16_to_i32(const uint8_t* p) { return _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(p))); }

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
      const BlockQ8_K* a[C];
      for (int c = 0; c < C; ++c) a[c] = &act(ar[c], b);
      alignas(64) uint8_t sc[128], mn[128];
      decode_scales(blk.scales_lo, blk.scales_hi, sc, mn);
      __m512i is[C], im[C];
      for (int c = 0; c < C; ++c) is[c] = im[c] = _mm512_setzero_si512();
      unroll<8>([&](auto s_) {  // sub-block s: values 32 s .. +31, the low (s even) or high nibbles of dwords 8 (s / 2) + k
        constexpr int s = decltype(s_)::value, u = s / 2;
        __m512i t[C];
        for (int c = 0; c < C; ++c) t[c] = _mm512_setzero_si512();
        unroll<8>([&](auto k_) {
          constexpr int k = decltype(k_)::value;
          if constexpr (C <= kPfMaxCols) prefetch_line(&blk, 8 * s + k);
          const __m512i v = load(blk.qs + 64 * (8 * u + k));
          const __m512i nib = s % 2 ? _mm512_srli_epi16(v, 4) : v;
          __m512i q;
          if constexpr (kQ5) q = select(m4, nib, _mm512_and_si512(shift16<4 - s>(load(blk.qh + 64 * k)), b4));
          else q = _mm512_and_si512(nib, m4);
          for (int c = 0; c < C; ++c) t[c] = _mm512_dpbusd_epi32(t[c], q, bcast_dword(a[c]->qs + 4 * (8 * s + k)));
        });
        const __m512i scv = u8x16_to_i32(sc + 16 * s);
        for (int c = 0; c < C; ++c) is[c] = _mm512_add_epi32(is[c], _mm512_mullo_epi32(t[c], scv));
        // IM: the rows' (m, m) int16 pairs against the (bsums[2s], bsums[2s + 1]) dword.
        const __m512i m = u8x16_to_i32(mn + 16 * s), mp = _mm512_or_si512(m, _mm512_slli_epi32(m, 16));
        for (int c = 0; c < C; ++c) im[c] = _mm512_dpwssd_epi32(im[c], mp, bcast_dword(a[c]->bsums + 2 * s));
      });
      const __m512 dw = h2f16(blk.d), dm = h2f16(blk.dmin);
      for (int c = 0; c < C; ++c) {
        const __m512 da = _mm512_set1_ps(a[c]->d);
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[c]), _mm512_mul_ps(dw, da), acc[c]);
        acc[c] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(im[c]), _mm512_mul_ps(dm, da), acc[c]);
      }
    }
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + c * ldy, acc[c]);
  }
};

// q6_K. Per 128-value half h and l4 < 8, qh dword 8h + l4 holds the two high bits of four weight
// vectors ("parts" 0..3, see interleaved.h): part 0's in bits 0-1, part 1's in 2-3, part 2's in 4-5, part
// 3's in 6-7 of each byte, moved to bits 4-5 by a 16-bit shift of +4, +2, 0, -2 after masking them
// (0x33 keeps bits 0-1, 4-5; 0xCC bits 2-3, 6-7) so no other bit lands in 4-7; the vpternlogd select
// then takes bits 0-3 from the ql nibble.
struct K6 {
  using W = BlockQ6_Kx16;
  static constexpr int64_t kBlock = QK_K;
  static constexpr bool kSums = false;
  template <int C>
  static void part(int64_t nb, const W* wg, int /*p: the whole group*/, const uint8_t* const* ar, const int32_t* const*,
                   float* y, int64_t ldy) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m33 = _mm512_set1_epi8(0x33), mcc = _mm512_set1_epi8(static_cast<char>(0xCC));
    __m512 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const W& blk = wg[b];
      const BlockQ8_K* a[C];
      for (int c = 0; c < C; ++c) a[c] = &act(ar[c], b);
      __m512i is[C];
      for (int c = 0; c < C; ++c) is[c] = _mm512_setzero_si512();
      if constexpr (C <= 2) {
        // Few tokens: each qh vector and ql pair decoded once into all four parts (8 accumulators per
        // token), the weights read in address order.
        unroll<2>([&](auto h_) {
          constexpr int h = decltype(h_)::value;
          __m512i sp[4];
          unroll<4>([&](auto p_) {
            constexpr int p = decltype(p_)::value, t = 4 * h + p;
            sp[p] = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.scales + 32 * t)));
            const __m512i off = _mm512_sub_epi16(_mm512_setzero_si512(), _mm512_slli_epi16(sp[p], 5));
            for (int c = 0; c < C; ++c) is[c] = _mm512_dpwssd_epi32(is[c], off, bcast_dword(a[c]->bsums + 2 * t));
          });
          unroll<2>([&](auto q_) {
            constexpr int q = decltype(q_)::value;
            __m512i g[4][C];
            for (int p = 0; p < 4; ++p)
              for (int c = 0; c < C; ++c) g[p][c] = _mm512_setzero_si512();
            unroll<4>([&](auto i_) {
              constexpr int l4 = 4 * q + decltype(i_)::value;
              if constexpr (C <= kPfMaxCols)
                for (int j = 0; j < 4; ++j) prefetch_line(&blk, 4 * (8 * h + l4) + j);
              const __m512i va = load(blk.ql + 64 * (16 * h + l4)), vb = load(blk.ql + 64 * (16 * h + 8 + l4));
              const __m512i qh = load(blk.qh + 64 * (8 * h + l4));
              const __m512i q1 = _mm512_and_si512(qh, m33), q2 = _mm512_and_si512(qh, mcc);
              const __m512i w[4] = {select(m4, va, _mm512_slli_epi16(q1, 4)), select(m4, vb, _mm512_slli_epi16(q2, 2)),
                                    select(m4, _mm512_srli_epi16(va, 4), q1),
                                    select(m4, _mm512_srli_epi16(vb, 4), _mm512_srli_epi16(q2, 2))};
              for (int p = 0; p < 4; ++p)
                for (int c = 0; c < C; ++c)
                  g[p][c] = _mm512_dpbusd_epi32(g[p][c], w[p], bcast_dword(a[c]->qs + 4 * (32 * h + 8 * p + l4)));
            });
            for (int p = 0; p < 4; ++p) {
              const __m512i scv = q ? _mm512_srai_epi32(sp[p], 16) : _mm512_srai_epi32(_mm512_slli_epi32(sp[p], 16), 16);
              for (int c = 0; c < C; ++c) is[c] = _mm512_add_epi32(is[c], _mm512_mullo_epi32(g[p][c], scv));
            }
          });
        });
      } else {
        unroll<8>([&](auto t_) {  // values 32 t .. +31: h = t / 4, part = t % 4, groups 2t, 2t + 1
          constexpr int t = decltype(t_)::value, h = t / 4, p = t % 4;
          // Row r's (sc[2t], sc[2t + 1]) as an int16 pair: times -32 for the offsets' vpdpwssd, and each scale.
          const __m512i sp = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.scales + 32 * t)));
          const __m512i off = _mm512_sub_epi16(_mm512_setzero_si512(), _mm512_slli_epi16(sp, 5));
          for (int c = 0; c < C; ++c) is[c] = _mm512_dpwssd_epi32(is[c], off, bcast_dword(a[c]->bsums + 2 * t));
          unroll<2>([&](auto q_) {  // group 2t + q: l4 = 4q .. 4q + 3
            constexpr int q = decltype(q_)::value;
            __m512i g[C];
            for (int c = 0; c < C; ++c) g[c] = _mm512_setzero_si512();
            unroll<4>([&](auto i_) {
              constexpr int l4 = 4 * q + decltype(i_)::value;
              if constexpr (C <= kPfMaxCols) prefetch_line(&blk, 8 * t + l4);
              const __m512i v = load(blk.ql + 64 * (16 * h + 8 * (p & 1) + l4));
              const __m512i hb = _mm512_and_si512(load(blk.qh + 64 * (8 * h + l4)), p % 2 ? mcc : m33);
              const __m512i w = select(m4, p < 2 ? v : _mm512_srli_epi16(v, 4), shift16<4 - 2 * p>(hb));
              for (int c = 0; c < C; ++c)
                g[c] = _mm512_dpbusd_epi32(g[c], w, bcast_dword(a[c]->qs + 4 * (32 * h + 8 * p + l4)));
            });
            const __m512i scv = q ? _mm512_srai_epi32(sp, 16) : _mm512_srai_epi32(_mm512_slli_epi32(sp, 16), 16);
            for (int c = 0; c < C; ++c) is[c] = _mm512_add_epi32(is[c], _mm512_mullo_epi32(g[c], scv));
          });
        });
      }
      const __m512 dw = h2f16(blk.d);
      for (int c = 0; c < C; ++c)
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[c]), _mm512_mul_ps(dw, _mm512_set1_ps(a[c]->d)), acc[c]);
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
