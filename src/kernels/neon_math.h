// NEON math shared by the NEON translation units (kernels_neon.cpp's ops, attention_neon.cpp's online
// softmax): one definition, so the two compute the same exp bits. Include after <arm_neon.h>.
#pragma once

#include <arm_neon.h>

namespace qe::kernels::neon {

// expf to ~2 ulp (same Cephes polynomial as the x86 levels); below -87.3 gives 0, above 88 is clamped.
inline float32x4_t exp_ps(float32x4_t x) {
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

}  // namespace qe::kernels::neon
