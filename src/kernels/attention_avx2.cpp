// Flash-attention kernels on 256-bit vectors (attention_block.inc) and an 8 x 8 transposing pack. 16 ymm registers: the scores take
// 2 rows x 32 keys per pass (8 accumulators + 4 key vectors) and the weighted sum of V 2 rows x 32
// features, so the accumulators and the loaded vectors fit without spills.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::avx2 {

#include "kernels/x86_simd_common.inc"  // exp_ps

namespace {

struct Vec {
  using T = __m256;
  static constexpr int W = 8;
  static constexpr int kScoreVecs = 4;
  static constexpr int kRows = 2;
  static constexpr int kOutVecs = 4;
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

namespace {

// In-register 8 x 8 transpose: x[i] holds row i; afterwards x[j] holds column j.
inline void transpose8(__m256 x[8]) {
  __m256 t[8], u[8];
  for (int k = 0; k < 8; k += 2) {
    t[k] = _mm256_unpacklo_ps(x[k], x[k + 1]);
    t[k + 1] = _mm256_unpackhi_ps(x[k], x[k + 1]);
  }
  for (int k = 0; k < 8; k += 4) {
    u[k] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int k = 0; k < 4; ++k) {
    x[k] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20);
    x[k + 4] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
  }
}

// 8 elements of a cache row as floats; past n (< 8 only at a tail) zeros, without reading there.
template <class S>
inline __m256 load8(const S* p, int64_t n) {
  if (n >= 8) {
    if constexpr (sizeof(S) == 2) return Vec::load_f16(reinterpret_cast<const uint16_t*>(p));
    else return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
  }
  alignas(32) S part[8] = {};
  std::memcpy(part, p, static_cast<size_t>(n) * sizeof(S));
  return load8(part, 8);
}

// The pack by 8 x 8 tiles, as the AVX-512 level does by 16 x 16: for a decode step the pack is most of
// the attention work (a few query rows share each block), and the generic pack's scalar scatter took a
// quarter of a batched decode step (8 streams of SmolLM2-135M on a Zen 3). Tails are read through a
// zeroed buffer (AVX2 has no masked 16-bit loads), never past the cache's valid positions. Same values
// as the generic pack: data movement and exact f16 -> f32 conversions only.
template <class S>
void attn_pack8(const void* src, int64_t stride, int64_t nr, int64_t nc, int64_t nr_out, int64_t nc_out,
                float* dst, int64_t ldd) {
  if (nr_out % 8 != 0) return attn_pack<S>(src, stride, nr, nc, nr_out, nc_out, dst, ldd);
  const auto* base = static_cast<const uint8_t*>(src);
  for (int64_t r0 = 0; r0 < nr_out; r0 += 8) {
    const int64_t rows = std::clamp<int64_t>(nr - r0, 0, 8);
    for (int64_t c0 = 0; c0 < nc_out; c0 += 8) {
      const int64_t cols = std::clamp<int64_t>(nc - c0, 0, 8), cols_out = std::min<int64_t>(8, nc_out - c0);
      __m256 x[8];
      for (int64_t i = 0; i < 8; ++i)
        x[i] = i < rows && cols > 0 ? load8(reinterpret_cast<const S*>(base + (r0 + i) * stride) + c0, cols)
                                    : _mm256_setzero_ps();
      if (rows > 0 && cols > 0) transpose8(x);
      for (int64_t j = 0; j < cols_out; ++j) _mm256_storeu_ps(dst + (c0 + j) * ldd + r0, x[j]);
    }
  }
}

}  // namespace

void fill_attention(KernelTable& t) {
  fill_attention_generic(t);
  t.attn_pack_f16 = attn_pack8<uint16_t>;
  t.attn_pack_f32 = attn_pack8<float>;
}

}  // namespace qe::kernels::avx2
