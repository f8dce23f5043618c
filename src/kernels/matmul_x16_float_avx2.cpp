// x16 f16 / bf16 kernels, AVX2 (layouts and contract: kernels/interleaved.h). A 16-row group is two
// 8-lane slices. GEMV: both slices in one pass (one contiguous stream, 4 FMA chains), with a software
// prefetch 1 KiB ahead: one Zen 3 core's hardware prefetcher leaves the stream at 80-86% of DRAM read,
// the prefetch takes it to 92-100% (2-core Zen 3 EPYC, 1.1B ffn_up, 1 thread, interleaved rounds: f16
// 1.32-1.37 -> 1.17-1.23 ms, bf16 1.27-1.32 -> 1.12-1.18 ms; 2 KiB ahead gained nothing). GEMM (AVX2 has no
// embedded broadcast, so every activation is a broadcast load), as the CPU wants (widen_once_pays):
// - the blocked product (x16f_blocked), both slices for 3 tokens, 2 slices x 3 tokens x 2 parts = 12 ymm
//   accumulators, each broadcast feeding 2 FMAs, on weights widened once per block. On a 2-vCPU Intel
//   Xeon (Emerald Rapids), where vcvtph2ps takes a port the FMAs need, against the panels that widened
//   their own weights then (f16: both slices for 2 tokens; bf16: one slice for 6), qbench --isa=avx2,
//   1.1B ffn_up, alternating runs: f16 512 tokens 56-58 -> 72-77 GOP/s at 1 thread, 108-113 -> 147-152 at
//   2 (64 tokens: +6-26%); bf16 512 tokens 66-68 -> 76-77 and 128-141 -> 139-154 (64 tokens: +6-15%).
//   (The column-by-column panels below have not been measured there.)
// - panels that widen their own weights (x16f_packed), in the same shape, column by column, on AMD, where
//   the widening does not take the FMA pipes. On a 2-vCPU Zen 3 EPYC the blocked product measured slower
//   than the panels these replaced (f16: both slices for 2 tokens, bf16: one slice for 6; 1.1B ffn_up 512
//   tokens, 5 alternating runs, medians: f16 52 -> 64 GOP/s at 1 thread, 92 -> 131 at 2; bf16 53 -> 59
//   and 105 -> 115; pp512 of the 1.1B, 6 alternating rounds: f16 32.1 -> 35.3 t/s at 1 thread, 52.6 ->
//   65.1 at 2; bf16 29.4 -> 32.7, 56.1 -> 60.2), and those slower than 3 tokens x 2 slices taken column
//   by column (same machine, 4 alternating runs, f16 medians: 512 tokens 84 -> 90 GOP/s at 1 thread, 146
//   -> 182 at 2, 64 tokens at 2 144 -> 167; bf16, whose host was noisier, best of 8: 512 tokens 77 -> 88
//   and 122 -> 138, 64 tokens 77 -> 88 and 124 -> 139). 90 GOP/s is 91% of one core's FMA peak. Slice by
//   slice the compiler kept each column's broadcasts for the next slice and spilled (40-42 GOP/s).
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"
#include "kernels/unroll.h"

namespace qe::kernels::avx2 {
namespace {

struct S {
  using V = __m256;
  static constexpr int kLanes = 8;
  static void gemv_prefetch(const void* line, V&) {
    __builtin_prefetch(static_cast<const char*>(line) + 1024, 0, 3);
  }
  static V zero() { return _mm256_setzero_ps(); }
  static V fma_bcast(V w, const float* a, V acc) { return _mm256_fmadd_ps(w, _mm256_broadcast_ss(a), acc); }
  static void store_sum(float* y, V s0, V s1) { _mm256_storeu_ps(y, _mm256_add_ps(s0, s1)); }
  static V load(const float* p) { return _mm256_load_ps(p); }
  static void store(float* p, V v) { _mm256_store_ps(p, v); }
  static void prefetch(const void* line) { _mm_prefetch(static_cast<const char*>(line), _MM_HINT_T0); }
  static V f16_col(const uint16_t* wg, int64_t k, int s) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wg + kInterleave * k + 8 * s)));
  }
  // 8 rows x (k, k + 1): the even column is the dword shifted up, the odd one the dword's top half.
  static void bf16_pair(const uint16_t* wg, int64_t k, int s, V& w0, V& w1) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg + kInterleave * k + 16 * s));
    w0 = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    w1 = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  static V bf16_last(const uint16_t* wg, int64_t k, int s) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wg + kInterleave * k + 8 * s));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
  }
};

// Tokens per panel, both slices per pass: 2 slices x 3 tokens x 2 parts = 12 ymm accumulators, each
// broadcast feeding 2 FMAs (f16 and bf16, the blocked product and the panels alike).
constexpr int kCols = 3;

}  // namespace

#include "kernels/x16_float_driver.inc"

void fill_x16_float(KernelTable& t, bool widen_once) {
  if (widen_once)
    fill_x16_float_blocked<S, 2, kCols>(t);
  else
    fill_x16_float_packed<S, 2, kCols, 2>(t);
}

}  // namespace qe::kernels::avx2
