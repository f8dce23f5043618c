// Flash-attention kernels on 256-bit vectors (attention_block.inc). 16 ymm registers: the scores take
// 3 rows x 32 keys per pass (12 accumulators, 3 broadcasts, 1 key vector) and the weighted sum of V 3
// rows x 32 features (the same), so they fit without spills, with 12 independent FMA chains to cover
// the FMA latency (2 pipes x 4 cycles). Three rows per tile because a
// decode step's work item is the query heads of one KV head (3 in SmolLM2, 8 in TinyLlama): each key or
// value vector widened from the f16 cache then feeds all of them, or all but a tail.
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::avx2 {

#include "kernels/x86_simd_common.inc"  // exp_ps

namespace {

struct Vec {
  using T = __m256;
  static constexpr int W = 8;
  static constexpr int kScoreVecs = 4;
  static constexpr int kRows = 3;
  static constexpr int kOutVecs = 4;
  static constexpr bool kWidenBlock = false;  // see attn_block
  static T zero() { return _mm256_setzero_ps(); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T x) { _mm256_storeu_ps(p, x); }
  static T set1(float x) { return _mm256_set1_ps(x); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T fmadd(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T max(T a, T b) { return _mm256_max_ps(a, b); }
  static T keep_first(T x, int64_t n) {
    if (n >= W) return x;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n < 0 ? 0 : n)), lane);
    return _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), x, _mm256_castsi256_ps(keep));
  }
  static float reduce_add(T x) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
  }
  static float reduce_max(T x) {
    const __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    const __m128 h = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
  }
  static T load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  // x86_simd_common.inc's exp_ps: below -87.3 gives 0, so exp(-inf) is an exact 0 for masked keys.
  static T exp(T x) { return exp_ps(x); }
};

}  // namespace

#include "kernels/attention_block.inc"

}  // namespace qe::kernels::avx2
