// Flash-attention kernels on 512-bit vectors (attention_block.inc): a register tile of 4 query rows x
// the whole 64-key block (16 score accumulators; per feature 4 key vectors feed 16 FMAs), and 4 rows x
// 64 output features for the weighted sum of V (per key 4 value vectors feed 16 FMAs). Zen 4 runs one
// 512-bit FMA per cycle, so either product keeps the FMA port busy with loads to spare.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

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

namespace {

// In-register 16 x 16 transpose: x[i] holds row i on entry, column i on return (unpacks within 128-bit
// lanes, then 128-bit lane shuffles).
inline void transpose16(__m512 x[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(x[2 * i], x[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(x[2 * i], x[2 * i + 1]);
  }
  auto lo = [](__m512 a, __m512 b) {
    return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
  };
  auto hi = [](__m512 a, __m512 b) {
    return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
  };
  for (int i = 0; i < 4; ++i) {  // u[4i + k]: column 4L + k of rows 4i..4i+3 in 128-bit lane L
    u[4 * i + 0] = lo(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = hi(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = lo(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = hi(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int k = 0; k < 4; ++k) {
    const __m512 ab_lo = _mm512_shuffle_f32x4(u[k], u[4 + k], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 ab_hi = _mm512_shuffle_f32x4(u[k], u[4 + k], _MM_SHUFFLE(3, 1, 3, 1));
    const __m512 cd_lo = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 cd_hi = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], _MM_SHUFFLE(3, 1, 3, 1));
    x[k] = _mm512_shuffle_f32x4(ab_lo, cd_lo, _MM_SHUFFLE(2, 0, 2, 0));
    x[8 + k] = _mm512_shuffle_f32x4(ab_lo, cd_lo, _MM_SHUFFLE(3, 1, 3, 1));
    x[4 + k] = _mm512_shuffle_f32x4(ab_hi, cd_hi, _MM_SHUFFLE(2, 0, 2, 0));
    x[12 + k] = _mm512_shuffle_f32x4(ab_hi, cd_hi, _MM_SHUFFLE(3, 1, 3, 1));
  }
}

// The pack by 16 x 16 tiles: masked loads (which never touch the masked bytes, so nothing past the
// cache's valid positions is read) give the zeros of the tails, so every tile is written whole. For a
// decode step the pack is most of the work (8 query rows share a block), and scalar scatters cost
// several times the block's FMAs.
template <class S>
void attn_pack16(const void* src, int64_t stride, int64_t nr, int64_t nc, int64_t nr_out, int64_t nc_out,
                 float* dst, int64_t ldd) {
  if (nr_out % 16 != 0) return attn_pack<S>(src, stride, nr, nc, nr_out, nc_out, dst, ldd);
  const auto* base = static_cast<const uint8_t*>(src);
  for (int64_t r0 = 0; r0 < nr_out; r0 += 16) {
    const int64_t rows = std::clamp<int64_t>(nr - r0, 0, 16);
    for (int64_t c0 = 0; c0 < nc_out; c0 += 16) {
      const int64_t cols = std::clamp<int64_t>(nc - c0, 0, 16), cols_out = std::min<int64_t>(16, nc_out - c0);
      const __mmask16 cm = static_cast<__mmask16>(cols >= 16 ? 0xFFFFu : (1u << cols) - 1);
      __m512 x[16];
      for (int64_t i = 0; i < 16; ++i) {
        if (i >= rows) {
          x[i] = _mm512_setzero_ps();
          continue;
        }
        const S* row = reinterpret_cast<const S*>(base + (r0 + i) * stride) + c0;
        if constexpr (sizeof(S) == 2)
          x[i] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(cm, row));
        else
          x[i] = _mm512_maskz_loadu_ps(cm, row);
      }
      transpose16(x);
      for (int64_t j = 0; j < cols_out; ++j) _mm512_storeu_ps(dst + (c0 + j) * ldd + r0, x[j]);
    }
  }
}

}  // namespace

void fill_attention(KernelTable& t) {
  fill_attention_generic(t);
  t.attn_pack_f16 = attn_pack16<uint16_t>;
  t.attn_pack_f32 = attn_pack16<float>;
}

}  // namespace qe::kernels::avx512
