// x16 f16 / bf16 kernels, AVX-512 (layouts and contract: kernels/interleaved.h). One zmm lane per row
// of the 16-row group. GEMM: the blocked product (x16f_blocked), up to 13 tokens x 2 parts = 26 zmm
// accumulators, each weight vector feeding up to 13 FMAs whose activation operand is an embedded
// broadcast; the weights are widened once per block of columns, by the first panel, where each panel
// used to widen its own (vcvtph2ps is two µops on an Intel core's two FMA ports: 2 of every 14 cycles).
// On a 2-vCPU Xeon (Emerald Rapids), qbench 1.1B ffn_up, three alternating runs, with 12-token panels:
// f16 512 tokens 126 -> 150 GOP/s at 1 thread, 243 -> 289 at 2; bf16 125 -> 153, 261 -> 299; 64 tokens
// (one chunk, the weights widened for 64 tokens) +3-8%. 13 (a 64-token chunk in panels of 12-13, not
// 10-11; the widened weights need no registers of their own): another 1-4%, 155 GOP/s f16 at 1 thread
// (87% of its FMA peak). Where widening does not hold the FMAs back (a Zen 4: kernel_tables_x86.cpp,
// widen_once_pays) each panel widens its own weights (x16f_packed), at 93% of that core's FMA peak with
// 12 or 13 tokens (1.1B ffn_up, f16, 107 GOP/s at 1 thread, 214-221 at 2). GEMV: one 32-byte (f16) or
// 64-byte (bf16 pair) load per FMA, two chains per group: far above what DRAM delivers, so the stream
// sets the pace.
// bf16 goes to vdpbf16ps (matmul_x16_float_avx512bf16.cpp) where it pays (kernel_tables.h: bf16_dot_pays).
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"
#include "kernels/schedule.h"
#include "kernels/unroll.h"

// GCC 12's conversion intrinsics pass _mm512_undefined_ps() as a merge source that -Wmaybe-uninitialized
// reports once inlined (a known header false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace qe::kernels::avx512bf16 {
void fill_x16_bf16(KernelTable& t, bool gemv_prefetch);  // matmul_x16_float_avx512bf16.cpp
}

namespace qe::kernels::avx512 {
namespace {

// kPf: a GEMV prefetches its weights in software (gemv_software_prefetch, kernel_tables.h).
template <bool kPf>
struct S {
  using V = __m512;
  static constexpr int kLanes = 16;
  static void gemv_prefetch(const void* line, V& anchor) {
    if constexpr (kPf) prefetch_gemv_ahead(line, anchor);
  }
  static V zero() { return _mm512_setzero_ps(); }
  static V fma_bcast(V w, const float* a, V acc) { return _mm512_fmadd_ps(w, _mm512_set1_ps(*a), acc); }
  static void store_sum(float* y, V s0, V s1) { _mm512_storeu_ps(y, _mm512_add_ps(s0, s1)); }
  static V load(const float* p) { return _mm512_load_ps(p); }
  static void store(float* p, V v) { _mm512_store_ps(p, v); }
  static void prefetch(const void* line) { _mm_prefetch(static_cast<const char*>(line), _MM_HINT_T0); }
  static V f16_col(const uint16_t* wg, int64_t k, int) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg + kInterleave * k)));
  }
  // 16 rows x (k, k + 1): bf16 is the top half of an f32, so the even column is the dword shifted up and
  // the odd column the dword with its low half cleared.
  static void bf16_pair(const uint16_t* wg, int64_t k, int, V& w0, V& w1) {
    const __m512i v = _mm512_loadu_si512(wg + kInterleave * k);
    w0 = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    w1 = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  static V bf16_last(const uint16_t* wg, int64_t k, int) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wg + kInterleave * k));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
  }
};

constexpr int kCols = 13;

}  // namespace

#include "kernels/x16_float_driver.inc"

namespace {

template <bool kPf>
void fill_float_kernels(KernelTable& t, bool widen_once) {
  using L = S<kPf>;
  if (widen_once)
    fill_x16_float_blocked<L, 1, kCols>(t);
  else
    fill_x16_float_packed<L, 1, kCols>(t);
  t.bf16_dot = false;
}

}  // namespace

void fill_x16_float(KernelTable& t, bool bf16_dot, bool gemv_prefetch, bool widen_once) {
  if (gemv_prefetch)
    fill_float_kernels<true>(t, widen_once);
  else
    fill_float_kernels<false>(t, widen_once);
  if (bf16_dot) avx512bf16::fill_x16_bf16(t, gemv_prefetch);
}

}  // namespace qe::kernels::avx512
