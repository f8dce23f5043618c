// x16 bf16 weights on AVX512_BF16 (the "bf16 dot" contract in kernels/interleaved.h): one vdpbf16ps
// takes a 64-byte weight vector (16 rows x a column pair, stored as such) against one broadcast dword
// holding the activation pair, i.e. 32 multiply-adds where the f32 path does 16, with no widening.
// The activations are rounded to bf16 (round to nearest even, NaN kept quiet: fp32_to_bf16, as ggml
// converts them for its bf16 vec_dot) into pair panels [j][C], once per matmul for all its threads
// (X16FloatSplit).
// GEMM: 12 tokens x 2 parts = 24 zmm accumulators; GEMV: two chains per group, and with kPf its weights
// prefetched in software (gemv_software_prefetch, kernel_tables.h), a line per column pair.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "formats/blocks.h"
#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"
#include "kernels/schedule.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace qe::kernels::avx512bf16 {
namespace {

constexpr int kCols = 12;

inline __m512 dot(__m512 acc, __m512i w, const uint32_t* a) {
  return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh>(w),
                          reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(*a))));
}

// C tokens (pair panel pa: [j][C], (n + 1) / 2 pairs) x the 16 rows of one group.
template <int C, bool kPf>
void part(int64_t n, const uint16_t* wg, const uint32_t* pa, float* y, int64_t ldy) {
  __m512 acc[2][C];
  for (int c = 0; c < C; ++c) acc[0][c] = acc[1][c] = _mm512_setzero_ps();
  const int64_t np = n / 2;  // full pairs
  int64_t j = 0;
  for (; j + 2 <= np; j += 2) {
    if constexpr (kPf && C == 1) {
      prefetch_gemv_ahead(wg + 32 * j, acc[0][0]);
      prefetch_gemv_ahead(wg + 32 * j + 32, acc[1][0]);
    }
    const __m512i w0 = _mm512_loadu_si512(wg + 32 * j), w1 = _mm512_loadu_si512(wg + 32 * j + 32);
    for (int c = 0; c < C; ++c) acc[0][c] = dot(acc[0][c], w0, pa + j * C + c);
    for (int c = 0; c < C; ++c) acc[1][c] = dot(acc[1][c], w1, pa + (j + 1) * C + c);
  }
  if (j < np) {  // j even: part 0
    const __m512i w0 = _mm512_loadu_si512(wg + 32 * j);
    for (int c = 0; c < C; ++c) acc[0][c] = dot(acc[0][c], w0, pa + j * C + c);
  }
  if (n % 2) {  // the last column as pairs (w, 0), into part np % 2
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg + 32 * np)));
    for (int c = 0; c < C; ++c) acc[np % 2][c] = dot(acc[np % 2][c], w, pa + np * C + c);
  }
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + c * ldy, _mm512_add_ps(acc[0][c], acc[1][c]));
}

template <int C, bool kPf>
void panel(int c, int64_t n, const uint16_t* wg, const uint32_t* pa, float* y, int64_t ldy) {
  if constexpr (C > 0) {
    if (c == C)
      part<C, kPf>(n, wg, pa, y, ldy);
    else
      panel<C - 1, kPf>(c, n, wg, pa, y, ldy);
  }
}

// Token row -> bf16 pairs at dst[j * stride], (n + 1) / 2 of them; an odd n's last pair is (a, 0).
// 16 values at a time with fp32_to_bf16's integer steps (round to nearest even by adding 0x7fff plus the
// kept lsb; NaN: top half with the quiet bit set), then the scalar function for the tail.
void pack_pairs(const float* x, int64_t n, uint32_t* dst, int64_t stride) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7fff), quiet = _mm512_set1_epi32(64);
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    const __m512i u = _mm512_loadu_si512(x + k);
    const __m512i hi = _mm512_srli_epi32(u, 16);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(half, _mm512_and_si512(hi, one))), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, quiet));
    alignas(32) uint32_t pairs[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(pairs), _mm512_cvtepi32_epi16(r));
    for (int i = 0; i < 8; ++i) dst[(k / 2 + i) * stride] = pairs[i];
  }
  for (; k + 2 <= n; k += 2)
    dst[(k / 2) * stride] = uint32_t{fp32_to_bf16(x[k])} | uint32_t{fp32_to_bf16(x[k + 1])} << 16;
  if (k < n) dst[(k / 2) * stride] = fp32_to_bf16(x[k]);
}

// Tokens [0, nc) into pair panels, those of for_each_panel(nc, kCols): tokens [c0, c0 + cn) at
// c0 * npairs, laid out [j][cn].
void pack(int64_t n, const void* a, int64_t as, int64_t nc, void* out) {
  const int64_t npairs = (n + 1) / 2;
  const auto* ab = static_cast<const uint8_t*>(a);
  for_each_panel(nc, kCols, [&](int64_t c0, int64_t cn) {
    for (int64_t c = 0; c < cn; ++c)
      pack_pairs(reinterpret_cast<const float*>(ab + (c0 + c) * as), n,
                 static_cast<uint32_t*>(out) + c0 * npairs + c, cn);
  });
}

template <bool kPf>
void packed(int64_t n, const void* w, int64_t n_groups, const void* panels, int64_t nc, float* y,
            int64_t ldy) {
  const int64_t npairs = (n + 1) / 2;
  for (int64_t g = 0; g < n_groups; ++g) {
    const uint16_t* wg = static_cast<const uint16_t*>(w) + g * kInterleave * n;
    for_each_panel(nc, kCols, [&](int64_t c0, int64_t cn) {
      panel<kCols, kPf>(static_cast<int>(cn), n, wg, static_cast<const uint32_t*>(panels) + c0 * npairs,
                        y + c0 * ldy + g * kInterleave, ldy);
    });
  }
}

template <bool kPf>
void x16_bf16(int64_t n, const void* w, int64_t n_groups, const void* a, int64_t as, int64_t nc, float* y,
              int64_t ldy) {
  thread_local std::vector<uint32_t> panels;
  const int64_t words = nc * ((n + 1) / 2);
  if (static_cast<int64_t>(panels.size()) < words) panels.resize(static_cast<size_t>(words));
  pack(n, a, as, nc, panels.data());
  packed<kPf>(n, w, n_groups, panels.data(), nc, y, ldy);
}

}  // namespace

void fill_x16_bf16(KernelTable& t, bool gemv_prefetch) {
  t.x16_bf16_f32 = gemv_prefetch ? x16_bf16<true> : x16_bf16<false>;
  t.x16_bf16_split = {pack, gemv_prefetch ? packed<true> : packed<false>};
  t.bf16_dot = true;
}

}  // namespace qe::kernels::avx512bf16
