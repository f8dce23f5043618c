// The x16 q5_K kernel on the AVX-512 level plus GFNI (Ice Lake, Zen 4; not Skylake-X or Cascade Lake):
// its kernels run only when CPUID lists GFNI, and then replace the AVX-512 level's q5_K entry.
//
// A q5_K weight vector is a qs nibble with sub-block s's fifth bit, bit s of a qh byte, at bit 4. Without
// GFNI that bit costs a 16-bit shift and a mask per vector (ShiftBit5, matmul_x16_k_avx512.cpp); one
// gf2p8affineqb moves it instead: the affine map's matrix has a single 1, from input bit s to output bit 4
// (row 7 - 4 = byte 3 of the qword holds output bit 4's input mask). Same bits (the unit tests compare
// both against the scalar kernel). One-token GEMV, 1.1B ffn_up from DRAM, Zen 4, 1 thread, against the
// plain read of the same bytes at the same moments: 74-80% -> 87-90% (q4_K and q6_K gain nothing this
// way, so they stay on the AVX-512 level's kernels).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"
#include "kernels/schedule.h"
#include "kernels/unroll.h"

#if defined(__GNUC__) && !defined(__clang__)  // GCC 12 header false positives, see matmul_x16_avx512.cpp
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace qe::kernels::avx512gfni {
namespace {

constexpr int kCols = 8;

#include "kernels/x16_k_avx512.inc"

struct GfniBit5 {
  template <int s>
  static __m512i at(__m512i qh) {
    return _mm512_gf2p8affine_epi64_epi8(qh, _mm512_set1_epi64(int64_t{1} << (24 + s)), 0);
  }
};

}  // namespace

#include "kernels/x16_driver.inc"

void fill_x16_k(KernelTable& t, bool gemv_prefetch) {
  using Pf = K45<true, GfniBit5, true>;
  using NoPf = K45<true, GfniBit5, false>;
  t.x16_q5_K_q8_K = gemv_prefetch ? x16_first_slice_prefetch<Pf, NoPf, kCols, 1, true>
                                  : x16_first_slice_prefetch<Pf, NoPf, kCols, 1, false>;
}

}  // namespace qe::kernels::avx512gfni
