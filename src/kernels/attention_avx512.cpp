// Flash-attention kernels on 512-bit vectors (attention_block.inc): a register tile of 4 query rows x
// the whole 64-key block (16 score accumulators; per feature 4 key vectors feed 16 FMAs), and 4 rows x
// 64 output features for the weighted sum of V (per key 4 value vectors feed 16 FMAs). Zen 4 runs one
// 512-bit FMA per cycle, so either product keeps the FMA port busy with loads to spare.
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

// GCC 12's conversion intrinsics pass _mm512_undefined_ps() as a merge source that -Wmaybe-uninitialized
// reports once inlined (a known header false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace qe::kernels::avx512 {

#include "kernels/x86_exp512.inc"

namespace {

struct Vec {
  using T = __m512;
  static constexpr int W = 16;
  static constexpr int kScoreVecs = 4;
  static constexpr int kRows = 4;
  static constexpr int kOutVecs = 4;
  static constexpr bool kWidenBlock = true;  // see attn_block
  static T zero() { return _mm512_setzero_ps(); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T x) { _mm512_storeu_ps(p, x); }
  static T set1(float x) { return _mm512_set1_ps(x); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T fmadd(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T max(T a, T b) { return _mm512_max_ps(a, b); }
  static T keep_first(T x, int64_t n) {
    if (n >= W) return x;
    const __mmask16 keep = n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
    return _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), keep, x);
  }
  static float reduce_add(T x) { return _mm512_reduce_add_ps(x); }
  static float reduce_max(T x) { return _mm512_reduce_max_ps(x); }
  static T load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static T exp(T x) { return exp_ps16(x); }  // 0 for -inf (masked keys)
};

}  // namespace

#include "kernels/attention_block.inc"

}  // namespace qe::kernels::avx512
