// x16 f16 / bf16 kernels, AVX2 (layouts and contract: kernels/interleaved.h). A 16-row group is two
// 8-lane slices. GEMV: both slices in one pass (one contiguous stream, 4 FMA chains), with a software
// prefetch 1 KiB ahead: one Zen 3 core's hardware prefetcher leaves the stream at 80-86% of DRAM read,
// the prefetch takes it to 92-100% (2-core Zen 3 EPYC, 1.1B ffn_up, 1 thread, interleaved rounds: f16
// 1.32-1.37 -> 1.17-1.23 ms, bf16 1.27-1.32 -> 1.12-1.18 ms; 2 KiB ahead gained nothing). GEMM (AVX2 has no
// embedded broadcast, so every activation is a broadcast load):
// - f16: both slices for 2 tokens, 2 slices x 2 tokens x 2 parts = 8 ymm accumulators, each broadcast
//   feeding 2 FMAs. Measured on a 2-core Zen 3 EPYC (qbench, interleaved rounds) against one slice for 6
//   tokens (12 accumulators, one FMA per broadcast): 1.1B ffn_up 64 / 512 tokens from 80 to 92 GOP/s at
//   1 thread (78% -> 89% of the FMA peak), 150 to 170 at 2; 8B ffn_up +11-19%.
// - bf16: one slice for 6 tokens; its widening is a shift, and both slices for 2 tokens measured no
//   faster there (0-7% slower).
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

// Tokens per panel: f16, bf16.
constexpr int kColsF16 = 2, kColsBF16 = 6;

}  // namespace

#include "kernels/x16_float_driver.inc"

void fill_x16_float(KernelTable& t) {
  t.x16_f16_f32 = x16_float<S, F16Cols<S>, 2, kColsF16, 2>;
  t.x16_bf16_f32 = x16_float<S, BF16Cols<S>, 2, kColsBF16, 1>;
  t.x16_f16_split = x16_float_split<S, F16Cols<S>, kColsF16, 2>();
  t.x16_bf16_split = x16_float_split<S, BF16Cols<S>, kColsBF16, 1>();
}

}  // namespace qe::kernels::avx2
