// x16 f16 / bf16 kernels, NEON (layouts and contract: kernels/interleaved.h). A 16-row group is four
// 4-lane slices; fmla by a scalar is fused (one rounding), as the contract needs. GEMM: one slice at a
// time, 12 tokens x 2 parts = 24 of the 32 q registers, each widened weight vector feeding 12 FMAs.
// GEMV: all four slices in one pass (one contiguous stream, 8 FMA chains).
#include <arm_neon.h>

#include <algorithm>
#include <vector>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"
#include "kernels/unroll.h"

namespace qe::kernels::neon {
namespace {

struct S {
  using V = float32x4_t;
  static constexpr int kLanes = 4;
  static void gemv_prefetch(const void*, V&) {}
  static V zero() { return vdupq_n_f32(0.0f); }
  static V fma_bcast(V w, const float* a, V acc) { return vfmaq_n_f32(acc, w, *a); }
  static void store_sum(float* y, V s0, V s1) { vst1q_f32(y, vaddq_f32(s0, s1)); }
  static V f16_col(const uint16_t* wg, int64_t k, int s) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(wg + kInterleave * k + 4 * s)));
  }
  static void bf16_pair(const uint16_t* wg, int64_t k, int s, V& w0, V& w1) {
    const uint32x4_t v = vreinterpretq_u32_u16(vld1q_u16(wg + kInterleave * k + 8 * s));
    w0 = vreinterpretq_f32_u32(vshlq_n_u32(v, 16));
    w1 = vreinterpretq_f32_u32(vandq_u32(v, vdupq_n_u32(0xffff0000u)));
  }
  static V bf16_last(const uint16_t* wg, int64_t k, int s) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(wg + kInterleave * k + 4 * s), 16));
  }
};

constexpr int kCols = 12;

}  // namespace

#include "kernels/x16_float_driver.inc"

void fill_x16_float(KernelTable& t) {
  fill_x16_float_packed<S, 4, kCols>(t);
}

}  // namespace qe::kernels::neon
