// Flash-attention kernels on 128-bit NEON vectors (attention_block.inc). 32 registers: the scores take
// 2 rows x 32 keys per pass (16 accumulators + 8 key vectors) and the weighted sum of V 2 rows x 32
// features (16 accumulators + 8 value vectors).
#include <arm_neon.h>

#include <cmath>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::neon {
namespace {

struct Vec {
  using T = float32x4_t;
  static constexpr int W = 4;
  static constexpr int kScoreVecs = 8;
  static constexpr int kRows = 2;
  static constexpr int kOutVecs = 8;
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
  // expf to about 2 ulp (the Cephes scheme of kernels_neon.cpp's exp_ps): below -87.3 gives 0, so
  // exp(-inf) is an exact 0 for masked keys.
  static T exp(T x) {
    const uint32x4_t keep = vcgeq_f32(x, vdupq_n_f32(-87.3f));
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3f)), vdupq_n_f32(88.0f));
    const float32x4_t fx = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_n_f32(x, fx, 0.693359375f);
    r = vfmsq_n_f32(r, fx, -2.12194440e-4f);
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(fx), vdupq_n_s32(127)), 23);
    const float32x4_t y = vmulq_f32(p, vreinterpretq_f32_s32(e));
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(y), keep));
  }
};

}  // namespace

#include "kernels/attention_block.inc"

void fill_attention(KernelTable& t) {
  fill_attention_generic(t);
}

}  // namespace qe::kernels::neon
