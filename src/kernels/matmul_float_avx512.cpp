// f32 / f16 / bf16 weight tiles on 512-bit vectors for the AVX-512 level (the shared x86 tiles use ymm):
// R = 4 weight rows x C = 6 tokens, 24 zmm accumulators. Per 16-element step 4 weight vectors are
// widened once (vcvtph2ps for f16) and feed 24 FMAs, so conversion costs a quarter of the FMA slots.
// As in x86_matmul_tiles.inc, every (row, token) result takes the same instruction sequence whatever
// the tile shape, so GEMM equals GEMV bit for bit.
#include <immintrin.h>

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

struct F32W {
  using T = float;
  static __m512 load(const T* p) { return _mm512_loadu_ps(p); }
  static float scalar(T v) { return v; }
};
struct F16W {
  using T = uint16_t;
  static __m512 load(const T* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static float scalar(T v) { return _cvtsh_ss(v); }
};
struct BF16W {  // bf16 is the top half of an f32: widen by a 16-bit shift
  using T = uint16_t;
  static __m512 load(const T* p) {
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  }
  static float scalar(T v) { return bf16_to_fp32(v); }
};

template <class P, int R, int C>
void micro(int64_t n, const uint8_t* w, int64_t ws, const uint8_t* a, int64_t as, float* y, int64_t ldy) {
  using T = typename P::T;
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  const int64_t n16 = n & ~int64_t{15};
  for (int64_t i = 0; i < n16; i += 16) {
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = P::load(reinterpret_cast<const T*>(w + r * ws) + i);
    for (int c = 0; c < C; ++c) {
      const __m512 av = _mm512_loadu_ps(reinterpret_cast<const float*>(a + c * as) + i);
      for (int r = 0; r < R; ++r) acc[r][c] = _mm512_fmadd_ps(wv[r], av, acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      float v = _mm512_reduce_add_ps(acc[r][c]);
      const T* wr = reinterpret_cast<const T*>(w + r * ws);
      const float* ac = reinterpret_cast<const float*>(a + c * as);
      for (int64_t i = n16; i < n; ++i) v += P::scalar(wr[i]) * ac[i];
      y[c * ldy + r] = v;
    }
}

template <class P, int R, int C>
void cols(int64_t n, const uint8_t* w, int64_t ws, const uint8_t* a, int64_t as, int64_t nc, float* y, int64_t ldy) {
  int64_t c = 0;
  for (; c + C <= nc; c += C) micro<P, R, C>(n, w, ws, a + c * as, as, y + c * ldy, ldy);
  const int64_t left = nc - c;
  a += c * as;
  y += c * ldy;
  // Column tail: exactly `left` tokens (C = 6 leaves 1..5).
  switch (left) {
    case 1: micro<P, R, 1>(n, w, ws, a, as, y, ldy); break;
    case 2: micro<P, R, 2>(n, w, ws, a, as, y, ldy); break;
    case 3: micro<P, R, 3>(n, w, ws, a, as, y, ldy); break;
    case 4: micro<P, R, 4>(n, w, ws, a, as, y, ldy); break;
    case 5: micro<P, R, 5>(n, w, ws, a, as, y, ldy); break;
    default: break;
  }
}

template <class P>
void tile(int64_t n, const void* vw, int64_t ws, int64_t nr, const void* va, int64_t as, int64_t nc, float* y,
          int64_t ldy) {
  static_assert(sizeof(float) == 4);
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  int64_t r = 0;
  for (; r + 4 <= nr; r += 4) cols<P, 4, 6>(n, w + r * ws, ws, a, as, nc, y + r, ldy);
  switch (nr - r) {  // row tail
    case 1: cols<P, 1, 6>(n, w + r * ws, ws, a, as, nc, y + r, ldy); break;
    case 2: cols<P, 2, 6>(n, w + r * ws, ws, a, as, nc, y + r, ldy); break;
    case 3: cols<P, 3, 6>(n, w + r * ws, ws, a, as, nc, y + r, ldy); break;
    default: break;
  }
}

}  // namespace

void fill_float_tiles(KernelTable& t) {
  t.tile_f16_f32 = tile<F16W>;
  t.tile_bf16_f32 = tile<BF16W>;
  t.tile_f32_f32 = tile<F32W>;
}

}  // namespace qe::kernels::avx512
