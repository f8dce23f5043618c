// Flash-attention kernels on 512-bit vectors (attention_block.inc): a register tile of 4 query rows x
// the whole 64-key block (16 score accumulators; per feature 4 key vectors feed 16 FMAs), and 4 rows x
// 64 output features for the weighted sum of V (per key 4 value vectors feed 16 FMAs). Zen 4 runs one
// 512-bit FMA per cycle, so either product keeps the FMA port busy with loads to spare.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

// GCC 12's conversion intrinsics pass _mm512_undefined_ps() as a merge source that -Wmaybe-uninitialized
// reports once inlined (a known header false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace qe::kernels::avx512 {
namespace {

struct Vec {
  using T = __m512;
  static constexpr int W = 16;
  static constexpr int kScoreVecs = 4;
  static constexpr int kRows = 4;
  static constexpr int kOutVecs = 4;
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
  // expf to about 2 ulp, the Cephes scheme of x86_simd_common.inc's exp_ps on 16 lanes: below -87.3
  // gives 0 (so exp(-inf) is an exact 0 for masked keys).
  static T exp(T x) {
    const T lo = _mm512_set1_ps(-87.3f);
    const __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, lo), _mm512_set1_ps(88.0f));
    const T fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    T r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), r);
    T p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    // 2^fx: fx is in [-126, 127] after the clamp, so it has a normal float's exponent field.
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mov_ps(keep, _mm512_mul_ps(p, _mm512_castsi512_ps(e)));
  }
};

}  // namespace

#include "kernels/attention_block.inc"

}  // namespace qe::kernels::avx512
