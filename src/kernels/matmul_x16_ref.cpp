// Scalar reference for the x16 kernels (layout and arithmetic contract in kernels/interleaved.h): per
// (row, token) an exact integer block dot, then acc = fma(float(isum), d_w * d_a, acc) in block order.
// The SIMD levels do the same operations lane-wise, so they match this bit for bit.
#include <cmath>
#include <cstring>

#include "kernels/interleaved.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::ref {
namespace {

// Weight value of (row r, element e) of an x16 block, as the integer the dot multiplies.
int q4_at(const uint8_t* qs, int64_t r, int e) {
  const int j = (e % 16) / 4, i = e % 4;
  const uint8_t byte = qs[64 * j + 4 * r + i];
  return e < 16 ? (byte & 0x0F) : (byte >> 4);
}

// The integer each x16 type's dot multiplies, and whether a block adds m * s (q4_1).
struct Q4_0 {
  using W = BlockQ4_0x16;
  using A = BlockQ8_0;
  static constexpr bool kMin = false;
  static int at(const W& blk, int64_t r, int e) { return q4_at(blk.qs, r, e) - 8; }
};
struct Q4_1 {
  using W = BlockQ4_1x16;
  using A = BlockQ8_1;
  static constexpr bool kMin = true;
  static int at(const W& blk, int64_t r, int e) { return q4_at(blk.qs, r, e); }
};
struct Q8_0 {
  using W = BlockQ8_0x16;
  using A = BlockQ8_0;
  static constexpr bool kMin = false;
  static int at(const W& blk, int64_t r, int e) { return blk.qs[64 * (e / 4) + 4 * r + e % 4]; }
};

template <class P>
void x16(int64_t n, const void* w, int64_t n_groups, const void* a, int64_t as, int64_t nc, float* y, int64_t ldy) {
  const int64_t nb = n / QK8_0;
  for (int64_t g = 0; g < n_groups; ++g) {
    const auto* wg = static_cast<const typename P::W*>(w) + g * nb;
    for (int64_t c = 0; c < nc; ++c) {
      const auto* ab = reinterpret_cast<const typename P::A*>(static_cast<const uint8_t*>(a) + c * as);
      for (int64_t r = 0; r < kInterleave; ++r) {
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; ++b) {
          int isum = 0;
          for (int e = 0; e < QK8_0; ++e) isum += P::at(wg[b], r, e) * ab[b].qs[e];
          acc = std::fma(static_cast<float>(isum), fp16_to_fp32(wg[b].d[r]) * fp16_to_fp32(ab[b].d), acc);
          if constexpr (P::kMin) acc = std::fma(fp16_to_fp32(wg[b].m[r]), fp16_to_fp32(ab[b].s), acc);
        }
        y[c * ldy + g * kInterleave + r] = acc;
      }
    }
  }
}

}  // namespace

void fill_x16(KernelTable& t) {
  t.x16_q4_0_q8_0 = x16<Q4_0>;
  t.x16_q4_1_q8_1 = x16<Q4_1>;
  t.x16_q8_0_q8_0 = x16<Q8_0>;
}

}  // namespace qe::kernels::ref
