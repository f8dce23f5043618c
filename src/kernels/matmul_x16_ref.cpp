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

void x16_q4_0_q8_0(int64_t n, const void* w, int64_t n_groups, const void* a, int64_t as, int64_t nc, float* y,
                   int64_t ldy) {
  const int64_t nb = n / QK8_0;
  for (int64_t g = 0; g < n_groups; ++g) {
    const auto* wg = static_cast<const BlockQ4_0x16*>(w) + g * nb;
    for (int64_t c = 0; c < nc; ++c) {
      const auto* ab = reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(a) + c * as);
      for (int64_t r = 0; r < kInterleave; ++r) {
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; ++b) {
          int isum = 0;
          for (int e = 0; e < QK8_0; ++e) isum += (q4_at(wg[b].qs, r, e) - 8) * ab[b].qs[e];
          acc = std::fma(static_cast<float>(isum), fp16_to_fp32(wg[b].d[r]) * fp16_to_fp32(ab[b].d), acc);
        }
        y[c * ldy + g * kInterleave + r] = acc;
      }
    }
  }
}

void x16_q4_1_q8_1(int64_t n, const void* w, int64_t n_groups, const void* a, int64_t as, int64_t nc, float* y,
                   int64_t ldy) {
  const int64_t nb = n / QK8_1;
  for (int64_t g = 0; g < n_groups; ++g) {
    const auto* wg = static_cast<const BlockQ4_1x16*>(w) + g * nb;
    for (int64_t c = 0; c < nc; ++c) {
      const auto* ab = reinterpret_cast<const BlockQ8_1*>(static_cast<const uint8_t*>(a) + c * as);
      for (int64_t r = 0; r < kInterleave; ++r) {
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; ++b) {
          int isum = 0;
          for (int e = 0; e < QK8_1; ++e) isum += q4_at(wg[b].qs, r, e) * ab[b].qs[e];
          acc = std::fma(static_cast<float>(isum), fp16_to_fp32(wg[b].d[r]) * fp16_to_fp32(ab[b].d), acc);
          acc = std::fma(fp16_to_fp32(wg[b].m[r]), fp16_to_fp32(ab[b].s), acc);
        }
        y[c * ldy + g * kInterleave + r] = acc;
      }
    }
  }
}

void x16_q8_0_q8_0(int64_t n, const void* w, int64_t n_groups, const void* a, int64_t as, int64_t nc, float* y,
                   int64_t ldy) {
  const int64_t nb = n / QK8_0;
  for (int64_t g = 0; g < n_groups; ++g) {
    const auto* wg = static_cast<const BlockQ8_0x16*>(w) + g * nb;
    for (int64_t c = 0; c < nc; ++c) {
      const auto* ab = reinterpret_cast<const BlockQ8_0*>(static_cast<const uint8_t*>(a) + c * as);
      for (int64_t r = 0; r < kInterleave; ++r) {
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; ++b) {
          int isum = 0;
          for (int e = 0; e < QK8_0; ++e) isum += wg[b].qs[64 * (e / 4) + 4 * r + e % 4] * ab[b].qs[e];
          acc = std::fma(static_cast<float>(isum), fp16_to_fp32(wg[b].d[r]) * fp16_to_fp32(ab[b].d), acc);
        }
        y[c * ldy + g * kInterleave + r] = acc;
      }
    }
  }
}

}  // namespace

void fill_x16(KernelTable& t) {
  t.x16_q4_0_q8_0 = x16_q4_0_q8_0;
  t.x16_q4_1_q8_1 = x16_q4_1_q8_1;
  t.x16_q8_0_q8_0 = x16_q8_0_q8_0;
}

}  // namespace qe::kernels::ref
