// NEON level (armv8.2-a + dotprod + fp16: Cortex-A76/Neoverse N1, Apple M1, Graviton 2 and later).
// The int8 dot is SDOT (vdotq_s32: 16 products into 4 int32 lanes, signed x signed), so q4_0's -8 is
// applied to the nibbles directly and no sign tricks are needed. Same tile structure as the x86 levels:
// an R x C register tile whose per-(row, column) instruction sequence never depends on R or C (the driver:
// neon_tiles.inc, shared with the k-quant and iq4_xs tiles in kernels_kquants_neon.cpp).
#include <arm_neon.h>

#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"
#include "kernels/neon_math.h"

namespace qe::kernels::neon {

#include "kernels/neon_tiles.inc"

namespace {

uint16_t float_to_half(float f) {  // FPCR default: round to nearest even, as the reference
  const __fp16 h = static_cast<__fp16>(f);
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}

// ---- Quantizers (byte-identical to the reference: vrndaq = roundf, vrndnq = nearest-even).
float quantize_block_q8(const float* x, int8_t* qs, int* sum) {
  float32x4_t v[8];
  float32x4_t m = vdupq_n_f32(0.0f);
  for (int k = 0; k < 8; ++k) v[k] = vld1q_f32(x + 4 * k), m = vmaxq_f32(m, vabsq_f32(v[k]));
  const float amax = vmaxvq_f32(m);
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  int32x4_t s = vdupq_n_s32(0);
  for (int k = 0; k < 8; k += 2) {
    const int32x4_t i0 = vcvtq_s32_f32(vrndaq_f32(vmulq_n_f32(v[k], id)));
    const int32x4_t i1 = vcvtq_s32_f32(vrndaq_f32(vmulq_n_f32(v[k + 1], id)));
    s = vaddq_s32(s, vaddq_s32(i0, i1));
    const int16x8_t h = vcombine_s16(vqmovn_s32(i0), vqmovn_s32(i1));
    vst1_s8(qs + 4 * k, vqmovn_s16(h));
  }
  if (sum) *sum = vaddvq_s32(s);
  return d;
}

void quantize_q8_0(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<BlockQ8_0*>(vy);
  for (int64_t b = 0; b < n / QK8_0; ++b) y[b].d = float_to_half(quantize_block_q8(x + b * QK8_0, y[b].qs, nullptr));
}

void quantize_q8_1(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<BlockQ8_1*>(vy);
  for (int64_t b = 0; b < n / QK8_1; ++b) {
    int sum = 0;
    const float d = quantize_block_q8(x + b * QK8_1, y[b].qs, &sum);
    y[b].d = float_to_half(d);
    y[b].s = float_to_half(static_cast<float>(sum) * d);
  }
}

void quantize_q8_K(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<BlockQ8_K*>(vy);
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int j = 0; j < QK_K; j += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + j)));
    const float amax = vmaxvq_f32(m);
    if (amax == 0.0f) {
      y[b].d = 0.0f;
      std::memset(y[b].qs, 0, sizeof(y[b].qs));
      std::memset(y[b].bsums, 0, sizeof(y[b].bsums));
      continue;
    }
    int j0 = 0;
    while (std::fabs(x[j0]) != amax) ++j0;  // the first value of largest magnitude gives the sign
    const float iscale = -127.0f / x[j0];
    for (int j = 0; j < QK_K; j += 16) {
      int32x4_t q[4];
      for (int k = 0; k < 4; ++k)
        q[k] = vminq_s32(vcvtq_s32_f32(vrndnq_f32(vmulq_n_f32(vld1q_f32(x + j + 4 * k), iscale))), vdupq_n_s32(127));
      y[b].bsums[j / 16] = static_cast<int16_t>(vaddvq_s32(vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3]))));
      const int16x8_t h0 = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
      const int16x8_t h1 = vcombine_s16(vqmovn_s32(q[2]), vqmovn_s32(q[3]));
      vst1q_s8(y[b].qs + j, vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1)));
    }
    y[b].d = 1.0f / iscale;
  }
}

// ---- Tile kernels.
struct Q4_0Policy {
  static constexpr int64_t kBlock = QK8_0;
  static constexpr bool kExtra = false;
  struct W { int8x16_t lo, hi; float d; };
  struct A { int8x16_t lo, hi; float d; };
  static void load_w(const uint8_t* row, int64_t b, W& w) {
    const auto* x = reinterpret_cast<const BlockQ4_0*>(row) + b;
    const uint8x16_t q = vld1q_u8(x->qs);
    w.lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F))), vdupq_n_s8(8));
    w.hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), vdupq_n_s8(8));
    w.d = half_to_float(x->d);
  }
  static void load_a(const uint8_t* row, int64_t b, A& a) {
    const auto* y = reinterpret_cast<const BlockQ8_0*>(row) + b;
    a.lo = vld1q_s8(y->qs), a.hi = vld1q_s8(y->qs + 16), a.d = half_to_float(y->d);
  }
  static void step(const W& w, const A& a, float32x4_t& acc, float&) {
    const int32x4_t p = vdotq_s32(vdotq_s32(vdupq_n_s32(0), w.lo, a.lo), w.hi, a.hi);
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), w.d * a.d);
  }
};

struct Q4_1Policy {
  static constexpr int64_t kBlock = QK8_1;
  static constexpr bool kExtra = true;
  struct W { int8x16_t lo, hi; float d, m; };
  struct A { int8x16_t lo, hi; float d, s; };
  static void load_w(const uint8_t* row, int64_t b, W& w) {
    const auto* x = reinterpret_cast<const BlockQ4_1*>(row) + b;
    const uint8x16_t q = vld1q_u8(x->qs);
    w.lo = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F)));  // 0..15 is a valid signed int8
    w.hi = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
    w.d = half_to_float(x->d), w.m = half_to_float(x->m);
  }
  static void load_a(const uint8_t* row, int64_t b, A& a) {
    const auto* y = reinterpret_cast<const BlockQ8_1*>(row) + b;
    a.lo = vld1q_s8(y->qs), a.hi = vld1q_s8(y->qs + 16), a.d = half_to_float(y->d), a.s = half_to_float(y->s);
  }
  static void step(const W& w, const A& a, float32x4_t& acc, float& extra) {
    const int32x4_t p = vdotq_s32(vdotq_s32(vdupq_n_s32(0), w.lo, a.lo), w.hi, a.hi);
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), w.d * a.d);
    extra += w.m * a.s;
  }
};

struct Q8_0Policy {
  static constexpr int64_t kBlock = QK8_0;
  static constexpr bool kExtra = false;
  struct W { int8x16_t lo, hi; float d; };
  using A = Q4_0Policy::A;
  static void load_w(const uint8_t* row, int64_t b, W& w) {
    const auto* x = reinterpret_cast<const BlockQ8_0*>(row) + b;
    w.lo = vld1q_s8(x->qs), w.hi = vld1q_s8(x->qs + 16), w.d = half_to_float(x->d);
  }
  static void load_a(const uint8_t* row, int64_t b, A& a) { Q4_0Policy::load_a(row, b, a); }
  static void step(const W& w, const A& a, float32x4_t& acc, float&) {
    const int32x4_t p = vdotq_s32(vdotq_s32(vdupq_n_s32(0), w.lo, a.lo), w.hi, a.hi);
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), w.d * a.d);
  }
};

// q5_0 / q5_1: the fifth bits (qh, bit j for element j) are spread to bytes by a table lookup of qh's
// bytes (8 elements per byte), then tested against each byte's own bit.
struct Q5Bits {
  uint8x16_t lo, hi;  // 0xFF where the element's fifth bit is set: elements 0..15, 16..31
  static Q5Bits load(const uint8_t* qh) {
    uint32_t h;
    std::memcpy(&h, qh, 4);
    const uint8x16_t v = vreinterpretq_u8_u32(vdupq_n_u32(h));
    const uint8x16_t bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040201008040201ull));
    const uint8x16_t idx_lo = vcombine_u8(vdup_n_u8(0), vdup_n_u8(1));
    const uint8x16_t idx_hi = vcombine_u8(vdup_n_u8(2), vdup_n_u8(3));
    return {vtstq_u8(vqtbl1q_u8(v, idx_lo), bit), vtstq_u8(vqtbl1q_u8(v, idx_hi), bit)};
  }
};

struct Q5_0Policy {
  static constexpr int64_t kBlock = QK8_0;
  static constexpr bool kExtra = false;
  using W = Q4_0Policy::W;
  using A = Q4_0Policy::A;
  static void load_w(const uint8_t* row, int64_t b, W& w) {
    const auto* x = reinterpret_cast<const BlockQ5_0*>(row) + b;
    const uint8x16_t q = vld1q_u8(x->qs), m4 = vdupq_n_u8(0x0F), b4 = vdupq_n_u8(0x10);
    const Q5Bits h = Q5Bits::load(x->qh);
    // q - 16 = low nibble - (16 where the fifth bit is clear)
    w.lo = vreinterpretq_s8_u8(vsubq_u8(vandq_u8(q, m4), vbicq_u8(b4, h.lo)));
    w.hi = vreinterpretq_s8_u8(vsubq_u8(vshrq_n_u8(q, 4), vbicq_u8(b4, h.hi)));
    w.d = half_to_float(x->d);
  }
  static void load_a(const uint8_t* row, int64_t b, A& a) { Q4_0Policy::load_a(row, b, a); }
  static void step(const W& w, const A& a, float32x4_t& acc, float& extra) {
    Q4_0Policy::step(w, a, acc, extra);
  }
};

struct Q5_1Policy {
  static constexpr int64_t kBlock = QK8_1;
  static constexpr bool kExtra = true;
  using W = Q4_1Policy::W;
  using A = Q4_1Policy::A;
  static void load_w(const uint8_t* row, int64_t b, W& w) {
    const auto* x = reinterpret_cast<const BlockQ5_1*>(row) + b;
    const uint8x16_t q = vld1q_u8(x->qs), m4 = vdupq_n_u8(0x0F), b4 = vdupq_n_u8(0x10);
    const Q5Bits h = Q5Bits::load(x->qh);
    w.lo = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, m4), vandq_u8(b4, h.lo)));  // 0..31
    w.hi = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), vandq_u8(b4, h.hi)));
    w.d = half_to_float(x->d), w.m = half_to_float(x->m);
  }
  static void load_a(const uint8_t* row, int64_t b, A& a) { Q4_1Policy::load_a(row, b, a); }
  static void step(const W& w, const A& a, float32x4_t& acc, float& extra) {
    Q4_1Policy::step(w, a, acc, extra);
  }
};

// iq4_nl: the 16 int8 levels fit one register, so TBL decodes 16 nibbles per instruction.
struct IQ4_NLPolicy {
  static constexpr int64_t kBlock = QK8_0;
  static constexpr bool kExtra = false;
  using W = Q4_0Policy::W;
  using A = Q4_0Policy::A;
  static void load_w(const uint8_t* row, int64_t b, W& w) {
    const auto* x = reinterpret_cast<const BlockIQ4_NL*>(row) + b;
    const int8x16_t levels = vld1q_s8(kIQ4NLValues);
    const uint8x16_t q = vld1q_u8(x->qs);
    w.lo = vqtbl1q_s8(levels, vandq_u8(q, vdupq_n_u8(0x0F)));
    w.hi = vqtbl1q_s8(levels, vshrq_n_u8(q, 4));
    w.d = half_to_float(x->d);
  }
  static void load_a(const uint8_t* row, int64_t b, A& a) { Q4_0Policy::load_a(row, b, a); }
  static void step(const W& w, const A& a, float32x4_t& acc, float& extra) {
    Q4_0Policy::step(w, a, acc, extra);
  }
};

// q6_K: 16 groups of 16 quants (0..63 after decoding, offset -32 applied through q8_K's bsums).
struct Q6_KPolicy {
  static constexpr int64_t kBlock = QK_K;
  static constexpr bool kExtra = false;
  struct W { int8x16_t q[16]; int8_t sc[16]; int16x8_t sc_lo, sc_hi; float d; };
  struct A { const int8_t* qs; int16x8_t bs_lo, bs_hi; float d; };
  static void load_w(const uint8_t* row, int64_t b, W& w) {
    const auto* x = reinterpret_cast<const BlockQ6_K*>(row) + b;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m3 = vdupq_n_u8(0x30);
    for (int h = 0; h < 2; ++h)
      for (int s = 0; s < 2; ++s) {  // 16-byte halves of the 32-quant vectors
        const uint8x16_t ql0 = vld1q_u8(x->ql + 64 * h + 16 * s), ql1 = vld1q_u8(x->ql + 64 * h + 32 + 16 * s);
        const uint8x16_t qh = vld1q_u8(x->qh + 32 * h + 16 * s);
        const int g = 8 * h + s;  // group of quant vector k is 8h + 2k + s
        w.q[g + 0] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(ql0, m4), vandq_u8(vshlq_n_u8(qh, 4), m3)));
        w.q[g + 2] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(ql1, m4), vandq_u8(vshlq_n_u8(qh, 2), m3)));
        w.q[g + 4] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(ql0, 4), vandq_u8(qh, m3)));
        w.q[g + 6] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(ql1, 4), vandq_u8(vshrq_n_u8(qh, 2), m3)));
      }
    std::memcpy(w.sc, x->scales, 16);
    const int8x16_t sc = vld1q_s8(x->scales);
    w.sc_lo = vmovl_s8(vget_low_s8(sc)), w.sc_hi = vmovl_s8(vget_high_s8(sc));
    w.d = half_to_float(x->d);
  }
  static void load_a(const uint8_t* row, int64_t b, A& a) {
    const auto* y = reinterpret_cast<const BlockQ8_K*>(row) + b;
    a.qs = y->qs, a.bs_lo = vld1q_s16(y->bsums), a.bs_hi = vld1q_s16(y->bsums + 8), a.d = y->d;
  }
  static void step(const W& w, const A& a, float32x4_t& acc, float&) {
    int32x4_t s = vdupq_n_s32(0);
    for (int g = 0; g < 16; ++g) s = vmlaq_n_s32(s, vdotq_s32(vdupq_n_s32(0), w.q[g], vld1q_s8(a.qs + 16 * g)), w.sc[g]);
    int32x4_t corr = vmull_s16(vget_low_s16(w.sc_lo), vget_low_s16(a.bs_lo));
    corr = vmlal_s16(corr, vget_high_s16(w.sc_lo), vget_high_s16(a.bs_lo));
    corr = vmlal_s16(corr, vget_low_s16(w.sc_hi), vget_low_s16(a.bs_hi));
    corr = vmlal_s16(corr, vget_high_s16(w.sc_hi), vget_high_s16(a.bs_hi));
    s = vsubq_s32(s, vshlq_n_s32(corr, 5));
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), w.d * a.d);
  }
};

struct F32W {
  using T = float;
  static float32x4_t load(const T* p) { return vld1q_f32(p); }
  static float scalar(T v) { return v; }
};
struct F16W {
  using T = uint16_t;
  static float32x4_t load(const T* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
  static float scalar(T v) { return half_to_float(v); }
};
struct BF16W {
  using T = uint16_t;
  static float32x4_t load(const T* p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }
  static float scalar(T v) { return bf16_to_fp32(v); }
};

template <class P, int R, int C>
void micro_f(int64_t n, const uint8_t* w, int64_t ws, const uint8_t* a, int64_t as, float* y, int64_t ldy) {
  using T = typename P::T;
  float32x4_t acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = vdupq_n_f32(0.0f);
  const int64_t n4 = n & ~int64_t{3};
  for (int64_t i = 0; i < n4; i += 4) {
    float32x4_t wv[R];
    for (int r = 0; r < R; ++r) wv[r] = P::load(reinterpret_cast<const T*>(w + r * ws) + i);
    for (int c = 0; c < C; ++c) {
      const float32x4_t av = vld1q_f32(reinterpret_cast<const float*>(a + c * as) + i);
      for (int r = 0; r < R; ++r) acc[r][c] = vfmaq_f32(acc[r][c], wv[r], av);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      float v = vaddvq_f32(acc[r][c]);
      const T* wr = reinterpret_cast<const T*>(w + r * ws);
      const float* ac = reinterpret_cast<const float*>(a + c * as);
      for (int64_t i = n4; i < n; ++i) v += P::scalar(wr[i]) * ac[i];
      y[c * ldy + r] = v;
    }
}

template <class P> struct Float {
  template <int R, int C>
  static void run(int64_t n, const uint8_t* w, int64_t ws, const uint8_t* a, int64_t as, float* y, int64_t ldy) {
    micro_f<P, R, C>(n, w, ws, a, as, y, ldy);
  }
};

// ---- Ops.
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  float32x4_t s0 = vdupq_n_f32(0), s1 = s0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const float32x4_t a = vld1q_f32(x + i), b = vld1q_f32(x + i + 4);
    s0 = vfmaq_f32(s0, a, a), s1 = vfmaq_f32(s1, b, b);
  }
  float sum = vaddvq_f32(vaddq_f32(s0, s1));
  for (; i < n; ++i) sum += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(sum / static_cast<float>(n) + eps);
  for (i = 0; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), scale), vld1q_f32(w + i)));
  for (; i < n; ++i) y[i] = (x[i] * scale) * w[i];
}

void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t n_rot, const float* cos, const float* sin) {
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    int64_t i = 0;
    for (; i + 8 <= n_rot; i += 8) {  // vld2 de-interleaves 4 pairs into x0s and x1s
      const float32x4x2_t p = vld2q_f32(v + i);
      const float32x4_t c = vld1q_f32(cos + i / 2), s = vld1q_f32(sin + i / 2);
      float32x4x2_t o;
      o.val[0] = vsubq_f32(vmulq_f32(p.val[0], c), vmulq_f32(p.val[1], s));
      o.val[1] = vaddq_f32(vmulq_f32(p.val[0], s), vmulq_f32(p.val[1], c));
      vst2q_f32(v + i, o);
    }
    for (; i + 2 <= n_rot; i += 2) {
      const float x0 = v[i], x1 = v[i + 1];
      v[i] = x0 * cos[i / 2] - x1 * sin[i / 2];
      v[i + 1] = x0 * sin[i / 2] + x1 * cos[i / 2];
    }
  }
}

// The scale pass is fused into the max pass: each x * scale is still one rounded product.
void softmax(float* x, int64_t n, float scale) {
  float mx = -INFINITY;
  int64_t i = 0;
  if (n >= 4) {
    float32x4_t vm = vdupq_n_f32(-INFINITY);
    for (; i + 4 <= n; i += 4) {
      const float32x4_t v = vmulq_n_f32(vld1q_f32(x + i), scale);
      vst1q_f32(x + i, v);
      vm = vmaxq_f32(vm, v);
    }
    mx = vmaxvq_f32(vm);
  }
  for (; i < n; ++i) {
    x[i] *= scale;
    mx = std::fmax(mx, x[i]);
  }
  float32x4_t vs = vdupq_n_f32(0);
  for (i = 0; i + 4 <= n; i += 4) {
    const float32x4_t e = exp_ps(vsubq_f32(vld1q_f32(x + i), vdupq_n_f32(mx)));
    vst1q_f32(x + i, e);
    vs = vaddq_f32(vs, e);
  }
  float sum = vaddvq_f32(vs);
  for (; i < n; ++i) x[i] = std::exp(x[i] - mx), sum += x[i];
  const float inv = 1.0f / sum;
  for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inv));
  for (; i < n; ++i) x[i] *= inv;
}

void silu_mul(const float* g, const float* u, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t gv = vld1q_f32(g + i);
    const float32x4_t e = exp_ps(vnegq_f32(gv));
    vst1q_f32(y + i, vmulq_f32(vdivq_f32(gv, vaddq_f32(vdupq_n_f32(1.0f), e)), vld1q_f32(u + i)));
  }
  for (; i < n; ++i) y[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void add(const float* a, const float* b, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vaddq_f32(vld1q_f32(a + i), vld1q_f32(b + i)));
  for (; i < n; ++i) y[i] = a[i] + b[i];
}

void scale(const float* x, float s, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(x + i), s));
  for (; i < n; ++i) y[i] = x[i] * s;
}

}  // namespace

// 32 NEON registers: 4 x 4 int8 tiles (16 accumulators + 8 weight halves + 2 activation halves).
void fill_table(KernelTable& t) {
  t.isa = Isa::neon;
  t.quantize_q8_0 = quantize_q8_0;
  t.quantize_q8_1 = quantize_q8_1;
  t.quantize_q8_K = quantize_q8_K;
  t.tile_q4_0_q8_0 = tile<Quant<Q4_0Policy>, 4, 4>;
  t.tile_q4_1_q8_1 = tile<Quant<Q4_1Policy>, 4, 4>;
  t.tile_q8_0_q8_0 = tile<Quant<Q8_0Policy>, 4, 4>;
  t.tile_q6_K_q8_K = tile<Quant<Q6_KPolicy>, 1, 2>;
  t.tile_q5_0_q8_0 = tile<Quant<Q5_0Policy>, 4, 4>;
  t.tile_q5_1_q8_1 = tile<Quant<Q5_1Policy>, 4, 4>;
  t.tile_iq4_nl_q8_0 = tile<Quant<IQ4_NLPolicy>, 4, 4>;
  t.tile_f16_f32 = tile<Float<F16W>, 4, 4>;
  t.tile_bf16_f32 = tile<Float<BF16W>, 4, 4>;
  t.tile_f32_f32 = tile<Float<F32W>, 4, 4>;
  t.rms_norm = rms_norm;
  t.rope = rope;
  t.softmax = softmax;
  t.silu_mul = silu_mul;
  t.add = add;
  t.scale = scale;
}

}  // namespace qe::kernels::neon
