// x16 k-quant kernels, NEON dotprod (layout and arithmetic contract: kernels/interleaved.h). A 16-row
// group is done as four 4-row quarters, one int32 lane per row: SDOT by element (vdotq_laneq_s32)
// multiplies a quarter's 4 x 4 weight bytes by one activation dword picked from a register, so each
// sub-block's activation bytes are loaded once per token. SDOT is signed x signed: the quants (0..15,
// 0..31, 0..63) go in as they are; a sub-block's int32 sum is scaled by vmlaq_s32. The q4_K / q5_K mins
// are vmlaq_n_s32 of the rows' mins by the sub-block's bsum; q6_K's -32 starts each group's sum at
// -32 * bsums[g]. C = 4 tokens share each decoded weight vector.
#include <arm_neon.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::neon {
namespace {

constexpr int kCols = 4;

inline float32x4_t h2f4(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
inline const BlockQ8_K& act(const uint8_t* row, int64_t b) { return reinterpret_cast<const BlockQ8_K*>(row)[b]; }
// Byte-wise shift, left for s >= 0 and right for s < 0.
inline uint8x16_t shift8(uint8x16_t v, int s) { return vshlq_u8(v, vdupq_n_s8(static_cast<int8_t>(s))); }
// Four bytes (rows 4q..4q+3) widened to int32 lanes.
inline int32x4_t u8x4_to_s32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(v))))));
}

// isum += w[k] . (dword k of a[0..1]) for k = 0..7.
inline int32x4_t dot8(int32x4_t isum, const int8x16_t* w, int8x16_t a_lo, int8x16_t a_hi) {
  isum = vdotq_laneq_s32(isum, w[0], a_lo, 0);
  isum = vdotq_laneq_s32(isum, w[1], a_lo, 1);
  isum = vdotq_laneq_s32(isum, w[2], a_lo, 2);
  isum = vdotq_laneq_s32(isum, w[3], a_lo, 3);
  isum = vdotq_laneq_s32(isum, w[4], a_hi, 0);
  isum = vdotq_laneq_s32(isum, w[5], a_hi, 1);
  isum = vdotq_laneq_s32(isum, w[6], a_hi, 2);
  return vdotq_laneq_s32(isum, w[7], a_hi, 3);
}

// The 6-bit scales and mins of a q4_K / q5_K group, unpacked to sc[16 * s + r], mn[16 * s + r].
inline void decode_scales(const uint8_t* lo, const uint8_t* hi, uint8_t* sc, uint8_t* mn) {
  const uint8x16_t m3 = vdupq_n_u8(3), m4 = vdupq_n_u8(0x0F);
  for (int s = 0; s < 8; ++s) {
    const uint8x16_t l = vld1q_u8(lo + 16 * s), h = shift8(vld1q_u8(hi + 16 * (s & 3)), -2 * (s >> 2));
    vst1q_u8(sc + 16 * s, vorrq_u8(vandq_u8(l, m4), vshlq_n_u8(vandq_u8(h, m3), 4)));
    vst1q_u8(mn + 16 * s, vorrq_u8(vshrq_n_u8(l, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h, 4), m3), 4)));
  }
}

template <bool kQ5>
struct K45 {
  using W = std::conditional_t<kQ5, BlockQ5_Kx16, BlockQ4_Kx16>;
  static constexpr int64_t kBlock = QK_K;
  static constexpr bool kSums = false;
  template <int C>
  static void part(int64_t nb, const W* wg, int qr, const uint8_t* const* ar, const int32_t* const*, float* y,
                   int64_t ldy) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F), b4 = vdupq_n_u8(0x10);
    float32x4_t acc[C];
    for (int c = 0; c < C; ++c) acc[c] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; ++b) {
      const W& blk = wg[b];
      alignas(16) uint8_t sc[128], mn[128];
      decode_scales(blk.scales_lo, blk.scales_hi, sc, mn);
      int32x4_t is[C], im[C];
      for (int c = 0; c < C; ++c) is[c] = im[c] = vdupq_n_s32(0);
      for (int s = 0; s < 8; ++s) {
        const int u = s / 2, half = s % 2;
        int8x16_t w[8];
        for (int k = 0; k < 8; ++k) {
          const uint8x16_t v = vld1q_u8(blk.qs + 64 * (8 * u + k) + 16 * qr);
          uint8x16_t q = half ? vshrq_n_u8(v, 4) : vandq_u8(v, m4);
          if constexpr (kQ5) q = vorrq_u8(q, vandq_u8(shift8(vld1q_u8(blk.qh + 64 * k + 16 * qr), 4 - s), b4));
          w[k] = vreinterpretq_s8_u8(q);
        }
        const int32x4_t scv = u8x4_to_s32(sc + 16 * s + 4 * qr), mv = u8x4_to_s32(mn + 16 * s + 4 * qr);
        for (int c = 0; c < C; ++c) {
          const BlockQ8_K& ab = act(ar[c], b);
          const int32x4_t t = dot8(vdupq_n_s32(0), w, vld1q_s8(ab.qs + 32 * s), vld1q_s8(ab.qs + 32 * s + 16));
          is[c] = vmlaq_s32(is[c], t, scv);
          im[c] = vmlaq_n_s32(im[c], mv, ab.bsums[2 * s] + ab.bsums[2 * s + 1]);
        }
      }
      const float32x4_t dw = h2f4(blk.d + 4 * qr), dm = h2f4(blk.dmin + 4 * qr);
      for (int c = 0; c < C; ++c) {
        const float da = act(ar[c], b).d;
        acc[c] = vfmaq_f32(acc[c], vcvtq_f32_s32(is[c]), vmulq_n_f32(dw, da));
        acc[c] = vfmsq_f32(acc[c], vcvtq_f32_s32(im[c]), vmulq_n_f32(dm, da));
      }
    }
    for (int c = 0; c < C; ++c) vst1q_f32(y + c * ldy, acc[c]);
  }
};

struct K6 {
  using W = BlockQ6_Kx16;
  static constexpr int64_t kBlock = QK_K;
  static constexpr bool kSums = false;
  template <int C>
  static void part(int64_t nb, const W* wg, int qr, const uint8_t* const* ar, const int32_t* const*, float* y,
                   int64_t ldy) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m30 = vdupq_n_u8(0x30);
    float32x4_t acc[C];
    for (int c = 0; c < C; ++c) acc[c] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; ++b) {
      const W& blk = wg[b];
      int32x4_t is[C];
      for (int c = 0; c < C; ++c) is[c] = vdupq_n_s32(0);
      for (int vh = 0; vh < 2; ++vh)
        for (int part = 0; part < 4; ++part) {  // values 128 vh + 32 part .. +31: groups 8 vh + 2 part + q
          const int t = 4 * vh + part;
          const int16x8_t sp = vmovl_s8(vld1_s8(blk.scales + 32 * t + 8 * qr));  // rows' (sc[2t], sc[2t + 1])
          const int32x4_t scv[2] = {vmovl_s16(vget_low_s16(vuzp1q_s16(sp, sp))), vmovl_s16(vget_low_s16(vuzp2q_s16(sp, sp)))};
          for (int q = 0; q < 2; ++q) {
            int8x16_t w[4];
            for (int i = 0; i < 4; ++i) {
              const int l4 = 4 * q + i;
              const uint8x16_t v = vld1q_u8(blk.ql(vh, part & 1, l4) + 16 * qr);
              const uint8x16_t lo = part < 2 ? vandq_u8(v, m4) : vshrq_n_u8(v, 4);
              const uint8x16_t hb = vandq_u8(shift8(vld1q_u8(blk.qh(vh, l4) + 16 * qr), 4 - 2 * part), m30);
              w[i] = vreinterpretq_s8_u8(vorrq_u8(lo, hb));
            }
            const int g = 2 * t + q;
            for (int c = 0; c < C; ++c) {
              const BlockQ8_K& ab = act(ar[c], b);
              const int8x16_t a = vld1q_s8(ab.qs + 16 * g);
              int32x4_t d = vdupq_n_s32(-32 * ab.bsums[g]);
              d = vdotq_laneq_s32(d, w[0], a, 0);
              d = vdotq_laneq_s32(d, w[1], a, 1);
              d = vdotq_laneq_s32(d, w[2], a, 2);
              d = vdotq_laneq_s32(d, w[3], a, 3);
              is[c] = vmlaq_s32(is[c], d, scv[q]);
            }
          }
        }
      const float32x4_t dw = h2f4(blk.d + 4 * qr);
      for (int c = 0; c < C; ++c)
        acc[c] = vfmaq_f32(acc[c], vcvtq_f32_s32(is[c]), vmulq_n_f32(dw, act(ar[c], b).d));
    }
    for (int c = 0; c < C; ++c) vst1q_f32(y + c * ldy, acc[c]);
  }
};

}  // namespace

#include "kernels/x16_driver.inc"

// C = 4 tokens x 4 quarters of 4 rows. Called from fill_x16 (matmul_x16_neon.cpp).
void fill_x16_k(KernelTable& t) {
  t.x16_q4_K_q8_K = x16<K45<false>, kCols, 4>;
  t.x16_q5_K_q8_K = x16<K45<true>, kCols, 4>;
  t.x16_q6_K_q8_K = x16<K6, kCols, 4>;
}

}  // namespace qe::kernels::neon
