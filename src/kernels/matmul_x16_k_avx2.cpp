// x16 k-quant kernels, AVX2 (layout and arithmetic contract: kernels/interleaved.h). A 16-row group is
// done as two 8-row halves, one ymm lane per row; C = 4 tokens share each decoded weight vector. The
// int8 dot is maddubs (unsigned weights x the signed activation dword broadcast), summed in int16 as far
// as it cannot overflow for any int8 activation (|a| <= 128): q4_K 8 slices (16 x 15 x 128 = 30720),
// q5_K 4 slices (8 x 31 x 128 = 31744), q6_K 2 slices (4 x 63 x 128 = 32256); then one madd against the
// rows' (scale, scale) int16 pairs widens and scales them in one step. The q4_K / q5_K mins and q6_K's
// -32 offset are madds of the rows' int16 pairs against a broadcast bsums dword (q6_K's pairs
// pre-multiplied by -32, so the offset lands in the same accumulator).
//
// The q4_K / q5_K loops and q6_K's one-token path are unrolled at compile time (unroll<N>): immediate
// shifts, no branches. One token takes both halves of q4_K / q5_K in one pass (K45::gemv) and both
// halves of each q6_K super-block before the next (K6::gemv); each streams its weights with a software
// prefetch in address order, one line per step, 4 KiB ahead (q4_K 1.5 KiB: kGemvPrefetchAhead below).
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"
#include "kernels/schedule.h"
#include "kernels/unroll.h"

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
// One-token passes prefetch 4 KiB ahead of each line they consume, one prefetch per line, each tied to
// its step (prefetch_ahead, kernels/schedule.h): the hardware prefetchers alone leave a k-quant GEMV's
// weight stream and its arithmetic taking turns rather than overlapping. 1.1B ffn_up, 2-core Zen 3 EPYC,
// 4 interleaved rounds, faster in 22 of 24 pairs:
//   1 thread:  q4_K 561-631 -> 421-525 us, q5_K 703-871 -> 566-919, q6_K 1031-1114 -> 827-1032;
//   2 threads: q4_K 340-470 -> 285-468,    q5_K 404-502 -> 373-607, q6_K 529-698 -> 442-567.
// 2 and 8 KiB ahead measured about the same; a burst of a whole block's lines per block, or of the next
// group's during the second half's pass, gained nothing. Past the end of the weights a prefetch is
// harmless: it never faults.
// q4_K then moved to 1.5 KiB ahead, as q4_0 / q4_1 (matmul_x16_avx2.cpp): against a read at the same
// moments (qbench's "vs read", 1.1B ffn_up, 8 alternating rounds, medians; 2-core Zen 3 EPYC), 1 thread
// 79-80% -> 88-92%, 2 threads 86-87% -> 90-93%. q5_K, bound by its arithmetic here (64-70% of the read
// either way), measured no different; q6_K slower (below). q5_K again once its loop was inlined (K45::gemv),
// 1 thread, 6 alternating rounds: 4 KiB 80%, 2.5 KiB 76%, 6 KiB 73%, 1.5 KiB 71.5% (a noisier hour).
constexpr size_t kGemvPrefetchAhead = 4096, kQ4KGemvPrefetchAhead = 1536;

// 16-bit lane shift by a compile-time count: left for S > 0, right for S < 0 (callers mask to bits that
// stay in their byte).
template <int S>
inline __m256i shift16(__m256i v) {
  if constexpr (S > 0) return _mm256_slli_epi16(v, S);
  else if constexpr (S < 0) return _mm256_srli_epi16(v, -S);
  else return v;
}
inline const BlockQ8_K& act(const uint8_t* row, int64_t b) { return reinterpret_cast<const BlockQ8_K*>(row)[b]; }
// (x, x) int16 pairs from 8 bytes: one row per dword lane.
inline __m256i u8x8_pairs(const uint8_t* p) {
  int64_t v;
  std::memcpy(&v, p, 8);
  const __m256i x = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v));
  return _mm256_or_si256(x, _mm256_slli_epi32(x, 16));
}

// vpshufb pattern (per 128-bit lane) taking rows 8h .. 8h + 7's bytes of a broadcast 16-byte row vector to
// (x, x) int16 pairs, one row per dword lane.
inline __m256i pair_pattern(int h) {
  alignas(32) int8_t p[32];
  for (int l = 0; l < 2; ++l)
    for (int j = 0; j < 4; ++j) {
      const int8_t row = static_cast<int8_t>(8 * h + 4 * l + j);
      p[16 * l + 4 * j + 0] = p[16 * l + 4 * j + 2] = row;
      p[16 * l + 4 * j + 1] = p[16 * l + 4 * j + 3] = -1;  // zero
    }
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(p));
}

// The 6-bit scales and mins of a q4_K / q5_K group, unpacked to sc[16 * s + r], mn[16 * s + r].
inline void decode_scales(const uint8_t* lo, const uint8_t* hi, uint8_t* sc, uint8_t* mn) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x03), m30 = _mm256_set1_epi8(0x30);
  unroll<4>([&](auto i_) {  // sub-blocks 2i, 2i + 1 (32 bytes); their high bits: hi half i % 2, shift 2 * (i / 2)
    constexpr int i = decltype(i_)::value;
    const __m256i l = load(lo + 32 * i), h = shift16<-2 * (i / 2)>(load(hi + 32 * (i % 2)));
    _mm256_store_si256(reinterpret_cast<__m256i*>(sc + 32 * i),
                       _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4)));
    _mm256_store_si256(reinterpret_cast<__m256i*>(mn + 32 * i),
                       _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l, 4), m4), _mm256_and_si256(h, m30)));
  });
}

template <bool kQ5>
struct K45 {
  static constexpr size_t kGemvAhead = kQ5 ? kGemvPrefetchAhead : kQ4KGemvPrefetchAhead;
  using W = std::conditional_t<kQ5, BlockQ5_Kx16, BlockQ4_Kx16>;
  static constexpr int64_t kBlock = QK_K;
  static constexpr bool kSums = false;
  static constexpr int kRun = kQ5 ? 4 : 8;  // slices summed in int16 before the madd
  // One token, both halves in one pass (the driver's second call, h == 1, finds its rows done): each
  // activation broadcast feeds both halves' maddubs and the scales are decoded once per block, not per
  // half. Each qs (and q5_K qh) vector is loaded once for its two sub-blocks (low and high nibbles); a
  // scale becomes its row's (sc, sc) int16 pair by one vpshufb of the broadcast 16 scale bytes; the mins
  // go two sub-blocks per madd, (m[2i], m[2i + 1]) pairs against the token's (S[2i], S[2i + 1]) sub-block
  // sums; an empty asm (keep) holds each int16 sum a chain. The loop is bound by its vector uops, not by
  // DRAM: on a 2-core Zen 3 EPYC, 1 thread, 128 rows from cache, q4_K 28.4 -> 32.9 GB/s and q5_K 22.2 ->
  // 23.1 against a decode per sub-block with the pairs widened from memory; 1.1B ffn_up from DRAM,
  // interleaved runs, q4_K 532-607 -> 498-526 us (2 threads 310-331 -> 304), q5_K within the noise.
  // The loop's lambdas are always_inline: GCC 12 kept five of q5_K's unrolled bodies (one of q4_K's) as
  // calls, with the int16 sums and the weight vectors passed through the stack. Inlined, 128 rows from
  // cache (2-core Zen 3 EPYC, 1 thread, 8 alternating rounds, medians of best-of-5): q5_K 28.2 -> 37.3
  // G multiply-adds/s, q4_K 59.3 -> 65.5; 1.1B ffn_up from DRAM, "vs read" medians of 6 rounds: q5_K
  // 80 -> 82% at 1 thread, 84 -> 88.5% at 2, q4_K the same (92.5 / 95 -> 93.5 / 94). q5_K's fifth bits
  // (a shift, an and and an or per 32 weights, 6 of its 14 vector ops per qs vector) are what is left
  // between it and q4_K: without them (wrong sums, for timing) 61.6.
  static void gemv(int64_t nb, const W* wg, const uint8_t* ar, float* y) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < nb; ++b) {
      const W& blk = wg[b];
      const BlockQ8_K& a = act(ar, b);
      alignas(32) uint8_t sc[128], mn[128];
      decode_scales(blk.scales_lo, blk.scales_hi, sc, mn);
      __m256i is[2], im[2];
      unroll<2>([&](auto h) { is[h] = im[h] = _mm256_setzero_si256(); });
      // The token's sub-block sums S[s] = bsums[2s] + bsums[2s + 1] (|S| <= 32 x 128: int16), as
      // (S[2i], S[2i + 1]) pairs in dwords 0, 1 (i = 0, 1) and 4, 5 (i = 2, 3).
      alignas(32) int32_t spair[8];
      {
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums));
        _mm256_store_si256(reinterpret_cast<__m256i*>(spair), _mm256_hadd_epi16(bs, bs));
      }
      unroll<4>([&](auto i_) {  // mn + 32i: m[2i] of rows 0..15, then m[2i + 1]
        constexpr int i = decltype(i_)::value;
        const __m256i x = load(mn + 32 * i), sw = _mm256_permute2x128_si256(x, x, 1);
        const __m256i lo = _mm256_unpacklo_epi8(x, sw), hi = _mm256_unpackhi_epi8(x, sw);  // lane 0: rows 0-7, 8-15
        const __m256i sp = _mm256_set1_epi32(spair[i < 2 ? i : i + 2]);
        im[0] = _mm256_add_epi32(im[0], _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(lo)), sp));
        im[1] = _mm256_add_epi32(im[1], _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(hi)), sp));
      });
      // Sub-blocks 2u (low nibbles of qs dwords 8u + k) and 2u + 1 (high).
      unroll<4>([&](auto u_) __attribute__((always_inline)) {
        constexpr int u = decltype(u_)::value;
        unroll<8 / kRun>([&](auto r_) __attribute__((always_inline)) {
          constexpr int k0 = kRun * decltype(r_)::value;
          __m256i sl[2], sh[2];
          unroll<kRun>([&](auto i_) __attribute__((always_inline)) {
            constexpr int k = k0 + decltype(i_)::value;
            const __m256i bl = bcast_dword(a.qs + 4 * (16 * u + k)), bh = bcast_dword(a.qs + 4 * (16 * u + 8 + k));
            unroll<2>([&](auto h) __attribute__((always_inline)) {
              const __m256i v = load(blk.qs + 64 * (8 * u + k) + 32 * h);
              __m256i ql = _mm256_and_si256(v, m4), qh = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
              if constexpr (kQ5) {
                const __m256i hb = load(blk.qh + 64 * k + 32 * h);
                ql = _mm256_or_si256(ql, _mm256_and_si256(shift16<4 - 2 * u>(hb), b4));
                qh = _mm256_or_si256(qh, _mm256_and_si256(shift16<3 - 2 * u>(hb), b4));
              }
              const __m256i pl = _mm256_maddubs_epi16(ql, bl), ph = _mm256_maddubs_epi16(qh, bh);
              sl[h] = k == k0 ? pl : _mm256_add_epi16(sl[h], pl);
              sh[h] = k == k0 ? ph : _mm256_add_epi16(sh[h], ph);
              keep(sl[h]);
              keep(sh[h]);
              if constexpr (h == 0) {
                prefetch_ahead<kGemvAhead>(blk.qs + 64 * (8 * u + k), sl[0]);
                if constexpr (64 * (8 * u + k) < offsetof(W, qs))  // the scales (and q5_K's qh) lines
                  prefetch_ahead<kGemvAhead>(reinterpret_cast<const uint8_t*>(&blk) + 64 * (8 * u + k),
                                             sh[0]);
              }
            });
          });
          const __m256i scl = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(sc + 32 * u)));
          const __m256i sch = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(sc + 32 * u + 16)));
          unroll<2>([&](auto h) {
            is[h] = _mm256_add_epi32(is[h], _mm256_madd_epi16(sl[h], _mm256_shuffle_epi8(scl, pair_pattern(h))));
            is[h] = _mm256_add_epi32(is[h], _mm256_madd_epi16(sh[h], _mm256_shuffle_epi8(sch, pair_pattern(h))));
          });
        });
      });
      const __m256 da = _mm256_set1_ps(a.d);
      unroll<2>([&](auto h) {
        const __m256 dw = h2f8(blk.d + 8 * h), dm = h2f8(blk.dmin + 8 * h);
        acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[h]), _mm256_mul_ps(dw, da), acc[h]);
        acc[h] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(im[h]), _mm256_mul_ps(dm, da), acc[h]);
      });
    }
    unroll<2>([&](auto h) { _mm256_storeu_ps(y + 8 * h, acc[h]); });
  }
  template <int C>
  static void part(int64_t nb, const W* wg, int h, const uint8_t* const* ar, const int32_t* const*, float* y,
                   int64_t ldy) {
    if constexpr (C == 1) {
      if (h == 0) gemv(nb, wg, ar[0], y);
      return;
    }
    const __m256i m4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
    __m256 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const W& blk = wg[b];
      const BlockQ8_K* a[C];
      for (int c = 0; c < C; ++c) a[c] = &act(ar[c], b);
      alignas(32) uint8_t sc[128], mn[128];
      decode_scales(blk.scales_lo, blk.scales_hi, sc, mn);
      __m256i is[C], im[C];
      for (int c = 0; c < C; ++c) is[c] = im[c] = _mm256_setzero_si256();
      unroll<8>([&](auto s_) {  // sub-block s: the low (s even) or high nibbles of qs dwords 8 (s / 2) + k
        constexpr int s = decltype(s_)::value, u = s / 2;
        const __m256i scp = u8x8_pairs(sc + 16 * s + 8 * h);
        unroll<8 / kRun>([&](auto r_) {
          constexpr int k0 = kRun * decltype(r_)::value;
          __m256i s16[C];
          unroll<kRun>([&](auto i_) {
            constexpr int k = k0 + decltype(i_)::value;
            const __m256i v = load(blk.qs + 64 * (8 * u + k) + 32 * h);
            __m256i q = _mm256_and_si256(s % 2 ? _mm256_srli_epi16(v, 4) : v, m4);
            if constexpr (kQ5) q = _mm256_or_si256(q, _mm256_and_si256(shift16<4 - s>(load(blk.qh + 64 * k + 32 * h)), b4));
            for (int c = 0; c < C; ++c) {
              const __m256i p = _mm256_maddubs_epi16(q, bcast_dword(a[c]->qs + 4 * (8 * s + k)));
              s16[c] = k == k0 ? p : _mm256_add_epi16(s16[c], p);
              if constexpr (!kQ5) keep(s16[c]);  // q4_K: 10% faster; q5_K (4-slice runs): 10% slower
            }
          });
          for (int c = 0; c < C; ++c) is[c] = _mm256_add_epi32(is[c], _mm256_madd_epi16(s16[c], scp));
        });
      });
      unroll<8>([&](auto s_) {  // the mins after the quants: im[] is not live in the loop above
        constexpr int s = decltype(s_)::value;
        const __m256i mp = u8x8_pairs(mn + 16 * s + 8 * h);
        for (int c = 0; c < C; ++c) im[c] = _mm256_add_epi32(im[c], _mm256_madd_epi16(mp, bcast_dword(a[c]->bsums + 2 * s)));
      });
      const __m256 dw = h2f8(blk.d + 8 * h), dm = h2f8(blk.dmin + 8 * h);
      for (int c = 0; c < C; ++c) {
        const __m256 da = _mm256_set1_ps(a[c]->d);
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[c]), _mm256_mul_ps(dw, da), acc[c]);
        acc[c] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(im[c]), _mm256_mul_ps(dm, da), acc[c]);
      }
    }
    for (int c = 0; c < C; ++c) _mm256_storeu_ps(y + c * ldy, acc[c]);
  }
};

// q6_K: part p (0..3) of ql dwords 16 vh + l4 / 16 vh + 8 + l4 and qh dword 8 vh + l4 (interleaved.h);
// its two high bits, bits 2p and 2p + 1 of each qh byte, are moved to bits 4-5 by a 16-bit shift of
// 4 - 2p and masked with 0x30 (the bits that land there come from the same byte).
struct K6 {
  using W = BlockQ6_Kx16;
  static constexpr int64_t kBlock = QK_K;
  static constexpr bool kSums = false;
  // vpshufb patterns (byte indices within each 128-bit lane): each dword's (sc[2t], sc[2t]) or
  // (sc[2t + 1], sc[2t + 1]) int16 pair.
  static __m256i dup(int q) {
    const __m256i dup0 = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13,  //
                                          0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13);
    return q ? _mm256_add_epi8(dup0, _mm256_set1_epi8(2)) : dup0;
  }
  // Rows 8h .. 8h + 7's (sc[2t], sc[2t + 1]) as int16 pairs.
  static __m256i scale_pairs(const W& blk, int h, int t) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales + 32 * t + 16 * h)));
  }
  // The same pairs; is[c] takes their -32 offsets (the pairs times -32 against token c's bsums pair),
  // for the C tokens a[c].
  template <int C>
  static __m256i scales(const W& blk, int h, int t, const BlockQ8_K* const* a, __m256i* is) {
    const __m256i sp = scale_pairs(blk, h, t);
    const __m256i off = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sp, 5));
    for (int c = 0; c < C; ++c) is[c] = _mm256_add_epi32(is[c], _mm256_madd_epi16(off, bcast_dword(a[c]->bsums + 2 * t)));
    return sp;
  }
  // One token, rows 8H .. 8H + 7 of one super-block: the exact int32 IS of the arithmetic contract.
  // Step (vh, q, i) reads ql dwords L0 = 16 vh + 4q + i and L1 = L0 + 8, whose low and high nibbles are
  // the low bits of groups 8 vh + 2p + q (p = 0, 1 low, p = 2, 3 high: L0, L1, L0, L1), and qh dword
  // 8 vh + 4q + i, whose bits 2p, 2p + 1 are those groups' high bits: four 6-bit weight vectors, one
  // maddubs each, summed in int16 over two steps (2 x 2 x 63 x 128 = 32256) and madd'ed with (sc, sc).
  // Those three dwords are chunk 8 vh + 4q + i (interleaved.h), so the steps walk the block in address
  // order. The prefetch, step n = 16H + 4(2 vh + q) + i of the block requesting its lines 2n and 2n + 1
  // 4 KiB ahead, dates from a layout with all ql before all qh, when these steps were out of address
  // order (on the chunked layout, Zen 4, 1 thread: the same speed as then). This 6-bit decode against
  // the split one it replaced (the low nibbles, then the high bits as their own 2-bit maddubs, each read
  // in address order: twice the maddubs), on that layout, 2-core Zen 3 EPYC, 1.1B ffn_up, the
  // two alternating rep by rep in one process: 1 thread 657-721 -> 537-605 us, 2 threads 372-470 ->
  // 324-436 (15.7-17.6 GB/s at 1 thread, at the DRAM read roofline); from cache (128 rows, 1 thread)
  // 21 -> 26 GB/s. Prefetching instead the lines the next block's steps will read, in that order, one or
  // two blocks ahead: 25-40% slower from DRAM (the stream out of address order); 2 KiB ahead 15% slower,
  // 8 KiB the same as 4. Not inlined: the split decode, inlined into gemv's loop over H, ran 35% slower
  // from cache (GCC's schedule).
  template <int H>
  __attribute__((noinline)) static __m256i gemv_half(const W& blk, const BlockQ8_K& a) {
    constexpr int kLines = static_cast<int>((sizeof(W) + 63) / 64);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const int8_t* qa = a.qs;
    const auto* line = reinterpret_cast<const uint8_t*>(&blk);
    __m256i is = _mm256_setzero_si256();
    const BlockQ8_K* const ap = &a;
    unroll<8>([&](auto t) { (void)scales<1>(blk, H, t, &ap, &is); });  // the -32 offsets
    unroll<4>([&](auto n_) {  // n = 2 vh + q
      constexpr int n = decltype(n_)::value, vh = n / 2, q = n % 2;
      __m256i s16[4];
      unroll<4>([&](auto i_) {
        constexpr int i = decltype(i_)::value, l4 = 4 * q + i, step = 16 * H + 4 * n + i;
        const __m256i L0 = load(blk.ql(vh, 0, l4) + 32 * H), L1 = load(blk.ql(vh, 1, l4) + 32 * H);
        const __m256i hb = load(blk.qh(vh, l4) + 32 * H);
        const __m256i w[4] = {
            _mm256_or_si256(_mm256_and_si256(L0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30)),
            _mm256_or_si256(_mm256_and_si256(L1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L0, 4), m4), _mm256_and_si256(hb, m30)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30))};
        unroll<4>([&](auto p) {
          const __m256i m = _mm256_maddubs_epi16(w[p], bcast_dword(qa + 4 * (32 * vh + 8 * p + l4)));
          s16[p] = i % 2 ? _mm256_add_epi16(s16[p], m) : m;
          keep(s16[p]);
        });
        if constexpr (2 * step < kLines) prefetch_ahead<kGemvPrefetchAhead>(line + 64 * (2 * step), s16[0]);
        if constexpr (2 * step + 1 < kLines) prefetch_ahead<kGemvPrefetchAhead>(line + 64 * (2 * step + 1), s16[1]);
        if constexpr (i % 2 == 1) {
          unroll<4>([&](auto p) {  // group 8 vh + 2p + q: sc[2t + q] of t = 4 vh + p
            const __m256i sp = scale_pairs(blk, H, 4 * vh + p);
            is = _mm256_add_epi32(is, _mm256_madd_epi16(s16[p], _mm256_shuffle_epi8(sp, dup(q))));
          });
        }
      });
    });
    return is;
  }
  // One token (DRAM bound): both halves of a super-block, one after the other, before the next block
  // (the driver's second call, h == 1, finds its rows done). Measured on a 2-core Zen 3 EPYC (1.1B
  // ffn_up, 1 thread, interleaved runs), against a pass per half over the whole group (the weight
  // stream idle during the second pass, which reads from cache) and the scales at the end of the block:
  // 990-1120 -> 780-850 us, 2 threads 580-640 -> 510-550 (then the prefetch ahead, then the 6-bit
  // decode, above). Tried and not kept: the same read in two phases per 128 values: no faster.
  static void gemv(int64_t nb, const W* wg, const uint8_t* ar, float* y) {
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t b = 0; b < nb; ++b) {
      const BlockQ8_K& a = act(ar, b);
      const __m256 da = _mm256_set1_ps(a.d);
      unroll<2>([&](auto h) {
        const __m256i is = gemv_half<decltype(h)::value>(wg[b], a);
        acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_mul_ps(h2f8(wg[b].d + 8 * h), da), acc[h]);
      });
    }
    unroll<2>([&](auto h) { _mm256_storeu_ps(y + 8 * h, acc[h]); });
  }
  template <int C>
  static void part(int64_t nb, const W* wg, int h, const uint8_t* const* ar, const int32_t* const*, float* y,
                   int64_t ldy) {
    if constexpr (C == 1) {
      if (h == 0) gemv(nb, wg, ar[0], y);
      return;
    }
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const W& blk = wg[b];
      const BlockQ8_K* a[C];
      for (int c = 0; c < C; ++c) a[c] = &act(ar[c], b);
      __m256i is[C];
      for (int c = 0; c < C; ++c) is[c] = _mm256_setzero_si256();
      // Plain loops (run-time shift counts) here: with 16 ymm, C = 4 accumulators and the decode, the
      // fully unrolled form spilled and measured ~12% slower at 512 tokens.
      for (int vh = 0; vh < 2; ++vh)
        for (int part = 0; part < 4; ++part) {  // values 128 vh + 32 part .. +31: groups 2t + q
          const int t = 4 * vh + part;
          const __m256i sp = scales<C>(blk, h, t, a, is);
          for (int q = 0; q < 2; ++q) {
            const __m256i scp = _mm256_shuffle_epi8(sp, dup(q));
            for (int i0 = 0; i0 < 4; i0 += 2) {
              __m256i s16[C];
              for (int c = 0; c < C; ++c) s16[c] = _mm256_setzero_si256();
              for (int i = i0; i < i0 + 2; ++i) {
                const int l4 = 4 * q + i;
                const __m256i v = load(blk.ql(vh, part & 1, l4) + 32 * h);
                const __m256i lo = _mm256_and_si256(part < 2 ? v : _mm256_srli_epi16(v, 4), m4);
                const __m256i qh = load(blk.qh(vh, l4) + 32 * h);
                const __m128i sh = _mm_cvtsi32_si128(std::abs(4 - 2 * part));
                const __m256i hs = part < 3 ? _mm256_sll_epi16(qh, sh) : _mm256_srl_epi16(qh, sh);
                const __m256i w = _mm256_or_si256(lo, _mm256_and_si256(hs, m30));
                for (int c = 0; c < C; ++c)
                  s16[c] = _mm256_add_epi16(
                      s16[c], _mm256_maddubs_epi16(w, bcast_dword(a[c]->qs + 4 * (32 * vh + 8 * part + l4))));
              }
              for (int c = 0; c < C; ++c) is[c] = _mm256_add_epi32(is[c], _mm256_madd_epi16(s16[c], scp));
            }
          }
        }
      const __m256 dw = h2f8(blk.d + 8 * h);
      for (int c = 0; c < C; ++c)
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[c]), _mm256_mul_ps(dw, _mm256_set1_ps(a[c]->d)), acc[c]);
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
