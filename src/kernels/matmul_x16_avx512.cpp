// x16 kernels, AVX-512 VNNI (layout and arithmetic contract: kernels/interleaved.h). One zmm lane per
// row of the 16-row group; one vpdpbusd per 4-element slice advances all 16 rows against one broadcast
// activation dword. C = 8 tokens share each decoded weight vector: 8 integer + 8 float accumulators +
// the weight vectors fit the 32 zmm registers. The weights sit on the unsigned side: nibbles 0..15
// (q4), or w + 128 (q8_0, an xor of the sign bit); the integer accumulator starts at -8 * sum(a) or
// -128 * sum(a) (the activation rows' block sums) so it ends at the exact signed dot.
//
// Where the time goes (Zen 4, measured with a port micro-benchmark): vpdpbusd, vmulps and vfmadd all
// issue on the same two 256-bit pipes (FP0/FP1), each zmm op holding one for a cycle pair, while
// converts, logic, shifts, adds and loads (broadcasts from memory included) go elsewhere. Per (block,
// token) a q4_0 / q8_0 block is 8 vpdpbusd + 1 vmulps (d_w * d_a) + 1 vfmadd: at best 8 / 10 = 80% of
// the vpdpbusd peak; q4_1's m * s fma makes it 8 / 11 = 73%. The contract fixes those two float ops
// (the product must be rounded once to float, and the fma is the accumulation), so the kernel's job is
// to keep everything else off FP0/FP1 and out of the front end's way:
//  - every activation dword is an embedded broadcast of vpdpbusd ({1to16}), no separate vpbroadcastd;
//  - the per-(block, token) activation scalars (d_a as float, the integer start -8 / -128 * sum, or
//    q4_1's s_a as float) are converted once per matmul (X16IntSplit: the driver makes them before its
//    threads start, where every call used to) into one 64-byte line per (block, 8 tokens), read
//    with broadcast loads (vpbroadcastd / vmulps {1to16}), instead of a scalar fp16 convert + shuffle +
//    integer multiply per (block, token, row group);
//  - while a group's weights serve its 8-token slices, the next group's are prefetched, a share per
//    slice: each 64-token chunk streams the thread's rows from L3 / DRAM once, and without it each
//    group's first slice waited on its weights (1.1B ffn_up q4_0, 64 tokens, 1 thread: 67% -> 73-75% of
//    the peak; from L2 both reach 78-80%).
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

// GCC 12's _mm512_cvtepi32_ps / _mm512_cvtph_ps pass _mm512_undefined_ps() as the unused merge source,
// which -Wmaybe-uninitialized reports once inlined into a loop (a known header false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace qe::kernels::avx512 {
namespace {

constexpr int kCols = 8;
// How far ahead a one-slice GEMM (2..8 tokens) prefetches its own group's weights. 2-core Zen 4 VM, 1.1B
// ffn_up from DRAM, 8 tokens, against no software prefetch (the two alternating rep by rep in one process,
// medians of 30): q4_0 1024 -> 674 us at 1 thread, 577 -> 376 at 2; q4_1 1137 -> 742, 689 -> 486; q8_0
// 979 -> 956, 706 -> 658; q4_1 with 4 tokens 784 -> 537, 509 -> 488. 4 and 8 KiB ahead: within a few
// percent of 2 KiB. One token (GEMV) gained nothing this way on the Zen 4.
// Each line is also prefetched into L2 kSelfL2Ahead bytes ahead: a block of 8 tokens is ~55 cycles of
// vpdpbusd, so the L1 prefetch, 2 KiB ahead, asks for a line ~130 ns before its use, with ~27 lines in
// flight, more than the L1's fill buffers hold. 2-vCPU Xeon (Emerald Rapids), 8 tokens from DRAM, % of
// the read at 1 and 2 threads, L1 alone -> with L2 (two runs each): q4_0 1.1B ffn_up 69-72% -> 75-78%,
// 135M 68-70% -> 71-74%; q4_1 1.1B 68-71% -> 77-79%, 135M 74-80% -> 80-82%; q8_0 1.1B 74-76% -> 88-91%,
// 135M 78-84% -> 90-94%. The L2 prefetch 4 KiB ahead: 72-77% on q4_0 and q4_1; 16 KiB: as 8; the L1 one
// alone 4 KiB ahead: 68-78%. The Zen 4, whose GEMVs want no software prefetch (K::kGemvPf false), at
// first had the L1 one alone; with L2 too (`qbench --full`, 8 tokens, medians of 5 alternating rounds,
// 1 / 2 threads): q8_0 1.1B ffn_up 1.21x / 1.03x, 135M 1.14x / 0.98x; q4_0 1.1B 1.04x / 1.07x, 135M
// 0.99x / 1.01x; q4_1 1.1B 1.04x / 1.06x, 135M 1.02x / 1.01x.
constexpr int64_t kSelfAhead = 2048, kSelfL2Ahead = 8192;

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline __m512 h2f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
// acc + vpdpbusd(w, the activation dword at p broadcast), the broadcast embedded in the instruction's
// memory operand ({1to16}): GCC 12 does not fold _mm512_set1_epi32 of a load into it, and a separate
// vpbroadcastd is one more uop per product.
inline __m512i dpbusd_bcast(__m512i acc, __m512i w, const void* p) {
#if defined(__GNUC__)
  asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*static_cast<const int32_t*>(p)));
  return acc;
#else
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_dpbusd_epi32(acc, w, _mm512_set1_epi32(v));
#endif
}

// The activation side of one block for kCols tokens, one cache line: d_a as float, and either the
// integer accumulator's start (q4_0: -8 * sum, q8_0: -128 * sum) or q4_1's s_a as float.
struct alignas(64) TokenScales {
  float d[kCols];
  union {
    int32_t start[kCols];
    float s[kCols];
  };
};
static_assert(sizeof(TokenScales) == 64);

// Q4 (q4_0 with kMin = false, q4_1 with kMin = true) and Q8_0: the weight block, its activation block,
// and the multiple of the block sum the integer accumulator starts at (q4_1 starts at 0 and adds m * s).
// kGemvPf: one token prefetches its weights in software (gemv_software_prefetch, kernel_tables.h).
template <class WBlock, class ABlock, bool kMin, bool kPf>
struct Q4 {
  using W = WBlock;
  using A = ABlock;
  static constexpr bool kQ8 = false;
  static constexpr bool kHasMin = kMin;
  static constexpr bool kGemvPf = kPf;
  static constexpr int32_t kOffset = kMin ? 0 : -8;
};
template <bool kPf>
struct Q8_0 {
  using W = BlockQ8_0x16;
  using A = BlockQ8_0;
  static constexpr bool kQ8 = true;
  static constexpr bool kHasMin = false;
  static constexpr bool kGemvPf = kPf;
  static constexpr int32_t kOffset = -128;
};

// ts[s * nb + b] for the 8-token slice s of the nc tokens: every scalar the micro-kernel needs per
// (block, token). One block's scalars of a slice's tokens come in one gather (the rows are `as` apart),
// converted 8 at a time; lanes past nc are zeros (never read).
template <class K>
void token_scales(int64_t nb, const uint8_t* a, int64_t as, int64_t nc, int64_t sums_off, TokenScales* ts) {
  using A = typename K::A;
  const __m256i rows = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                          _mm256_set1_epi32(static_cast<int32_t>(as)));
  for (int64_t c0 = 0; c0 < nc; c0 += kCols) {
    const auto live = static_cast<__mmask8>((1u << std::min<int64_t>(kCols, nc - c0)) - 1);
    const uint8_t* slice = a + c0 * as;
    TokenScales* t = ts + c0 / kCols * nb;
    for (int64_t b = 0; b < nb; ++b) {
      // The block's first dword: d in its low half, and q4_1's s in its high half (q8_1).
      const __m256i head = _mm256_mmask_i32gather_epi32(_mm256_setzero_si256(), live, rows,
                                                        slice + b * static_cast<int64_t>(sizeof(A)), 1);
      _mm256_store_ps(t[b].d, _mm256_cvtph_ps(_mm256_cvtepi32_epi16(head)));
      if constexpr (K::kHasMin) {
        _mm256_store_ps(t[b].s, _mm256_cvtph_ps(_mm256_cvtepi32_epi16(_mm256_srli_epi32(head, 16))));
      } else {
        const __m256i sums =
            _mm256_mmask_i32gather_epi32(_mm256_setzero_si256(), live, rows, slice + sums_off + 4 * b, 1);
        _mm256_store_si256(reinterpret_cast<__m256i*>(t[b].start),
                           _mm256_mullo_epi32(sums, _mm256_set1_epi32(K::kOffset)));
      }
    }
  }
}

// y[c * ldy + r] for c < C tokens (rows ar[c]) and the 16 rows of group wg. pf (may be null): pf_step
// bytes to prefetch per block, from pf + pf_step * b, into L1, and with kL2 into L2 as well,
// kSelfL2Ahead - kSelfAhead bytes further on. One token (GEMV) reads its scalars from its own row (sums
// at sums_off) rather than from ts: measured ~10% faster at DRAM speed for q8_0 (Zen 4), same bits.
template <class K, int C, bool kL2>
void part(int64_t nb, const typename K::W* wg, const uint8_t* const* ar, int64_t sums_off,
          const TokenScales* ts, const uint8_t* pf, int64_t pf_step, float* y, int64_t ldy) {
  using A = typename K::A;
  const __m512i m4 = _mm512_set1_epi8(0x0F), sign = _mm512_set1_epi8(static_cast<char>(0x80));
  const uint8_t* q[C];
  __m512 acc[C];
  unroll<C>([&](auto c) {
    q[c] = ar[c] + offsetof(A, qs);
    acc[c] = _mm512_setzero_ps();
  });
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t o = b * static_cast<int64_t>(sizeof(A));
    if (pf)
      for (int64_t off = 0; off < pf_step; off += 64) {
        const char* line = reinterpret_cast<const char*>(pf + pf_step * b + off);
        _mm_prefetch(line, _MM_HINT_T0);
        if constexpr (kL2) _mm_prefetch(line + (kSelfL2Ahead - kSelfAhead), _MM_HINT_T1);
      }
    __m512i isum[C];
    const A& a1 = reinterpret_cast<const A*>(ar[0])[b];  // C == 1
    const int32_t* sums1 = reinterpret_cast<const int32_t*>(ar[0] + sums_off);
    unroll<C>([&](auto c) {
      if constexpr (K::kHasMin) isum[c] = _mm512_setzero_si512();
      else isum[c] = _mm512_set1_epi32(C == 1 ? K::kOffset * sums1[b] : ts[b].start[c]);
    });
    if constexpr (K::kQ8 && C == 1) {
      __m512i part2 = _mm512_setzero_si512();  // two chains, as for q4 below
      unroll<4>([&](auto j) {
        if constexpr (K::kGemvPf) prefetch_gemv_share<sizeof(typename K::W), 4, j>(&wg[b], part2);
        const __m512i u0 = _mm512_xor_si512(_mm512_loadu_si512(wg[b].qs + 128 * j), sign);
        const __m512i u1 = _mm512_xor_si512(_mm512_loadu_si512(wg[b].qs + 128 * j + 64), sign);
        isum[0] = dpbusd_bcast(isum[0], u0, q[0] + o + 8 * j);
        part2 = dpbusd_bcast(part2, u1, q[0] + o + 8 * j + 4);
      });
      isum[0] = _mm512_add_epi32(isum[0], part2);
    } else if constexpr (K::kQ8) {
      unroll<8>([&](auto j) {
        const __m512i u = _mm512_xor_si512(_mm512_loadu_si512(wg[b].qs + 64 * j), sign);  // w + 128
        unroll<C>([&](auto c) { isum[c] = dpbusd_bcast(isum[c], u, q[c] + o + 4 * j); });
      });
    } else if constexpr (C == 1) {
      // One token: the block's 8 products in two independent chains (integer sums, so the same bits),
      // halving the dependent vpdpbusd latency that bounds GEMV.
      __m512i part2 = _mm512_setzero_si512();
      unroll<4>([&](auto j) {
        if constexpr (K::kGemvPf) prefetch_gemv_share<sizeof(typename K::W), 4, j>(&wg[b], part2);
        const __m512i v = _mm512_loadu_si512(wg[b].qs + 64 * j);
        const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        isum[0] = dpbusd_bcast(isum[0], lo, q[0] + o + 4 * j);
        part2 = dpbusd_bcast(part2, hi, q[0] + o + 16 + 4 * j);
      });
      isum[0] = _mm512_add_epi32(isum[0], part2);
    } else {
      unroll<4>([&](auto j) {
        const __m512i v = _mm512_loadu_si512(wg[b].qs + 64 * j);
        const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        unroll<C>([&](auto c) {
          isum[c] = dpbusd_bcast(isum[c], lo, q[c] + o + 4 * j);
          isum[c] = dpbusd_bcast(isum[c], hi, q[c] + o + 16 + 4 * j);
        });
      });
    }
    const __m512 dw = h2f16(wg[b].d);
    unroll<C>([&](auto c) {
      const float da = C == 1 ? h2f(a1.d) : ts[b].d[c];
      acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_mul_ps(dw, _mm512_set1_ps(da)), acc[c]);
      if constexpr (K::kHasMin) {
        const float sa = C == 1 ? h2f(a1.s) : ts[b].s[c];
        acc[c] = _mm512_fmadd_ps(h2f16(wg[b].m), _mm512_set1_ps(sa), acc[c]);
      }
    });
  }
  unroll<C>([&](auto c) { _mm512_storeu_ps(y + c * ldy, acc[c]); });
}

// Calls the C-token micro-kernel for exactly `c` tokens (c <= C): the token tail of a call.
template <class K, int C, bool kL2>
void part_tail(int c, int64_t nb, const typename K::W* wg, const uint8_t* const* ar, int64_t sums_off,
               const TokenScales* ts, const uint8_t* pf, int64_t pf_step, float* y, int64_t ldy) {
  if constexpr (C > 0) {
    if (c == C)
      part<K, C, kL2>(nb, wg, ar, sums_off, ts, pf, pf_step, y, ldy);
    else
      part_tail<K, C - 1, kL2>(c, nb, wg, ar, sums_off, ts, pf, pf_step, y, ldy);
  }
}

// Every group, kCols tokens at a time, with the scalars `scales` made of these rows.
template <class K>
void run(int64_t n, const void* w, int64_t n_groups, const void* a, int64_t as, int64_t nc,
         const void* scales, float* y, int64_t ldy) {
  const int64_t nb = n / QK8_0;
  const int64_t n_slices = (nc + kCols - 1) / kCols;
  const auto* ab = static_cast<const uint8_t*>(a);
  const int64_t sums_off = K::kHasMin ? 0 : q8_0_sums_offset(n);
  const int64_t group_bytes = nb * static_cast<int64_t>(sizeof(typename K::W));
  const int64_t pf_step = n_slices > 1 ? 128 : static_cast<int64_t>(sizeof(typename K::W));
  for (int64_t g = 0; g < n_groups; ++g) {
    const auto* wg = static_cast<const typename K::W*>(w) + g * nb;
    // The next group's weights, a share per slice (two lines per block), so DRAM sees an even stream
    // rather than one burst per group (the last group prefetches itself: harmless, no branch). With one
    // slice of 2..8 tokens (a batched decode step) the group's own weights, kSelfAhead ahead of the
    // block being read (and into L2 kSelfL2Ahead ahead): they come from DRAM once, and the hardware
    // prefetcher alone left vpdpbusd waiting on them (see kSelfAhead). One token (GEMV) prefetches
    // inside part, or not (K::kGemvPf).
    const auto* next = reinterpret_cast<const uint8_t*>(g + 1 < n_groups ? wg + nb : wg);
    for (int64_t s = 0; s < n_slices; ++s) {
      const uint8_t* pf = n_slices > 1 ? next + group_bytes * s / n_slices
                          : nc > 1     ? reinterpret_cast<const uint8_t*>(wg) + kSelfAhead
                                       : nullptr;
      const int64_t c0 = s * kCols;
      const int cn = static_cast<int>(std::min<int64_t>(kCols, nc - c0));
      const uint8_t* ar[kCols];
      for (int c = 0; c < cn; ++c) ar[c] = ab + (c0 + c) * as;
      float* yo = y + c0 * ldy + g * kInterleave;
      const TokenScales* ts = static_cast<const TokenScales*>(scales) + s * nb;
      if (n_slices == 1 && nc > 1)
        part_tail<K, kCols, true>(cn, nb, wg, ar, sums_off, ts, pf, pf_step, yo, ldy);
      else
        part_tail<K, kCols, false>(cn, nb, wg, ar, sums_off, ts, pf, pf_step, yo, ldy);
    }
  }
}

}  // namespace

#include "kernels/x16_int_split.inc"

namespace {

template <bool kPf>
void fill_int_kernels(KernelTable& t) {
  using Q4_0 = Q4<BlockQ4_0x16, BlockQ8_0, false, kPf>;
  using Q4_1 = Q4<BlockQ4_1x16, BlockQ8_1, true, kPf>;
  t.x16_q4_0_q8_0 = x16<Q4_0>;
  t.x16_q4_1_q8_1 = x16<Q4_1>;
  t.x16_q8_0_q8_0 = x16<Q8_0<kPf>>;
  t.x16_q4_0_split = split<Q4_0>();
  t.x16_q4_1_split = split<Q4_1>();
  t.x16_q8_0_split = split<Q8_0<kPf>>();
}

}  // namespace

// C = 8 tokens x the whole 16-row group in one zmm.
void fill_x16(KernelTable& t, bool gemv_prefetch) {
  fill_x16_k(t, gemv_prefetch);
  if (gemv_prefetch)
    fill_int_kernels<true>(t);
  else
    fill_int_kernels<false>(t);
}

}  // namespace qe::kernels::avx512
