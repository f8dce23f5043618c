// x16 kernels, NEON dotprod (layout and arithmetic contract: kernels/interleaved.h). A 16-row group is
// done as four 4-row quarters, one int32 lane per row: SDOT by element (vdotq_laneq_s32) multiplies a
// quarter's 4 x 4 weight bytes by one activation dword picked from a register, so the 32 activation
// bytes of a block are loaded once per token. C = 4 tokens share each decoded weight vector.
// SDOT is signed x signed: nibbles 0..15 and q8_0 weights go in as they are; q4_0's -8 is the
// accumulator's start, -8 * sum(a), from the activation rows' block sums.
#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::neon {
namespace {

constexpr int kCols = 4;

inline float h2f(uint16_t h) {
  __fp16 f;
  std::memcpy(&f, &h, 2);
  return static_cast<float>(f);
}
inline float32x4_t h2f4(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

// isum += w[k] . (dword k of the block) for k = 0..7, w[0..3] against a_lo's lanes, w[4..7] a_hi's.
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

// The 8 weight vectors of quarter q of block `blk`: slice k holds elements 4k..4k+3 of the 4 rows.
template <class W>
void load_q4(const W& blk, int q, int8x16_t* w) {
  const uint8x16_t m4 = vdupq_n_u8(0x0F);
  for (int j = 0; j < 4; ++j) {
    const uint8x16_t v = vld1q_u8(blk.qs + 64 * j + 16 * q);
    w[j] = vreinterpretq_s8_u8(vandq_u8(v, m4));
    w[4 + j] = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
  }
}

template <class WBlock, class A, bool kMin, bool kQ8>
struct Kernel {
  using W = WBlock;
  static constexpr int64_t kBlock = QK8_0;
  static constexpr bool kSums = !kMin && !kQ8;
  template <int C>
  static void part(int64_t nb, const W* wg, int q, const uint8_t* const* ar, const int32_t* const* sums, float* y,
                   int64_t ldy) {
    float32x4_t acc[C];
    for (int c = 0; c < C; ++c) acc[c] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; ++b) {
      int8x16_t w[8];
      if constexpr (kQ8) {
        for (int j = 0; j < 8; ++j) w[j] = vld1q_s8(wg[b].qs + 64 * j + 16 * q);
      } else {
        load_q4(wg[b], q, w);
      }
      const float32x4_t dw = h2f4(wg[b].d + 4 * q);
      for (int c = 0; c < C; ++c) {
        const A& ab = reinterpret_cast<const A*>(ar[c])[b];
        const int32x4_t init = kSums ? vdupq_n_s32(-8 * sums[c][b]) : vdupq_n_s32(0);
        const int32x4_t isum = dot8(init, w, vld1q_s8(ab.qs), vld1q_s8(ab.qs + 16));
        acc[c] = vfmaq_f32(acc[c], vcvtq_f32_s32(isum), vmulq_n_f32(dw, h2f(ab.d)));
        if constexpr (kMin) acc[c] = vfmaq_f32(acc[c], h2f4(wg[b].m + 4 * q), vdupq_n_f32(h2f(ab.s)));
      }
    }
    for (int c = 0; c < C; ++c) vst1q_f32(y + c * ldy, acc[c]);
  }
};

}  // namespace

#include "kernels/x16_driver.inc"

void fill_x16_k(KernelTable& t);  // the k-quants: matmul_x16_k_neon.cpp

// C = 4 tokens x 4 quarters of 4 rows.
void fill_x16(KernelTable& t) {
  fill_x16_k(t);
  t.x16_q4_0_q8_0 = x16<Kernel<BlockQ4_0x16, BlockQ8_0, false, false>, kCols, 4>;
  t.x16_q4_1_q8_1 = x16<Kernel<BlockQ4_1x16, BlockQ8_1, true, false>, kCols, 4>;
  t.x16_q8_0_q8_0 = x16<Kernel<BlockQ8_0x16, BlockQ8_0, false, true>, kCols, 4>;
}

}  // namespace qe::kernels::neon
