// Element-wise ops on 512-bit vectors, where they are hot enough to pay: silu_mul, the SwiGLU product of
// every token of every layer (8 tokens x 30 layers a batched decode step of SmolLM2-135M).
//
// Same bits as the 256-bit op (x86_ops.inc) for every n: each lane runs exp_ps's steps (exp_ps16), 16
// floats at a time, then the rest of the row goes through the 256-bit op itself (8 at a time, then its
// scalar tail). Why: the 256-bit op took 879 ns for a 1536-float row on the 2-vCPU Xeon (Emerald
// Rapids), this one 569 ns (best of 50 x 1000 calls).
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels/kernel_tables.h"

// GCC 12's 512-bit intrinsics pass _mm512_undefined_ps() as the unused merge source, which
// -Wmaybe-uninitialized reports once inlined (a known header false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
// Of x86_ops.inc's ops only silu_mul serves here (as the tail of a row).
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

namespace qe::kernels::avx512 {

#include "kernels/x86_exp512.inc"
#include "kernels/x86_simd_common.inc"
#include "kernels/x86_ops.inc"

namespace {

// y = g / (1 + exp(-g)) * u
void silu_mul16(const float* g, const float* u, float* y, int64_t n) {
  int64_t i = 0;
  const __m512 one = _mm512_set1_ps(1.0f);
  for (; i + 16 <= n; i += 16) {
    const __m512 gv = _mm512_loadu_ps(g + i);
    const __m512 e = exp_ps16(_mm512_sub_ps(_mm512_setzero_ps(), gv));
    _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(one, e)), _mm512_loadu_ps(u + i)));
  }
  silu_mul(g + i, u + i, y + i, n - i);  // the rest as the 256-bit op: 8 at a time, then scalar
}

}  // namespace

void fill_ops(KernelTable& t) {
  t.silu_mul = silu_mul16;
}

}  // namespace qe::kernels::avx512
