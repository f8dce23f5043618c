// Scalar reference for the x16 kernels (layout and arithmetic contract in kernels/interleaved.h): per
// (row, token) an exact integer block dot, then acc = fma(float(isum), d_w * d_a, acc) in block order
// (the k-quants: exact IS / IM per super-block, then their one or two fmas).
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

// ---- k-quants: exact IS (and IM) per (row, token, super-block), then the fixed float steps
// (contract in interleaved.h). Values are read from the x16 layout as documented there.

// q4_K / q5_K value e (0..255) of row r: qs dword j = 8u + k holds values 64u + 4k + i (low nibbles)
// and 64u + 32 + 4k + i (high nibbles).
template <class W>
int k45_at(const W& blk, int64_t r, int e) {
  const int u = e / 64, half = (e % 64) / 32, k = (e % 32) / 4, i = e % 4;
  const int byte = blk.qs[64 * (8 * u + k) + 4 * r + i];
  int q = half ? byte >> 4 : byte & 15;
  if constexpr (requires { blk.qh[0]; }) q |= ((blk.qh[64 * k + 4 * r + i] >> (2 * u + half)) & 1) << 4;
  return q;
}

// q6_K value e of row r, 0..63 (before the -32): see the ql / qh pairing in interleaved.h.
int k6_at(const BlockQ6_Kx16& blk, int64_t r, int e) {
  const int h = e / 128, part = (e % 128) / 32, l4 = (e % 32) / 4, i = e % 4;
  const int byte = blk.ql(h, part & 1, l4)[4 * r + i];  // ql dword 16h + 8 (part & 1) + l4
  const int lo = part < 2 ? byte & 15 : byte >> 4;
  return lo | ((blk.qh(h, l4)[4 * r + i] >> (2 * part)) & 3) << 4;
}

template <class W>
void x16_k45(int64_t n, const void* w, int64_t n_groups, const void* a, int64_t as, int64_t nc, float* y, int64_t ldy) {
  const int64_t nb = n / QK_K;
  for (int64_t g = 0; g < n_groups; ++g) {
    const auto* wg = static_cast<const W*>(w) + g * nb;
    for (int64_t c = 0; c < nc; ++c) {
      const auto* ab = reinterpret_cast<const BlockQ8_K*>(static_cast<const uint8_t*>(a) + c * as);
      for (int64_t r = 0; r < kInterleave; ++r) {
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; ++b) {
          int32_t is = 0, im = 0;
          for (int s = 0; s < 8; ++s) {
            int32_t dot = 0;
            for (int e = 32 * s; e < 32 * s + 32; ++e) dot += k45_at(wg[b], r, e) * ab[b].qs[e];
            is += kquant_scale(wg[b].scales_lo, wg[b].scales_hi, s, r) * dot;
            im += kquant_min(wg[b].scales_lo, wg[b].scales_hi, s, r) * (ab[b].bsums[2 * s] + ab[b].bsums[2 * s + 1]);
          }
          acc = std::fma(static_cast<float>(is), fp16_to_fp32(wg[b].d[r]) * ab[b].d, acc);
          acc = std::fma(-static_cast<float>(im), fp16_to_fp32(wg[b].dmin[r]) * ab[b].d, acc);
        }
        y[c * ldy + g * kInterleave + r] = acc;
      }
    }
  }
}

void x16_k6(int64_t n, const void* w, int64_t n_groups, const void* a, int64_t as, int64_t nc, float* y, int64_t ldy) {
  const int64_t nb = n / QK_K;
  for (int64_t g = 0; g < n_groups; ++g) {
    const auto* wg = static_cast<const BlockQ6_Kx16*>(w) + g * nb;
    for (int64_t c = 0; c < nc; ++c) {
      const auto* ab = reinterpret_cast<const BlockQ8_K*>(static_cast<const uint8_t*>(a) + c * as);
      for (int64_t r = 0; r < kInterleave; ++r) {
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; ++b) {
          int32_t is = 0;
          for (int grp = 0; grp < 16; ++grp) {
            int32_t dot = 0;
            for (int e = 16 * grp; e < 16 * grp + 16; ++e) dot += k6_at(wg[b], r, e) * ab[b].qs[e];
            is += wg[b].scales[32 * (grp / 2) + 2 * r + grp % 2] * (dot - 32 * ab[b].bsums[grp]);
          }
          acc = std::fma(static_cast<float>(is), fp16_to_fp32(wg[b].d[r]) * ab[b].d, acc);
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
  t.x16_q4_K_q8_K = x16_k45<BlockQ4_Kx16>;
  t.x16_q5_K_q8_K = x16_k45<BlockQ5_Kx16>;
  t.x16_q6_K_q8_K = x16_k6;
}

}  // namespace qe::kernels::ref
