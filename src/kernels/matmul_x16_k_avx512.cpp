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
// decode is immediate shifts and one vpternlogd bit-select per weight vector, with no branches.
//
// GEMV (C = 1) is DRAM bound, and there the ORDER of a super-block's loads matters: read out of
// address order (q6_K's ql and qh lines 2 KiB apart, alternately, in an earlier layout), the hardware
// stream prefetchers lose the stream, and even a plain 64-byte load loop in that order ran at half the
// bandwidth of one in address order (Zen 4, 1.1B ffn_up, 1 thread: 6.5 vs 14 GB/s). So the one-token
// kernels read each super-block in address order: q5_K its qh lines first (they precede qs), q6_K chunk
// by chunk, each chunk's ql and qh dwords next to each other (interleaved.h) so the 6-bit values are
// built once (64 vpdpbusd a block; two passes, all ql then all qh, took 128 and ran 84-90% of the read
// rate at 1 thread where this runs 91-101%).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"
#include "kernels/schedule.h"
#include "kernels/unroll.h"

#if defined(__GNUC__) && !defined(__clang__)  // GCC 12 header false positives, see matmul_x16_avx512.cpp
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace qe::kernels::avx512 {
namespace {

constexpr int kCols = 8;

#include "kernels/x16_k_avx512.inc"

// q5_K's fifth bits where the CPU has no GFNI: a 16-bit shift that brings bit s to bit 4, then a mask.
struct ShiftBit5 {
  template <int s>
  static __m512i at(__m512i qh) {
    return _mm512_and_si512(shift16<4 - s>(qh), _mm512_set1_epi8(0x10));
  }
};

// q6_K. Per 128-value half h and l4 < 8, qh dword 8h + l4 holds the two high bits of four weight
// vectors ("parts" 0..3, see interleaved.h): part 0's in bits 0-1, part 1's in 2-3, part 2's in 4-5, part
// 3's in 6-7 of each byte, moved to bits 4-5 by a 16-bit shift of +4, +2, 0, -2 after masking them
// (0x33 keeps bits 0-1, 4-5; 0xCC bits 2-3, 6-7) so no other bit lands in 4-7; the vpternlogd select
// then takes bits 0-3 from the ql nibble. part_weights<p>: v is part p's ql dword (low nibbles for
// p < 2, high for p >= 2), hb the chunk's qh dword masked with 0x33 (p even) or 0xCC (p odd).
template <int p>
inline __m512i part_weights(__m512i m4, __m512i v, __m512i hb) {
  return select(m4, p < 2 ? v : _mm512_srli_epi16(v, 4), shift16<4 - 2 * p>(hb));
}

// kPf: as K45's (the one-token kernel's share of the lines), and in the multi-token kernel an L2 prefetch
// further ahead.
template <bool kPf>
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
      if constexpr (C == 1) {
        // One token: chunk by chunk, in address order (interleaved.h). A chunk's ql and qh dwords give
        // the 6-bit weights of parts 0..3, one vpdpbusd each into its group's accumulator.
        __m512i g[16];
        for (auto& x : g) x = _mm512_setzero_si512();
        const int8_t* qa = a[0]->qs;
        unroll<16>([&](auto m_) {
          constexpr int m = decltype(m_)::value, h = m / 8, l4 = m % 8;
          if constexpr (kPf) prefetch_gemv_share<sizeof(W), 16, m>(&blk, g[8 * h + l4 / 4]);
          const __m512i v[2] = {load(blk.ql(h, 0, l4)), load(blk.ql(h, 1, l4))}, qh = load(blk.qh(h, l4));
          const __m512i hb[2] = {_mm512_and_si512(qh, m33), _mm512_and_si512(qh, mcc)};
          unroll<4>([&](auto p_) {
            constexpr int p = decltype(p_)::value, gi = 8 * h + 2 * p + l4 / 4;
            g[gi] = dpbusd_bcast(g[gi], part_weights<p>(m4, v[p & 1], hb[p & 1]), qa + 4 * (32 * h + 8 * p + l4));
          });
        });
        // The -32 offsets summed once: sum(sc * bsums) times 32 at the end rather than each scale pair
        // times -32 (exact int32 either way, so the same bits); three independent sums, not one chain.
        __m512i offs = _mm512_setzero_si512(), even = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
        unroll<8>([&](auto t_) {
          constexpr int t = decltype(t_)::value;
          const __m512i sp = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.scales + 32 * t)));
          offs = _mm512_dpwssd_epi32(offs, sp, bcast_dword(a[0]->bsums + 2 * t));
          even = _mm512_add_epi32(
              even, _mm512_mullo_epi32(g[2 * t], _mm512_srai_epi32(_mm512_slli_epi32(sp, 16), 16)));
          odd = _mm512_add_epi32(odd, _mm512_mullo_epi32(g[2 * t + 1], _mm512_srai_epi32(sp, 16)));
        });
        is[0] = _mm512_sub_epi32(_mm512_add_epi32(even, odd), _mm512_slli_epi32(offs, 5));
      } else {
        unroll<8>([&](auto t_) {  // values 32 t .. +31: h = t / 4, part = t % 4, groups 2t, 2t + 1
          constexpr int t = decltype(t_)::value, h = t / 4, p = t % 4;
          // The next super-block (or the next group's first), in address order: this order of reading
          // is not one the hardware prefetchers follow (see the top of the file). With kPf (one-slice
          // calls where the CPU wants software prefetch) also the block three ahead into L2: 8 tokens
          // from DRAM (2-vCPU Xeon, Emerald Rapids, 1.1B ffn_up) 53-55% -> 59-60% of the read.
          for (int i = 7 * t; i < 7 * t + 7 && 64 * i < static_cast<int>(sizeof(W)); ++i) {
            _mm_prefetch(reinterpret_cast<const char*>(&blk + 1) + 64 * i, _MM_HINT_T0);
            if constexpr (kPf) _mm_prefetch(reinterpret_cast<const char*>(&blk + 3) + 64 * i, _MM_HINT_T1);
          }
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
              const __m512i v = load(blk.ql(h, p & 1, l4));
              const __m512i w = part_weights<p>(m4, v, _mm512_and_si512(load(blk.qh(h, l4)), p % 2 ? mcc : m33));
              for (int c = 0; c < C; ++c)
                g[c] = dpbusd_bcast(g[c], w, a[c]->qs + 4 * (32 * h + 8 * p + l4));
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

namespace {

template <bool kGemv>
void fill_k_kernels(KernelTable& t) {
  t.x16_q4_K_q8_K =
      x16_first_slice_prefetch<K45<false, void, true>, K45<false, void, false>, kCols, 1, kGemv>;
  t.x16_q5_K_q8_K =
      x16_first_slice_prefetch<K45<true, ShiftBit5, true>, K45<true, ShiftBit5, false>, kCols, 1, kGemv>;
  t.x16_q6_K_q8_K = x16_first_slice_prefetch<K6<true>, K6<false>, kCols, 1, kGemv>;
}

}  // namespace

// C = 8 tokens x the whole 16-row group in one zmm. Called from fill_x16 (matmul_x16_avx512.cpp).
void fill_x16_k(KernelTable& t, bool gemv_prefetch) {
  if (gemv_prefetch)
    fill_k_kernels<true>(t);
  else
    fill_k_kernels<false>(t);
}

}  // namespace qe::kernels::avx512
