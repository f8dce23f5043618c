// Weight-conversion kernels, NEON level (armv8.2-a + fp16), byte-identical to the references in
// formats/blocks.cpp on every input. Where AArch64 differs from the x86 behaviour the references pin:
//  - FMAX/FMIN propagate NaN, so the reference's `a > b ? a : b` scans are a compare + select (BSL);
//  - FCVTZS saturates out-of-range values (and gives 0 for NaN) where cvttss2si gives INT32_MIN, so the
//    conversion selects INT32_MIN outside [-2^31, 2^31) by hand, then keeps the low byte (XTN does);
//  - FCVT quietens signalling NaNs, so f16 groups holding Inf/NaN (and f32 groups holding NaN) take the
//    scalar reference.
// Products that feed a sum go through rounded() so they are never fused into FMLA (GCC contracts across
// intrinsics in C++; the pragma covers Clang). FRINTA is C's roundf exactly.
#include <arm_neon.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace qe::kernels::neon {
namespace {

// An empty asm makes the product opaque to the optimiser: rounded on its own, never fused with the add.
inline float32x4_t rounded(float32x4_t v) {
  __asm__("" : "+w"(v));
  return v;
}

inline float half_to_float_exact(uint16_t h) {
  if ((h & 0x7c00u) == 0x7c00u) return fp16_to_fp32(h);
  return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}
inline uint16_t float_to_half_exact(float f) {
  if (std::isnan(f)) return fp32_to_fp16(f);
  return vget_lane_u16(vreinterpret_u16_f16(vcvt_f16_f32(vdupq_n_f32(f))), 0);
}

// `a > b ? a : b` lane-wise (NaN in a keeps b), as the reference's scans.
inline float32x4_t select_gt(float32x4_t a, float32x4_t b) {
  return vbslq_f32(vcgtq_f32(a, b), a, b);
}
inline float32x4_t select_lt(float32x4_t a, float32x4_t b) {
  return vbslq_f32(vcltq_f32(a, b), a, b);
}

// x86's float -> int32 (cvttss2si): truncation in range, INT32_MIN for NaN and out-of-range values.
inline int32x4_t trunc_x86(float32x4_t t) {
  const uint32x4_t in =
      vandq_u32(vcgeq_f32(t, vdupq_n_f32(-2147483648.0f)), vcltq_f32(t, vdupq_n_f32(2147483648.0f)));
  return vbslq_s32(in, vcvtq_s32_f32(t), vdupq_n_s32(std::numeric_limits<int32_t>::min()));
}

// 4 x int32x4 -> their 16 low bytes in order (modular narrowing, as the reference's int8 cast).
inline int8x16_t low_bytes(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d) {
  const int16x8_t ab = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
  const int16x8_t cd = vcombine_s16(vmovn_s32(c), vmovn_s32(d));
  return vcombine_s8(vmovn_s16(ab), vmovn_s16(cd));
}

// Bytes q[j] | q[j + 16] << 4 in uint8 arithmetic, after the reference's min(15, q).
inline void store_nibbles(int8x16_t lo, int8x16_t hi, uint8_t* qs) {
  const uint8x16_t l = vreinterpretq_u8_s8(vminq_s8(lo, vdupq_n_s8(15)));
  const uint8x16_t h = vreinterpretq_u8_s8(vminq_s8(hi, vdupq_n_s8(15)));
  vst1q_u8(qs, vorrq_u8(l, vshlq_n_u8(h, 4)));
}

void load32(const float* x, float32x4_t v[8]) {
  for (int k = 0; k < 8; ++k) v[k] = vld1q_f32(x + 4 * k);
}

// ---- f16 / bf16 <-> f32

void to_f32_f16(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const uint16_t*>(vx);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint16x8_t h = vld1q_u16(x + i);
    const uint16x8_t special = vceqq_u16(vandq_u16(h, vdupq_n_u16(0x7c00)), vdupq_n_u16(0x7c00));
    if (vmaxvq_u16(special) != 0) {
      for (int64_t j = i; j < i + 8; ++j) y[j] = fp16_to_fp32(x[j]);
      continue;
    }
    const float16x8_t f = vreinterpretq_f16_u16(h);
    vst1q_f32(y + i, vcvt_f32_f16(vget_low_f16(f)));
    vst1q_f32(y + i + 4, vcvt_high_f32_f16(f));
  }
  for (; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}

void to_f32_bf16(const void* vx, float* y, int64_t n) {
  const auto* x = static_cast<const uint16_t*>(vx);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint16x8_t h = vld1q_u16(x + i);
    vst1q_f32(y + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)));
    vst1q_f32(y + i + 4, vreinterpretq_f32_u32(vshll_n_u16(vget_high_u16(h), 16)));
  }
  for (; i < n; ++i) y[i] = bf16_to_fp32(x[i]);
}

void from_f32_f16(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<uint16_t*>(vy);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const float32x4_t a = vld1q_f32(x + i), b = vld1q_f32(x + i + 4);
    if (vminvq_u32(vandq_u32(vceqq_f32(a, a), vceqq_f32(b, b))) == 0) {  // a NaN: numpy's payload rule
      for (int64_t j = i; j < i + 8; ++j) y[j] = fp32_to_fp16(x[j]);
      continue;
    }
    vst1q_u16(y + i, vreinterpretq_u16_f16(vcvt_high_f16_f32(vcvt_f16_f32(a), b)));
  }
  for (; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}

inline uint16x4_t bf16_bits(float32x4_t v) {
  const uint32x4_t u = vreinterpretq_u32_f32(v);
  const uint32x4_t nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fffffffu)), vdupq_n_u32(0x7f800000u));
  const uint32x4_t odd = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
  const uint32x4_t r = vshrq_n_u32(vaddq_u32(u, vaddq_u32(vdupq_n_u32(0x7fffu), odd)), 16);
  const uint32x4_t q = vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(64));
  return vmovn_u32(vbslq_u32(nan, q, r));
}

void from_f32_bf16(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<uint16_t*>(vy);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    vst1q_u16(y + i, vcombine_u16(bf16_bits(vld1q_f32(x + i)), bf16_bits(vld1q_f32(x + i + 4))));
  for (; i < n; ++i) y[i] = fp32_to_bf16(x[i]);
}

// ---- quantizers

void quantize_row_q4_0(const float* x, void* vy, int64_t n) {
  QE_CHECK(n >= 0 && n % QK4_0 == 0);
  auto* y = static_cast<BlockQ4_0*>(vy);
  for (int64_t b = 0; b < n / QK4_0; ++b, x += QK4_0) {
    float32x4_t v[8], a[8];
    load32(x, v);
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int k = 0; k < 8; ++k) m = select_gt(a[k] = vabsq_f32(v[k]), m);
    const float amax = vmaxvq_f32(m);  // no NaN lanes left
    float max = 0.0f;                  // the reference keeps +0 when nothing beats amax = 0
    if (amax != 0.0f) {
      // First element reaching amax: compare, narrow to bytes, 4 mask bits per element (SHRN by 4).
      const float32x4_t t = vdupq_n_f32(amax);
      uint16x8_t e16[4];
      for (int k = 0; k < 4; ++k)
        e16[k] = vcombine_u16(vmovn_u32(vceqq_f32(a[2 * k], t)), vmovn_u32(vceqq_f32(a[2 * k + 1], t)));
      const uint8x16_t e0 = vcombine_u8(vmovn_u16(e16[0]), vmovn_u16(e16[1]));
      const uint8x16_t e1 = vcombine_u8(vmovn_u16(e16[2]), vmovn_u16(e16[3]));
      const uint64_t m0 = vget_lane_u64(vreinterpret_u64_u8(vshrn_n_u16(vreinterpretq_u16_u8(e0), 4)), 0);
      const uint64_t m1 = vget_lane_u64(vreinterpret_u64_u8(vshrn_n_u16(vreinterpretq_u16_u8(e1), 4)), 0);
      max = x[m0 != 0 ? std::countr_zero(m0) / 4 : 16 + std::countr_zero(m1) / 4];
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = float_to_half_exact(d);
    const float32x4_t vid = vdupq_n_f32(id), half8 = vdupq_n_f32(8.5f);
    int32x4_t q[8];
    for (int k = 0; k < 8; ++k) q[k] = trunc_x86(vaddq_f32(rounded(vmulq_f32(v[k], vid)), half8));
    store_nibbles(low_bytes(q[0], q[1], q[2], q[3]), low_bytes(q[4], q[5], q[6], q[7]), y[b].qs);
  }
}

void quantize_row_q4_1(const float* x, void* vy, int64_t n) {
  QE_CHECK(n >= 0 && n % QK4_1 == 0);
  auto* y = static_cast<BlockQ4_1*>(vy);
  for (int64_t b = 0; b < n / QK4_1; ++b, x += QK4_1) {
    float32x4_t v[8];
    load32(x, v);
    float32x4_t lo = vdupq_n_f32(std::numeric_limits<float>::max());
    float32x4_t hi = vdupq_n_f32(-std::numeric_limits<float>::max());
    for (int k = 0; k < 8; ++k) {
      lo = select_lt(v[k], lo);
      hi = select_gt(v[k], hi);
    }
    const float min = vminvq_f32(lo), max = vmaxvq_f32(hi);
    if (min == 0.0f || max == 0.0f) {  // which zero the reference keeps depends on element order
      quantize_row_q4_1_ref(x, &y[b], QK4_1);
      continue;
    }
    const float d = (max - min) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = float_to_half_exact(d);
    y[b].m = float_to_half_exact(min);
    const float32x4_t vmin = vdupq_n_f32(min), vid = vdupq_n_f32(id), half = vdupq_n_f32(0.5f);
    int32x4_t q[8];
    for (int k = 0; k < 8; ++k)
      q[k] = trunc_x86(vaddq_f32(rounded(vmulq_f32(vsubq_f32(v[k], vmin), vid)), half));
    store_nibbles(low_bytes(q[0], q[1], q[2], q[3]), low_bytes(q[4], q[5], q[6], q[7]), y[b].qs);
  }
}

void quantize_row_q8_0(const float* x, void* vy, int64_t n) {
  QE_CHECK(n >= 0 && n % QK8_0 == 0);
  auto* y = static_cast<BlockQ8_0*>(vy);
  for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0) {
    float32x4_t v[8];
    load32(x, v);
    float32x4_t m = vdupq_n_f32(0.0f);
    uint32x4_t ok = vdupq_n_u32(~0u);
    for (int k = 0; k < 8; ++k) {
      m = vmaxq_f32(m, vabsq_f32(v[k]));
      ok = vandq_u32(ok, vceqq_f32(v[k], v[k]));
    }
    if (vminvq_u32(ok) == 0) {  // ggml_max lets a NaN through, then forgets it: order matters
      quantize_row_q8_0_ref(x, &y[b], QK8_0);
      continue;
    }
    const float d = vmaxvq_f32(m) / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = float_to_half_exact(d);
    const float32x4_t vid = vdupq_n_f32(id);
    int32x4_t q[8];
    for (int k = 0; k < 8; ++k) q[k] = trunc_x86(vrndaq_f32(vmulq_f32(v[k], vid)));
    vst1q_s8(y[b].qs, low_bytes(q[0], q[1], q[2], q[3]));
    vst1q_s8(y[b].qs + 16, low_bytes(q[4], q[5], q[6], q[7]));
  }
}

// ---- dequantizers: float(q) * d (+ m), as the reference

inline void store_scaled(int16x8_t q, float32x4_t d, float* y) {
  vst1q_f32(y, vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(q))), d));
  vst1q_f32(y + 4, vmulq_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(q))), d));
}

void to_f32_q4_0(const void* vx, float* y, int64_t n) {
  QE_CHECK(n >= 0 && n % QK4_0 == 0);
  const auto* x = static_cast<const BlockQ4_0*>(vx);
  for (int64_t b = 0; b < n / QK4_0; ++b, y += QK4_0) {
    const float32x4_t d = vdupq_n_f32(half_to_float_exact(x[b].d));
    const uint8x16_t q = vld1q_u8(x[b].qs);
    const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f))), vdupq_n_s8(8));
    const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), vdupq_n_s8(8));
    store_scaled(vmovl_s8(vget_low_s8(lo)), d, y);
    store_scaled(vmovl_s8(vget_high_s8(lo)), d, y + 8);
    store_scaled(vmovl_s8(vget_low_s8(hi)), d, y + 16);
    store_scaled(vmovl_s8(vget_high_s8(hi)), d, y + 24);
  }
}

inline void store_affine(uint16x8_t q, float32x4_t d, float32x4_t m, float* y) {
  vst1q_f32(y, vaddq_f32(rounded(vmulq_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(q))), d)), m));
  vst1q_f32(y + 4, vaddq_f32(rounded(vmulq_f32(vcvtq_f32_u32(vmovl_u16(vget_high_u16(q))), d)), m));
}

void to_f32_q4_1(const void* vx, float* y, int64_t n) {
  QE_CHECK(n >= 0 && n % QK4_1 == 0);
  const auto* x = static_cast<const BlockQ4_1*>(vx);
  for (int64_t b = 0; b < n / QK4_1; ++b, y += QK4_1) {
    const float32x4_t d = vdupq_n_f32(half_to_float_exact(x[b].d));
    const float32x4_t m = vdupq_n_f32(half_to_float_exact(x[b].m));
    const uint8x16_t q = vld1q_u8(x[b].qs);
    const uint8x16_t lo = vandq_u8(q, vdupq_n_u8(0x0f)), hi = vshrq_n_u8(q, 4);
    store_affine(vmovl_u8(vget_low_u8(lo)), d, m, y);
    store_affine(vmovl_u8(vget_high_u8(lo)), d, m, y + 8);
    store_affine(vmovl_u8(vget_low_u8(hi)), d, m, y + 16);
    store_affine(vmovl_u8(vget_high_u8(hi)), d, m, y + 24);
  }
}

void to_f32_q8_0(const void* vx, float* y, int64_t n) {
  QE_CHECK(n >= 0 && n % QK8_0 == 0);
  const auto* x = static_cast<const BlockQ8_0*>(vx);
  for (int64_t b = 0; b < n / QK8_0; ++b, y += QK8_0) {
    const float32x4_t d = vdupq_n_f32(half_to_float_exact(x[b].d));
    for (int k = 0; k < 2; ++k) {
      const int8x16_t q = vld1q_s8(x[b].qs + 16 * k);
      store_scaled(vmovl_s8(vget_low_s8(q)), d, y + 16 * k);
      store_scaled(vmovl_s8(vget_high_s8(q)), d, y + 16 * k + 8);
    }
  }
}

// ---- error pass: e = out - src in float, e^2 in double (exact), max |e| skipping NaN as std::max does

RowError error_stats(const float* src, const float* out, int64_t n) {
  float64x2_t s0 = vdupq_n_f64(0.0), s1 = s0;
  float32x4_t mx = vdupq_n_f32(0.0f);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t e = vsubq_f32(vld1q_f32(out + i), vld1q_f32(src + i));
    const float64x2_t lo = vcvt_f64_f32(vget_low_f32(e)), hi = vcvt_high_f64_f32(e);
    s0 = vaddq_f64(s0, vmulq_f64(lo, lo));
    s1 = vaddq_f64(s1, vmulq_f64(hi, hi));
    mx = select_gt(vabsq_f32(e), mx);
  }
  RowError r;
  r.sum_sq = vaddvq_f64(vaddq_f64(s0, s1));
  r.max_abs = vmaxvq_f32(mx);
  for (; i < n; ++i) {
    const float e = out[i] - src[i];
    r.sum_sq += static_cast<double>(e) * e;
    r.max_abs = std::max(r.max_abs, std::fabs(e));
  }
  return r;
}

}  // namespace

void fill_convert(KernelTable& t) {
  t.to_f32_f16 = to_f32_f16;
  t.to_f32_bf16 = to_f32_bf16;
  t.to_f32_q4_0 = to_f32_q4_0;
  t.to_f32_q4_1 = to_f32_q4_1;
  t.to_f32_q8_0 = to_f32_q8_0;
  t.quantize_row_q4_0 = quantize_row_q4_0;
  t.quantize_row_q4_1 = quantize_row_q4_1;
  t.quantize_row_q8_0 = quantize_row_q8_0;
  t.from_f32_f16 = from_f32_f16;
  t.from_f32_bf16 = from_f32_bf16;
  t.error_stats = error_stats;
}

}  // namespace qe::kernels::neon
