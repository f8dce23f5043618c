// x16 kernels, AVX2 (layout and arithmetic contract: kernels/interleaved.h). A 16-row group is two
// 8-row halves, one ymm lane per row; a pass takes both halves for C = 4 tokens. The int8 dot is
// maddubs (unsigned weights x signed activation dword broadcast); for the 4-bit types the int16 pair sums
// of a whole block fit in int16 (8 x 2 x 15 x 127 = 30480), so only one madd per block and token widens
// them. q8_0 moves each weight's sign onto the activation (sign_epi8) so |w| can sit on the unsigned side
// (tried: w + 128 split into two nibbles, 2 maddubs per dword into int16 sums, no sign: no faster on
// Zen 4, its two sums per token crowd the 16 ymm).
//
// The loop is bound by the vector uops it issues, not by the multiply pipes: per (block, token, half)
// q4_1 is 8 maddubs + 8 adds + 8 broadcasts + a 6-op epilogue. Both halves in one pass let each
// activation broadcast feed two maddubs (the weight decode is then shared by 4 tokens, not 8); measured
// on a 2-core Zen 3 EPYC against one half and 8 tokens per pass (135M ffn_up, qbench, 3 interleaved
// rounds): q4_0 / q4_1 8 tokens 1 thread +9% / +10%, 64 tokens +9% / +7%, 512 tokens +8%; q8_0 +2%.
// As at the AVX-512 level, the activation scalars (d_a as float, -8 * sum or s_a) are converted once per
// matmul (X16IntSplit) into one line per (block, 4 tokens) and read with broadcast loads.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"
#include "kernels/schedule.h"
#include "kernels/unroll.h"

namespace qe::kernels::avx2 {
namespace {

// Tokens per pass: 2 halves x 4 tokens of int16 sums + the 2 x 2 decoded weight vectors and 2
// broadcasts fill the 16 ymm (the float accumulators are touched once per block: their spills are cheap).
constexpr int kCols = 4;

// A GEMV streams its weights from DRAM once; on Zen 3 (one core reaches ~10 GB/s) the hardware prefetcher
// alone left it at 55-75% of that. Software prefetch of the lines 1 KiB ahead, one pass over both halves,
// measured on a 2-core Zen 3 EPYC (1.1B ffn_up, 1 thread, 5 interleaved rounds): q4_0/q4_1/q8_0 from
// 5.8-8.3 GB/s to 7.3-9.4 GB/s, faster in 14 of 15 pairs. A GEMM's first pass over a group (its first
// 4 tokens) streams it from DRAM too and prefetches the same way (135M ffn_up, 8 tokens, 1 thread: 10-20%
// faster). q4_0 / q4_1 then moved to 4 KiB ahead of each consumed line, tied to its step (prefetch_ahead,
// as the k-quant GEMVs): 1.1B ffn_up, 1 and 2 threads, 8 interleaved rounds while the VM's DRAM was slow,
// faster in 23 of 32 pairs, medians about 6%; the same in 3 rounds while it was fast.
//
// One-token passes, q8_0's too, now take each line 1.5 KiB ahead: against a read at the same moments
// (qbench's "vs read", 1.1B ffn_up, 6-8 alternating rounds, medians; 2-core Zen 3 EPYC), 1 thread q4_0 /
// q4_1 82-85% (4 KiB) -> 89-94%, 2 threads 85-89% -> 87-94%; at 1 thread 2 and 3 KiB gave 85-91%,
// 1 KiB 84-88%, prefetcht1 4 KiB + prefetcht0 2 KiB (what an Intel core wants, schedule.h) 81-85%.
// The GEMMs' first passes keep 4 KiB (q8_0 its burst of a block's lines 1 KiB ahead): at 1.5 KiB their
// 8- and 64-token passes measured slower. A prefetch past the end of the weights never faults.
constexpr size_t kGemvPrefetchAhead = 1536;
constexpr size_t kGemmPrefetchAhead = 4096;
constexpr size_t kGemmQ8PrefetchBytes = 1024;

inline __m256i bcast_dword(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline __m256 h2f8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// The activation side of one block for kCols tokens: d_a as float, and either the integer sum's offset
// (q4_0: -8 * sum; q8_0 takes none) or q4_1's s_a as float.
struct alignas(32) TokenScales {
  float d[kCols];
  union {
    int32_t start[kCols];
    float s[kCols];
  };
};
static_assert(sizeof(TokenScales) == 32);

template <class WBlock, class ABlock, bool kMin>
struct Q4 {
  using W = WBlock;
  using A = ABlock;
  static constexpr bool kQ8 = false;
  static constexpr bool kHasMin = kMin;
  static constexpr bool kSums = !kMin;  // q4_0: -8 * sum
  static constexpr int32_t kOffset = -8;
};
struct Q8_0 {
  using W = BlockQ8_0x16;
  using A = BlockQ8_0;
  static constexpr bool kQ8 = true;
  static constexpr bool kHasMin = false;
  static constexpr bool kSums = false;
};

// ts[s * nb + b] for the kCols-token slice s of the nc tokens.
template <class K>
void token_scales(int64_t nb, const uint8_t* a, int64_t as, int64_t nc, int64_t sums_off, TokenScales* ts) {
  for (int64_t c = 0; c < nc; ++c) {
    const auto* ab = reinterpret_cast<const typename K::A*>(a + c * as);
    const auto* sums = reinterpret_cast<const int32_t*>(a + c * as + sums_off);
    TokenScales* t = ts + c / kCols * nb;
    const int64_t l = c % kCols;
    for (int64_t b = 0; b < nb; ++b) {
      t[b].d[l] = h2f(ab[b].d);
      if constexpr (K::kHasMin) t[b].s[l] = h2f(ab[b].s);
      else if constexpr (K::kSums) t[b].start[l] = K::kOffset * sums[b];
    }
  }
}

// y[c * ldy + r] for c < C tokens (rows ar[c]) and the 16 rows of group wg. One token (GEMV) reads its
// scalars from its own row (block sums at sums_off) rather than from ts, as at the AVX-512 level (faster
// at DRAM speed there), same bits. `prefetch`: this pass is the group's first, the one that reads it
// from DRAM; a template parameter because, as a run-time flag, its branch and the anchored prefetch asm
// in every step of the later (cache-resident) passes cost the GEMM a fifth (1.1B q4_0 pp512, Zen 3).
template <class K, int C, bool prefetch>
void part(int64_t nb, const typename K::W* wg, const uint8_t* const* ar, int64_t sums_off,
          const TokenScales* ts, float* y, int64_t ldy) {
  constexpr int NH = 2;
  constexpr size_t kAhead = C == 1 ? kGemvPrefetchAhead : kGemmPrefetchAhead;
  using A = typename K::A;
  const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  const uint8_t* q[C];
  __m256 acc[NH][C];
  unroll<C>([&](auto c) {
    q[c] = ar[c] + offsetof(A, qs);
    unroll<NH>([&](auto k) { acc[k][c] = _mm256_setzero_ps(); });
  });
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t o = b * static_cast<int64_t>(sizeof(A));
    if constexpr (K::kQ8 && prefetch && C > 1) {
      const char* ahead = reinterpret_cast<const char*>(wg + b) + kGemmQ8PrefetchBytes;
      for (size_t off = 0; off < sizeof(typename K::W); off += 64) _mm_prefetch(ahead + off, _MM_HINT_T0);
    }
    __m256i isum[NH][C];
    if constexpr (K::kQ8) {
      unroll<NH>([&](auto k) { unroll<C>([&](auto c) { isum[k][c] = _mm256_setzero_si256(); }); });
      unroll<8>([&](auto j) {
        __m256i v[NH], av[NH];
        unroll<NH>([&](auto k) {
          v[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg[b].qs + 64 * j + 32 * k));
          av[k] = _mm256_sign_epi8(v[k], v[k]);
        });
        unroll<C>([&](auto c) {
          const __m256i bc = bcast_dword(q[c] + o + 4 * j);
          unroll<NH>([&](auto k) {
            const __m256i p = _mm256_maddubs_epi16(av[k], _mm256_sign_epi8(bc, v[k]));
            isum[k][c] = _mm256_add_epi32(isum[k][c], _mm256_madd_epi16(p, ones));
            keep(isum[k][c]);
          });
        });
        if constexpr (prefetch && C == 1) {  // qs line j; the scales' line with the first
          prefetch_ahead<kGemvPrefetchAhead>(wg[b].qs + 64 * j, isum[0][0]);
          if constexpr (j == 0) prefetch_ahead<kGemvPrefetchAhead>(&wg[b], isum[1][0]);
        }
      });
    } else {
      // dword j of a token feeds the low nibbles of both halves, dword 4 + j their high nibbles: one
      // broadcast per NH maddubs.
      __m256i s16[NH][C];
      unroll<NH>([&](auto k) { unroll<C>([&](auto c) { s16[k][c] = _mm256_setzero_si256(); }); });
      unroll<4>([&](auto j) {
        __m256i lo[NH], hi[NH];
        unroll<NH>([&](auto k) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg[b].qs + 64 * j + 32 * k));
          lo[k] = _mm256_and_si256(v, m4);
          hi[k] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        });
        unroll<C>([&](auto c) {
          const __m256i bl = bcast_dword(q[c] + o + 4 * j), bh = bcast_dword(q[c] + o + 16 + 4 * j);
          unroll<NH>([&](auto k) {
            s16[k][c] = _mm256_add_epi16(s16[k][c], _mm256_maddubs_epi16(lo[k], bl));
            keep(s16[k][c]);
          });
          unroll<NH>([&](auto k) {
            s16[k][c] = _mm256_add_epi16(s16[k][c], _mm256_maddubs_epi16(hi[k], bh));
            keep(s16[k][c]);
          });
        });
        if constexpr (prefetch) {  // qs line j; the scales' line with the first
          prefetch_ahead<kAhead>(wg[b].qs + 64 * j, s16[0][0]);
          if constexpr (j == 0) prefetch_ahead<kAhead>(&wg[b], s16[1][0]);
        }
      });
      unroll<NH>([&](auto k) {
        unroll<C>([&](auto c) {
          isum[k][c] = _mm256_madd_epi16(s16[k][c], ones);
          if constexpr (K::kSums) {
            const int32_t* sums1 = reinterpret_cast<const int32_t*>(ar[0] + sums_off);
            const int32_t start = C == 1 ? K::kOffset * sums1[b] : ts[b].start[c];
            isum[k][c] = _mm256_add_epi32(isum[k][c], _mm256_set1_epi32(start));
          }
        });
      });
    }
    const A& a1 = reinterpret_cast<const A*>(ar[0])[b];  // C == 1
    unroll<NH>([&](auto k) {
      const __m256 dw = h2f8(wg[b].d + 8 * k);
      unroll<C>([&](auto c) {
        const float da = C == 1 ? h2f(a1.d) : ts[b].d[c];
        acc[k][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[k][c]), _mm256_mul_ps(dw, _mm256_set1_ps(da)), acc[k][c]);
        if constexpr (K::kHasMin) {
          const float sa = C == 1 ? h2f(a1.s) : ts[b].s[c];
          acc[k][c] = _mm256_fmadd_ps(h2f8(wg[b].m + 8 * k), _mm256_set1_ps(sa), acc[k][c]);
        }
      });
    });
  }
  unroll<C>([&](auto c) { unroll<NH>([&](auto k) { _mm256_storeu_ps(y + c * ldy + 8 * k, acc[k][c]); }); });
}

// Calls the C-token micro-kernel for exactly `c` tokens (1 <= c <= C).
template <class K, int C, bool prefetch>
void part_tail(int c, int64_t nb, const typename K::W* wg, const uint8_t* const* ar, int64_t sums_off,
               const TokenScales* ts, float* y, int64_t ldy) {
  if constexpr (C > 0) {
    if (c == C) part<K, C, prefetch>(nb, wg, ar, sums_off, ts, y, ldy);
    else part_tail<K, C - 1, prefetch>(c, nb, wg, ar, sums_off, ts, y, ldy);
  }
}

// Every group, kCols tokens at a time, with the scalars `scales` made of these rows.
template <class K>
void run(int64_t n, const void* w, int64_t n_groups, const void* a, int64_t as, int64_t nc,
         const void* scales, float* y, int64_t ldy) {
  const int64_t nb = n / QK8_0;
  const int64_t n_slices = (nc + kCols - 1) / kCols;
  const auto* ab = static_cast<const uint8_t*>(a);
  const int64_t sums_off = K::kSums ? q8_0_sums_offset(n) : 0;
  for (int64_t g = 0; g < n_groups; ++g) {
    const auto* wg = static_cast<const typename K::W*>(w) + g * nb;
    for (int64_t s = 0; s < n_slices; ++s) {
      const int64_t c0 = s * kCols;
      const int cn = static_cast<int>(std::min<int64_t>(kCols, nc - c0));
      const uint8_t* ar[kCols];
      for (int c = 0; c < cn; ++c) ar[c] = ab + (c0 + c) * as;
      const TokenScales* ts = static_cast<const TokenScales*>(scales) + s * nb;
      float* yo = y + c0 * ldy + g * kInterleave;
      if (s == 0) part_tail<K, kCols, true>(cn, nb, wg, ar, sums_off, ts, yo, ldy);  // the pass from DRAM
      else part_tail<K, kCols, false>(cn, nb, wg, ar, sums_off, ts, yo, ldy);
    }
  }
}

}  // namespace

#include "kernels/x16_int_split.inc"

void fill_x16_k(KernelTable& t);  // the k-quants: matmul_x16_k_avx2.cpp

// C = 4 tokens x both halves of 8 rows.
void fill_x16(KernelTable& t) {
  fill_x16_k(t);
  t.x16_q4_0_q8_0 = x16<Q4<BlockQ4_0x16, BlockQ8_0, false>>;
  t.x16_q4_1_q8_1 = x16<Q4<BlockQ4_1x16, BlockQ8_1, true>>;
  t.x16_q8_0_q8_0 = x16<Q8_0>;
  t.x16_q4_0_split = split<Q4<BlockQ4_0x16, BlockQ8_0, false>>();
  t.x16_q4_1_split = split<Q4<BlockQ4_1x16, BlockQ8_1, true>>();
  t.x16_q8_0_split = split<Q8_0>();
}

}  // namespace qe::kernels::avx2
