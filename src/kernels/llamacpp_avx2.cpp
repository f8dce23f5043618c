// llama.cpp's numerics, AVX2: the scalar definitions (llamacpp_scalar.inc) compiled for this level, with
// the hot loops (activation quantization, the q4_1 / q8_0 / f16 dots, softmax's exponentials, SwiGLU)
// written with the instructions llama.cpp's AVX2 build executes, in the same order, so the bits agree
// with both llama.cpp and the reference. The tiles walk 4 weight rows per activation row so the
// activation block is loaded once for four dots; each dot is still its own chain, as in ggml.
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <memory>

#include "formats/blocks.h"
#include "formats/kquant_layout.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::avx2 {

// q5_0, q5_1, iq4_nl and the k-quants (llamacpp_kquants_avx2.cpp).
void fill_llamacpp_kquants(KernelTable& t);

#include "kernels/x86_simd_common.inc"  // bytes, hsum_ps (hsum_float_8's order), half_to_float, pack_i32x32_to_i8

namespace {

#include "kernels/llamacpp_scalar.inc"

// Sum of 8 int32 lanes (exact, any order).
inline int hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

// 8 x int32, lane i = sum of u[4i..4i+3] * s[4i..4i+3], unsigned u and signed s (maddubs, madd by ones;
// exact for these operands, see x86_simd_common.inc).
inline __m256i dot_u8s8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_set1_epi16(1), _mm256_maddubs_epi16(u, s));
}
// The same for signed x and y, by ggml's sign trick: |x| times y with x's sign.
inline __m256i dot_s8s8(__m256i x, __m256i y) {
  return dot_u8s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

template <bool kSum>
void quantize_q8_avx2(const float* x, void* vy, int64_t n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127.f;
    const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
    constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, id), kRound));
    const __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, id), kRound));
    const __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, id), kRound));
    const __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, id), kRound));
    const __m256i q = pack_i32x32_to_i8(i0, i1, i2, i3);
    if constexpr (kSum) {
      auto* y = static_cast<BlockQ8_1*>(vy) + b;
      y->d = fp32_to_fp16(d);
      const int sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
      y->s = fp32_to_fp16(d * static_cast<float>(sum));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y->qs), q);
    } else {
      auto* y = static_cast<BlockQ8_0*>(vy) + b;
      y->d = fp32_to_fp16(d);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y->qs), q);
    }
  }
}

void quantize_q8_0_avx2(const float* x, void* y, int64_t n) {
  quantize_q8_avx2<false>(x, y, n);
}
void quantize_q8_1_avx2(const float* x, void* y, int64_t n) {
  quantize_q8_avx2<true>(x, y, n);
}

// Four q4_1 rows against one q8_1 activation row: ggml_vec_dot_q4_1_q8_1 for each.
void dot4_q4_1_q8_1(int64_t nb, const BlockQ4_1* const* w, const BlockQ8_1* a, float* out, int nr) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  float summs[4] = {};
  const __m256i low = _mm256_set1_epi8(0x0F);
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    const float da = half_to_float(a[b].d), sa = half_to_float(a[b].s);
    for (int r = 0; r < nr; ++r) {
      const BlockQ4_1& x = w[r][b];
      summs[r] = std::fma(half_to_float(x.m), sa, summs[r]);
      const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x.qs));
      const __m256i qx = _mm256_and_si256(low, _mm256_set_m128i(_mm_srli_epi16(t, 4), t));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(x.d) * da), _mm256_cvtepi32_ps(dot_u8s8(qx, qy)),
                               acc[r]);
    }
  }
  for (int r = 0; r < nr; ++r) out[r] = hsum_ps(acc[r]) + summs[r];
}

// Four q8_0 rows against one q8_0 activation row: |w| times sign-adjusted a (maddubs is unsigned x signed).
void dot4_q8_0_q8_0(int64_t nb, const BlockQ8_0* const* w, const BlockQ8_0* a, float* out, int nr) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    const float da = half_to_float(a[b].d);
    for (int r = 0; r < nr; ++r) {
      const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[r][b].qs));
      const __m256 p = _mm256_cvtepi32_ps(dot_s8s8(qx, qy));
      acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(w[r][b].d) * da), p, acc[r]);
    }
  }
  for (int r = 0; r < nr; ++r) out[r] = hsum_ps(acc[r]);
}

// Four q4_0 rows against one q8_0 activation row, the repacked kernels' order: each block's integer dot
// in full (exact), then acc = fma(isum, d_w d_a, acc).
void dot4_q4_0_q8_0(int64_t nb, const BlockQ4_0* const* w, const BlockQ8_0* a, float* out, int nr) {
  float acc[4] = {};
  const __m256i low = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs));
    const float da = half_to_float(a[b].d);
    for (int r = 0; r < nr; ++r) {
      const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[r][b].qs));
      const __m256i qx =
          _mm256_sub_epi8(_mm256_and_si256(low, _mm256_set_m128i(_mm_srli_epi16(t, 4), t)), eight);
      const int isum = hsum_epi32(dot_s8s8(qx, qy));
      acc[r] = std::fma(static_cast<float>(isum), half_to_float(w[r][b].d) * da, acc[r]);
    }
  }
  for (int r = 0; r < nr; ++r) out[r] = acc[r];
}

template <typename W, typename A, void (*kDot4)(int64_t, const W* const*, const A*, float*, int)>
void tile4(int64_t n, const void* w, int64_t w_stride, int64_t nr, const void* a, int64_t a_stride,
           int64_t nc, float* y, int64_t ldy) {
  for (int64_t r0 = 0; r0 < nr; r0 += 4) {
    const int m = static_cast<int>(nr - r0 < 4 ? nr - r0 : 4);
    const W* rows[4];
    for (int r = 0; r < m; ++r) rows[r] = reinterpret_cast<const W*>(bytes(w) + (r0 + r) * w_stride);
    for (int64_t c = 0; c < nc; ++c)
      kDot4(n / 32, rows, reinterpret_cast<const A*>(bytes(a) + c * a_stride), y + c * ldy + r0, m);
  }
}

inline __m256 load_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// tinyBLAS<8>: one accumulator; n is a multiple of 8 wherever llama.cpp takes this path, the scalar
// tail covers any other n with the same lanes.
float dot_f16_batch_avx2(int64_t n, int64_t n_pad, const uint16_t* a, const uint16_t* b) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(load_f16(a + i), load_f16(b + i), acc);
  if (i == n) return hsum_ps(acc);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  for (; i < n; ++i) lanes[i % 8] = std::fma(half_to_float(a[i]), half_to_float(b[i]), lanes[i % 8]);
  (void)n_pad;
  return hsum8(lanes);
}

// ggml_vec_dot_f16: four accumulators over 32-element steps, GGML_F32x8_REDUCE, double tail.
float dot_f16_single_avx2(int64_t n, int64_t n_pad, const uint16_t* a, const uint16_t* b) {
  const int64_t np = n_pad & ~int64_t{31};
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n && i + 32 <= np; i += 32) {
    s0 = _mm256_fmadd_ps(load_f16(a + i), load_f16(b + i), s0);
    s1 = _mm256_fmadd_ps(load_f16(a + i + 8), load_f16(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(load_f16(a + i + 16), load_f16(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(load_f16(a + i + 24), load_f16(b + i + 24), s3);
  }
  if (i < np && i < n) {  // a last step the padding completes: missing elements are zeros
    alignas(32) uint16_t ta[32] = {}, tb[32] = {};
    const int64_t m = n - i < 32 ? n - i : 32;
    std::memcpy(ta, a + i, static_cast<size_t>(m) * 2);
    std::memcpy(tb, b + i, static_cast<size_t>(m) * 2);
    s0 = _mm256_fmadd_ps(load_f16(ta), load_f16(tb), s0);
    s1 = _mm256_fmadd_ps(load_f16(ta + 8), load_f16(tb + 8), s1);
    s2 = _mm256_fmadd_ps(load_f16(ta + 16), load_f16(tb + 16), s2);
    s3 = _mm256_fmadd_ps(load_f16(ta + 24), load_f16(tb + 24), s3);
  }
  const __m256 x = _mm256_add_ps(_mm256_add_ps(s0, s2), _mm256_add_ps(s1, s3));
  const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  const __m128 t1 = _mm_hadd_ps(t0, t0);
  double sum = _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
  for (int64_t k = np; k < n; ++k) sum += static_cast<double>(half_to_float(a[k]) * half_to_float(b[k]));
  return static_cast<float>(sum);
}

// ggml_v_expf, 8 lanes (the scalar expf_lane is its one-lane form).
inline __m256 expf8(__m256 x) {
  const __m256 r = _mm256_set1_ps(0x1.8p23f);
  const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
  const __m256 n = _mm256_sub_ps(z, r);
  const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                    _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
  const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
  const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_set1_epi32(0x3f800000)));
  const __m256 an = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
  const __m256 c = _mm256_cmp_ps(an, _mm256_set1_ps(126), _CMP_GT_OQ);
  const __m256 u = _mm256_mul_ps(b, b);
  const __m256 j = _mm256_fmadd_ps(
      _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                      _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
      u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
  if (!_mm256_movemask_ps(c)) return _mm256_fmadd_ps(j, k, k);
  const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                     _mm256_set1_epi32(static_cast<int>(0x82000000u)));
  const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
  const __m256 d = _mm256_cmp_ps(an, _mm256_set1_ps(192), _CMP_GT_OQ);
  const __m256 scaled = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
  const __m256 plain = _mm256_fmadd_ps(k, j, k);
  return _mm256_blendv_ps(_mm256_blendv_ps(plain, scaled, c), _mm256_mul_ps(s1, s1), d);
}

void softmax_avx2(float* x, int64_t n, float scale) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    x[i] *= scale;
    mx = std::fmax(mx, x[i]);
  }
  const __m256 vmax = _mm256_set1_ps(mx);
  double sum = 0.0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = expf8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
    _mm256_storeu_ps(x + i, e);
    sum += static_cast<double>(hsum_ps(e));
  }
  if (i < n) {  // the last group: the padded cache's masked scores (-inf) give zeros
    alignas(32) float g[8];
    for (int l = 0; l < 8; ++l) g[l] = i + l < n ? x[i + l] : -INFINITY;
    const __m256 e = expf8(_mm256_sub_ps(_mm256_load_ps(g), vmax));
    _mm256_store_ps(g, e);
    for (int64_t l = 0; i + l < n; ++l) x[i + l] = g[l];
    sum += static_cast<double>(hsum_ps(e));
  }
  const __m256 inv = _mm256_set1_ps(static_cast<float>(1.0 / sum));
  i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
  for (; i < n; ++i) x[i] *= _mm256_cvtss_f32(inv);
}

void silu_mul_avx2(const float* gate, const float* up, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = expf8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)),
                                          _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) y[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace

void fill_llamacpp(KernelTable& t, bool single_token) {
  fill_scalar(t, single_token);  // rope and the generic paths, compiled for this level (same bits)
  t.quantize_q8_0 = quantize_q8_0_avx2;
  t.quantize_q8_1 = quantize_q8_1_avx2;
  t.tile_q4_1_q8_1 = tile4<BlockQ4_1, BlockQ8_1, dot4_q4_1_q8_1>;
  t.tile_q8_0_q8_0 = tile4<BlockQ8_0, BlockQ8_0, dot4_q8_0_q8_0>;
  t.tile_q4_0_q8_0 = tile4<BlockQ4_0, BlockQ8_0, dot4_q4_0_q8_0>;
  fill_llamacpp_kquants(t);
  // the scalar tile driver around the AVX2 dots: converting a row is cheap
  fill_f16<dot_f16_batch_avx2, dot_f16_single_avx2>(t, single_token);
  t.softmax = softmax_avx2;
  t.silu_mul = silu_mul_avx2;
}

}  // namespace qe::kernels::avx2
