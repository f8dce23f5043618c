// NEON tiles for the k-quants (q2_K, q3_K, q4_K, q5_K) and iq4_xs against q8_K activations. A 256-value
// super-block is decoded once into 16 int8 registers (16 values each, in element order) plus its group
// scales, then reused for C = 4 tokens, which share the cost of the decode.
// Group sums are SDOT into int32 lanes, scaled by the group's scale with MLA by lane; every integer sum
// is exact (bounds below). The minimum terms (q2_K, q4_K, q5_K: x = d * sc * q - dmin * m) are applied
// once per group through q8_K's bsums, as ggml does: sum(m * a) = m * bsum.
#include <arm_neon.h>

#include <cstring>
#include <type_traits>
#include <utility>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"
#include "kernels/unroll.h"

namespace qe::kernels::neon {

#include "kernels/neon_tiles.inc"

namespace {

// q8_K activations: the 256 quants stay in memory (one 16-byte load per SDOT); the 16 bsums are loaded
// in two registers for the minimum terms.
struct AK {
  const int8_t* qs;
  int16x8_t bs_lo, bs_hi;  // bsums of groups 0-7, 8-15 (16 values each)
  float d;
};

inline void load_q8_K(const uint8_t* row, int64_t b, AK& a) {
  const auto* y = reinterpret_cast<const BlockQ8_K*>(row) + b;
  a.qs = y->qs, a.bs_lo = vld1q_s16(y->bsums), a.bs_hi = vld1q_s16(y->bsums + 8), a.d = y->d;
}

// sum over 16 groups of m[g] * bsums[g] (q2_K: m <= 15, |bsum| <= 16 * 128).
inline int32x4_t mins16(int16x8_t m_lo, int16x8_t m_hi, const AK& a) {
  int32x4_t s = vmull_s16(vget_low_s16(m_lo), vget_low_s16(a.bs_lo));
  s = vmlal_s16(s, vget_high_s16(m_lo), vget_high_s16(a.bs_lo));
  s = vmlal_s16(s, vget_low_s16(m_hi), vget_low_s16(a.bs_hi));
  return vmlal_s16(s, vget_high_s16(m_hi), vget_high_s16(a.bs_hi));
}

// sum over 8 groups of 32 of m[g] * (bsums[2g] + bsums[2g + 1]) (q4_K / q5_K: m <= 63, |pair| <= 4096).
inline int32x4_t mins8(int16x8_t m, const AK& a) {
  const int16x8_t pair = vpaddq_s16(a.bs_lo, a.bs_hi);
  return vmlal_s16(vmull_s16(vget_low_s16(m), vget_low_s16(pair)), vget_high_s16(m), vget_high_s16(pair));
}

// sum over 8 groups of 32 of sc[g] * (q . a), q[k] holding elements 16k..16k+15. |sc * q| <= 63 * 31
// (q5_K) or 32 * 127 (iq4_xs), |a| <= 128, 64 products per lane: below 2^26.
inline int32x4_t groups32(const int8x16_t* q, const int32x4_t* sc, const int8_t* a) {
  int32x4_t s = vdupq_n_s32(0);
  const int32x4_t z = vdupq_n_s32(0);
  unroll<8>([&](auto gc) {
    constexpr int g = decltype(gc)::value;
    const int32x4_t p =
        vdotq_s32(vdotq_s32(z, q[2 * g], vld1q_s8(a + 32 * g)), q[2 * g + 1], vld1q_s8(a + 32 * g + 16));
    s = vmlaq_laneq_s32(s, p, sc[g / 4], g % 4);
  });
  return s;
}

// The 8 6-bit scales and 8 6-bit mins of q4_K / q5_K (ggml's get_scale_min_k4, four groups per word):
// bytes 0-7 of the result are the scales, bytes 8-15 the mins.
inline uint8x16_t scales_mins_k4(const uint8_t* packed) {
  uint32_t u[3];
  std::memcpy(u, packed, 12);
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  const uint32_t scales_hi = (u[2] & kLow4) | (((u[0] >> 6) & kLow2) << 4);
  const uint32_t mins_hi = ((u[2] >> 4) & kLow4) | (((u[1] >> 6) & kLow2) << 4);
  const uint32_t out[4] = {u[0] & kLow6, scales_hi, u[1] & kLow6, mins_hi};  // scales 0-3, 4-7, mins 0-3, 4-7
  return vreinterpretq_u8_u32(vld1q_u32(out));
}

// 8 unsigned scale bytes -> two int32x4 (lanes = groups 0-3, 4-7).
inline void widen8(uint8x8_t v, int32x4_t* sc) {
  const uint16x8_t w = vmovl_u8(v);
  sc[0] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(w)));
  sc[1] = vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(w)));
}

// q2_K: 16 groups of 16, 2-bit q, 4-bit scale and min per group. sc * q <= 45 fits int8, so the scale is
// multiplied into the decoded weights and a token's step is 16 plain SDOTs (|sum| <= 256 * 45 * 128).
struct Q2_KPolicy {
  static constexpr int64_t kBlock = QK_K;
  static constexpr bool kExtra = false;
  struct W {
    int8x16_t q[16];
    int16x8_t m_lo, m_hi;
    float d, dmin;
  };
  using A = AK;
  static void load_w(const uint8_t* row, int64_t b, W& w) {
    const auto* x = reinterpret_cast<const BlockQ2_K*>(row) + b;
    const uint8x16_t sm = vld1q_u8(x->scales), m2 = vdupq_n_u8(3);
    // Group 8h + 2j + s: elements 128h + 32j + 16s + i are bits 2j..2j+1 of qs[32h + 16s + i].
    for (int h = 0; h < 2; ++h)
      for (int s = 0; s < 2; ++s) {
        const uint8x16_t v = vld1q_u8(x->qs + 32 * h + 16 * s);
        for (int j = 0; j < 4; ++j) {
          const int g = 8 * h + 2 * j + s;
          const uint8x16_t q = vandq_u8(vshlq_u8(v, vdupq_n_s8(static_cast<int8_t>(-2 * j))), m2);
          w.q[g] = vreinterpretq_s8_u8(vmulq_u8(q, vdupq_n_u8(x->scales[g] & 0x0F)));
        }
      }
    const uint8x16_t mins = vshrq_n_u8(sm, 4);
    w.m_lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mins)));
    w.m_hi = vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(mins)));
    w.d = half_to_float(x->d), w.dmin = half_to_float(x->dmin);
  }
  static void load_a(const uint8_t* row, int64_t b, A& a) { load_q8_K(row, b, a); }
  static void step(const W& w, const A& a, float32x4_t& acc, float&) {
    int32x4_t s0 = vdupq_n_s32(0), s1 = vdupq_n_s32(0);  // two chains: SDOT latency
    for (int g = 0; g < 16; g += 2) {
      s0 = vdotq_s32(s0, w.q[g], vld1q_s8(a.qs + 16 * g));
      s1 = vdotq_s32(s1, w.q[g + 1], vld1q_s8(a.qs + 16 * g + 16));
    }
    const int32x4_t isum = vaddq_s32(s0, s1);
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(isum), w.d * a.d);
    acc = vfmsq_n_f32(acc, vcvtq_f32_s32(mins16(w.m_lo, w.m_hi, a)), w.dmin * a.d);
  }
};

// q3_K: 16 groups of 16, q = 2 low bits + high bit - 4 in -4..3 (decoded signed: SDOT is signed x
// signed), 6-bit scales stored + 32. |sum| <= 16 * 32 * 16 * 4 * 128 / 4 per lane.
struct Q3_KPolicy {
  static constexpr int64_t kBlock = QK_K;
  static constexpr bool kExtra = false;
  struct W {
    int8x16_t q[16];
    int32x4_t sc[4];
    float d;
  };
  using A = AK;
  static void load_w(const uint8_t* row, int64_t b, W& w) {
    const auto* x = reinterpret_cast<const BlockQ3_K*>(row) + b;
    const uint8x16_t m2 = vdupq_n_u8(3), four = vdupq_n_u8(4);
    const uint8x16_t hm[2] = {vld1q_u8(x->hmask), vld1q_u8(x->hmask + 16)};
    // Group 8h + 2j + s: low bits 2j..2j+1 of qs[32h + 16s + i], high bit 4h + j of hmask[16s + i].
    for (int h = 0; h < 2; ++h)
      for (int s = 0; s < 2; ++s) {
        const uint8x16_t v = vld1q_u8(x->qs + 32 * h + 16 * s);
        for (int j = 0; j < 4; ++j) {
          const uint8x16_t lo = vandq_u8(vshlq_u8(v, vdupq_n_s8(static_cast<int8_t>(-2 * j))), m2);
          const uint8x16_t hi = vtstq_u8(hm[s], vdupq_n_u8(static_cast<uint8_t>(1 << (4 * h + j))));
          w.q[8 * h + 2 * j + s] = vreinterpretq_s8_u8(vsubq_u8(lo, vbicq_u8(four, hi)));  // -4 where clear
        }
      }
    // Scales: low nibbles in bytes 0-7 (groups 0-7 low, 8-15 high nibble), top 2 bits of group g in byte
    // 8 + g % 4 at bit pair g / 4.
    const uint8x8_t lo8 = vld1_u8(x->scales);
    uint32_t top;
    std::memcpy(&top, x->scales + 8, 4);
    const uint8x16_t lo = vcombine_u8(vand_u8(lo8, vdup_n_u8(0x0F)), vshr_n_u8(lo8, 4));
    const int8x16_t shift = {0, 0, 0, 0, -2, -2, -2, -2, -4, -4, -4, -4, -6, -6, -6, -6};
    const uint8x16_t hi = vandq_u8(vshlq_u8(vreinterpretq_u8_u32(vdupq_n_u32(top)), shift), m2);
    const int8x16_t sc = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, vshlq_n_u8(hi, 4))), vdupq_n_s8(32));
    const int16x8_t sl = vmovl_s8(vget_low_s8(sc)), sh = vmovl_s8(vget_high_s8(sc));
    w.sc[0] = vmovl_s16(vget_low_s16(sl)), w.sc[1] = vmovl_s16(vget_high_s16(sl));
    w.sc[2] = vmovl_s16(vget_low_s16(sh)), w.sc[3] = vmovl_s16(vget_high_s16(sh));
    w.d = half_to_float(x->d);
  }
  static void load_a(const uint8_t* row, int64_t b, A& a) { load_q8_K(row, b, a); }
  static void step(const W& w, const A& a, float32x4_t& acc, float&) {
    int32x4_t s = vdupq_n_s32(0);
    const int32x4_t z = vdupq_n_s32(0);
    unroll<16>([&](auto gc) {
      constexpr int g = decltype(gc)::value;
      s = vmlaq_laneq_s32(s, vdotq_s32(z, w.q[g], vld1q_s8(a.qs + 16 * g)), w.sc[g / 4], g % 4);
    });
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), w.d * a.d);
  }
};

// q4_K: 8 groups of 32, 4-bit q; group pair (2j, 2j+1) in the low / high nibbles of qs[32j..32j+31].
struct Q4_KPolicy {
  static constexpr int64_t kBlock = QK_K;
  static constexpr bool kExtra = false;
  struct W {
    int8x16_t q[16];
    int32x4_t sc[2];
    int16x8_t m;
    float d, dmin;
  };
  using A = AK;
  static void load_w(const uint8_t* row, int64_t b, W& w) {
    const auto* x = reinterpret_cast<const BlockQ4_K*>(row) + b;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    for (int j = 0; j < 4; ++j) {
      const uint8x16_t v0 = vld1q_u8(x->qs + 32 * j), v1 = vld1q_u8(x->qs + 32 * j + 16);
      w.q[4 * j + 0] = vreinterpretq_s8_u8(vandq_u8(v0, m4));
      w.q[4 * j + 1] = vreinterpretq_s8_u8(vandq_u8(v1, m4));
      w.q[4 * j + 2] = vreinterpretq_s8_u8(vshrq_n_u8(v0, 4));
      w.q[4 * j + 3] = vreinterpretq_s8_u8(vshrq_n_u8(v1, 4));
    }
    const uint8x16_t sm = scales_mins_k4(x->scales);
    widen8(vget_low_u8(sm), w.sc);
    w.m = vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(sm)));
    w.d = half_to_float(x->d), w.dmin = half_to_float(x->dmin);
  }
  static void load_a(const uint8_t* row, int64_t b, A& a) { load_q8_K(row, b, a); }
  static void step(const W& w, const A& a, float32x4_t& acc, float&) {
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(groups32(w.q, w.sc, a.qs)), w.d * a.d);
    acc = vfmsq_n_f32(acc, vcvtq_f32_s32(mins8(w.m, a)), w.dmin * a.d);
  }
};

// q5_K: q4_K plus a fifth bit: bit 2j of qh[l] for element 64j + l, bit 2j + 1 for 64j + 32 + l.
struct Q5_KPolicy {
  static constexpr int64_t kBlock = QK_K;
  static constexpr bool kExtra = false;
  using W = Q4_KPolicy::W;
  using A = AK;
  static void load_w(const uint8_t* row, int64_t b, W& w) {
    const auto* x = reinterpret_cast<const BlockQ5_K*>(row) + b;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), b4 = vdupq_n_u8(0x10);
    const uint8x16_t h0 = vld1q_u8(x->qh), h1 = vld1q_u8(x->qh + 16);
    for (int j = 0; j < 4; ++j) {
      const uint8x16_t v0 = vld1q_u8(x->qs + 32 * j), v1 = vld1q_u8(x->qs + 32 * j + 16);
      const uint8x16_t bl = vdupq_n_u8(static_cast<uint8_t>(1 << (2 * j))), bh = vshlq_n_u8(bl, 1);
      w.q[4 * j + 0] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v0, m4), vandq_u8(vtstq_u8(h0, bl), b4)));
      w.q[4 * j + 1] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v1, m4), vandq_u8(vtstq_u8(h1, bl), b4)));
      w.q[4 * j + 2] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(v0, 4), vandq_u8(vtstq_u8(h0, bh), b4)));
      w.q[4 * j + 3] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(v1, 4), vandq_u8(vtstq_u8(h1, bh), b4)));
    }
    const uint8x16_t sm = scales_mins_k4(x->scales);
    widen8(vget_low_u8(sm), w.sc);
    w.m = vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(sm)));
    w.d = half_to_float(x->d), w.dmin = half_to_float(x->dmin);
  }
  static void load_a(const uint8_t* row, int64_t b, A& a) { load_q8_K(row, b, a); }
  static void step(const W& w, const A& a, float32x4_t& acc, float& extra) {
    Q4_KPolicy::step(w, a, acc, extra);
  }
};

// iq4_xs: 8 groups of 32, nibbles into kvalues_iq4nl by TBL (qs[16g..16g+15]: elements 32g + i in the
// low nibbles, 32g + 16 + i in the high), 6-bit scales stored + 32.
struct IQ4_XSPolicy {
  static constexpr int64_t kBlock = QK_K;
  static constexpr bool kExtra = false;
  struct W {
    int8x16_t q[16];
    int32x4_t sc[2];
    float d;
  };
  using A = AK;
  static void load_w(const uint8_t* row, int64_t b, W& w) {
    const auto* x = reinterpret_cast<const BlockIQ4_XS*>(row) + b;
    const int8x16_t levels = vld1q_s8(kIQ4NLValues);
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    for (int g = 0; g < 8; ++g) {
      const uint8x16_t v = vld1q_u8(x->qs + 16 * g);
      w.q[2 * g] = vqtbl1q_s8(levels, vandq_u8(v, m4));
      w.q[2 * g + 1] = vqtbl1q_s8(levels, vshrq_n_u8(v, 4));
    }
    int32_t sc[8];
    for (int g = 0; g < 8; ++g)
      sc[g] = (((x->scales_l[g / 2] >> (4 * (g % 2))) & 0x0F) | (((x->scales_h >> (2 * g)) & 3) << 4)) - 32;
    w.sc[0] = vld1q_s32(sc), w.sc[1] = vld1q_s32(sc + 4);
    w.d = half_to_float(x->d);
  }
  static void load_a(const uint8_t* row, int64_t b, A& a) { load_q8_K(row, b, a); }
  static void step(const W& w, const A& a, float32x4_t& acc, float&) {
    acc = vfmaq_n_f32(acc, vcvtq_f32_s32(groups32(w.q, w.sc, a.qs)), w.d * a.d);
  }
};

}  // namespace

// One super-block (16 weight registers) per row, four tokens: 16 + 4 accumulators + scales and
// temporaries fill the 32 registers.
void fill_kquant_tiles(KernelTable& t) {
  t.tile_q2_K_q8_K = tile<Quant<Q2_KPolicy>, 1, 4>;
  t.tile_q3_K_q8_K = tile<Quant<Q3_KPolicy>, 1, 4>;
  t.tile_q4_K_q8_K = tile<Quant<Q4_KPolicy>, 1, 4>;
  t.tile_q5_K_q8_K = tile<Quant<Q5_KPolicy>, 1, 4>;
  t.tile_iq4_xs_q8_K = tile<Quant<IQ4_XSPolicy>, 1, 4>;
}

}  // namespace qe::kernels::neon
