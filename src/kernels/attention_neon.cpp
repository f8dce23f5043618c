// Flash-attention kernels on 128-bit NEON vectors (attention_block.inc). 32 registers: the scores take
// 2 rows x 32 keys per pass (16 accumulators + 8 key vectors) and the weighted sum of V 2 rows x 32
// features (16 accumulators + 8 value vectors).
#include <arm_neon.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"
#include "kernels/neon_math.h"

namespace qe::kernels::neon {
namespace {

struct Vec {
  using T = float32x4_t;
  static constexpr int W = 4;
  static constexpr int kScoreVecs = 8;
  static constexpr int kRows = 2;
  static constexpr int kOutVecs = 8;
  static constexpr bool kWidenBlock = false;  // not measured on an Arm core
  static T zero() { return vdupq_n_f32(0.0f); }
  static T load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, T x) { vst1q_f32(p, x); }
  static T set1(float x) { return vdupq_n_f32(x); }
  static T add(T a, T b) { return vaddq_f32(a, b); }
  static T mul(T a, T b) { return vmulq_f32(a, b); }
  static T fmadd(T a, T b, T c) { return vfmaq_f32(c, a, b); }
  static T max(T a, T b) { return vmaxq_f32(a, b); }
  static T keep_first(T x, int64_t n) {
    if (n >= W) return x;
    static const int32_t kLane[4] = {0, 1, 2, 3};
    const uint32x4_t keep = vcltq_s32(vld1q_s32(kLane), vdupq_n_s32(static_cast<int32_t>(n < 0 ? 0 : n)));
    return vbslq_f32(keep, x, vdupq_n_f32(-INFINITY));
  }
  static float reduce_add(T x) { return vaddvq_f32(x); }
  static float reduce_max(T x) { return vmaxvq_f32(x); }
  static T load_f16(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
  // exp(-inf) is an exact 0 (below -87.3 gives 0), as masked keys need.
  static T exp(T x) { return exp_ps(x); }
};

}  // namespace

#include "kernels/attention_block.inc"

}  // namespace qe::kernels::neon
