// k-quants (super-blocks of 256 values): ggml-quants.c's quantize_row_q{2..6}_K_ref and
// dequantize_row_q{2..5}_K, followed operation by operation in float, because the bytes are the contract
// (see blocks.cpp). q6_K's dequantizer lives in blocks.cpp beside q8_K, with which it was written; the
// importance-weighted quantizers are in blocks_kquants_weighted.cpp.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "formats/error.h"
#include "formats/kquant_layout.h"
#include "formats/quant_search.h"
#include "formats/exact_float.h"  // after the other headers: no fused multiply-add below

namespace qe {
namespace {

using quant::nearest_int;

inline void check_row(int64_t n) {
  QE_CHECK(n >= 0 && n % QK_K == 0);
}

// q2_K's codes, and q3_K's low 2 bits: value 128h + 32s + l in bit pair s of qs[32h + l].
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const uint8_t* v = L + 128 * h + l;
      qs[32 * h + l] = static_cast<uint8_t>(v[0] | (v[32] << 2) | (v[64] << 4) | (v[96] << 6));
    }
}

// A 6-bit group scale or min code as ggml computes it: nearest_int assigned to a uint8_t, so a negative
// value (a group whose fitted scale came out negative) wraps modulo 256 before the clamp to 63.
inline uint8_t code6(float v) {
  return std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(v)));
}

// The 8 groups of 32 of q4_K / q5_K without an imatrix: each group's (scale, min) from make_qkx2_quants,
// weighted by rms(group) + |x| (ggml's choice: a value counts by its own size plus its group's typical
// size), then the scales and the mins each quantized to 6 bits against their largest value. Writes d,
// dmin and the packed scales; leaves the search's codes in L.
template <class Block>
void search_q45_K(const float* x, int nmax, float rmin, float rdelta, int nstep, uint8_t* L, Block& y) {
  float scales[8];
  float mins[8];
  float weights[32];
  uint8_t Laux[32];
  float max_scale = 0.0f;  // the mins are subtracted, so the scales come out positive
  float max_min = 0.0f;
  for (int j = 0; j < 8; ++j) {
    const float* xg = x + 32 * j;
    float sum_x2 = 0.0f;
    for (int l = 0; l < 32; ++l) sum_x2 += xg[l] * xg[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xg[l]);
    scales[j] = quant::make_qkx2_quants(32, nmax, xg, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta,
                                        nstep, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  uint8_t ls[8];
  uint8_t lm[8];
  for (int j = 0; j < 8; ++j) {
    ls[j] = code6(inv_scale * scales[j]);
    lm[j] = code6(inv_min * mins[j]);
  }
  kquant::set_scales_mins_k4(ls, lm, y.scales);
  y.d = fp32_to_fp16(max_scale / 63.0f);
  y.dmin = fp32_to_fp16(max_min / 63.0f);
}

// Recomputes the codes of q4_K / q5_K against the decoded scales (kquant::finish_*), codes in [0, nmax].
template <class Block>
void requantize_q45_K(const float* x, int nmax, uint8_t* L, const Block& y) {
  const float d_all = fp16_to_fp32(y.d);
  const float dmin_all = fp16_to_fp32(y.dmin);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc = 0;
    uint8_t m = 0;
    kquant::get_scale_min_k4(j, y.scales, &sc, &m);
    const float d = d_all * static_cast<float>(sc);
    if (d == 0.0f) continue;
    const float dm = dmin_all * static_cast<float>(m);
    for (int l = 0; l < 32; ++l)
      L[32 * j + l] = static_cast<uint8_t>(std::clamp(nearest_int((x[32 * j + l] + dm) / d), 0, nmax));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// The steps the reference and the weighted quantizers share (kquant_layout.h).

namespace kquant {

void finish_q2_K(const float* x, uint8_t* L, BlockQ2_K& y) {
  const float d_all = fp16_to_fp32(y.d);
  const float dmin_all = fp16_to_fp32(y.dmin);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * static_cast<float>(y.scales[j] & 0x0f);
    if (d == 0.0f) continue;
    const float m = dmin_all * static_cast<float>(y.scales[j] >> 4);
    for (int l = 0; l < 16; ++l)
      L[16 * j + l] = static_cast<uint8_t>(std::clamp(nearest_int((x[16 * j + l] + m) / d), 0, 3));
  }
  pack_2bit(L, y.qs);
}

void finish_q3_K(const float* x, int8_t* L, BlockQ3_K& y) {
  int8_t sc[16];
  get_scales_q3_K(y.scales, sc);
  const float d_all = fp16_to_fp32(y.d);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * static_cast<float>(sc[j]);
    if (d == 0.0f) continue;
    for (int l = 0; l < 16; ++l)
      L[16 * j + l] = static_cast<int8_t>(std::clamp(nearest_int(x[16 * j + l] / d), -4, 3) + 4);
  }
  // Codes 0..7: the high bit of value v goes to bit v / 32 of hmask[v % 32], the low 2 bits as q2_K's.
  std::memset(y.hmask, 0, sizeof(y.hmask));
  uint8_t low[QK_K];
  for (int v = 0; v < QK_K; ++v) {
    if (L[v] > 3) y.hmask[v % 32] |= static_cast<uint8_t>(1u << (v / 32));
    low[v] = static_cast<uint8_t>(L[v] > 3 ? L[v] - 4 : L[v]);
  }
  pack_2bit(low, y.qs);
}

void finish_q4_K(const float* x, uint8_t* L, BlockQ4_K& y) {
  requantize_q45_K(x, 15, L, y);
  // Groups 2i and 2i+1 share qs[32i..32i+31], low and high nibble.
  for (int i = 0; i < 4; ++i)
    for (int l = 0; l < 32; ++l)
      y.qs[32 * i + l] = static_cast<uint8_t>(L[64 * i + l] | (L[64 * i + 32 + l] << 4));
}

void finish_q5_K(const float* x, uint8_t* L, BlockQ5_K& y) {
  requantize_q45_K(x, 31, L, y);
  // As q4_K for the low 4 bits; the fifth bit of value 32g + l goes to bit g of qh[l].
  std::memset(y.qh, 0, sizeof(y.qh));
  for (int i = 0; i < 4; ++i)
    for (int l = 0; l < 32; ++l) {
      const uint8_t lo = L[64 * i + l];
      const uint8_t hi = L[64 * i + 32 + l];
      y.qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * i)) | ((hi >> 4) << (2 * i + 1)));
      y.qs[32 * i + l] = static_cast<uint8_t>((lo & 0x0f) | ((hi & 0x0f) << 4));
    }
}

void finish_q6_K(const float* x, const float* scales, float max_scale, float max_abs_scale, int8_t* L,
                 BlockQ6_K& y) {
  if (max_abs_scale < quant::kGroupMaxEps) {
    std::memset(&y, 0, sizeof(y));
    return;
  }
  // The group scale of largest magnitude maps to -128 (the int8 end with room), the others clip at 127.
  const float iscale = -128.0f / max_scale;
  y.d = fp32_to_fp16(1 / iscale);
  for (int j = 0; j < 16; ++j)
    y.scales[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[j])));
  const float d_all = fp16_to_fp32(y.d);
  for (int j = 0; j < 16; ++j) {
    const float d = d_all * static_cast<float>(y.scales[j]);
    if (d == 0.0f) continue;
    for (int l = 0; l < 16; ++l)
      L[16 * j + l] = static_cast<int8_t>(std::clamp(nearest_int(x[16 * j + l] / d), -32, 31) + 32);
  }
  // The layout dequantize_row_q6_K reads (blocks.cpp): per half of 128, ql[l] / ql[l + 32] hold the low
  // nibbles of values l, l + 64 / l + 32, l + 96; qh[l] the top 2 bits of l, l + 32, l + 64, l + 96.
  for (int h = 0; h < 2; ++h) {
    const int8_t* v = L + 128 * h;
    uint8_t* ql = y.ql + 64 * h;
    uint8_t* qh = y.qh + 32 * h;
    for (int l = 0; l < 32; ++l) {
      ql[l] = static_cast<uint8_t>((v[l] & 0x0f) | ((v[l + 64] & 0x0f) << 4));
      ql[l + 32] = static_cast<uint8_t>((v[l + 32] & 0x0f) | ((v[l + 96] & 0x0f) << 4));
      qh[l] = static_cast<uint8_t>((v[l] >> 4) | ((v[l + 32] >> 4) << 2) | ((v[l + 64] >> 4) << 4) |
                                   ((v[l + 96] >> 4) << 6));
    }
  }
}

}  // namespace kquant

// ---------------------------------------------------------------------------------------------------
// Reference quantizers (ggml_quantize_chunk's bytes without an imatrix).

void quantize_row_q2_K_ref(const float* x, BlockQ2_K* y, int64_t n) {
  check_row(n);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    uint8_t L[QK_K];
    uint8_t Laux[16];
    float weights[16];
    float scales[16];
    float mins[16];
    float max_scale = 0.0f;
    float max_min = 0.0f;
    for (int j = 0; j < 16; ++j) {
      // 2-bit codes: ggml fits each group of 16 by weighted absolute error, weights |x|.
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = quant::make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f,
                                          15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    // Group scales (low nibble) and mins (high nibble) in 4 bits each against their largest value; the
    // int -> uint8_t stores wrap modulo 256 as ggml's do.
    if (max_scale > 0) {
      const float iscale = 15.0f / max_scale;
      for (int j = 0; j < 16; ++j) y[i].scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
      y[i].d = fp32_to_fp16(max_scale / 15.0f);
    } else {
      std::memset(y[i].scales, 0, sizeof(y[i].scales));
      y[i].d = fp32_to_fp16(0.0f);
    }
    if (max_min > 0) {
      const float iscale = 15.0f / max_min;
      for (int j = 0; j < 16; ++j)
        y[i].scales[j] |= static_cast<uint8_t>(static_cast<unsigned>(nearest_int(iscale * mins[j])) << 4);
      y[i].dmin = fp32_to_fp16(max_min / 15.0f);
    } else {
      y[i].dmin = fp32_to_fp16(0.0f);
    }
    kquant::finish_q2_K(x, L, y[i]);
  }
}

void quantize_row_q3_K_ref(const float* x, BlockQ3_K* y, int64_t n) {
  check_row(n);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    int8_t L[QK_K];
    float scales[16];
    float max_scale = 0.0f;
    float amax = 0.0f;
    for (int j = 0; j < 16; ++j) {
      scales[j] = quant::make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
      const float a = std::fabs(scales[j]);
      if (a > amax) {
        amax = a;
        max_scale = scales[j];
      }
    }
    // Signed 6-bit group scales: the one of largest magnitude maps to -32, the end of [-32, 31] with room.
    int8_t codes[16] = {};
    if (max_scale != 0.0f) {
      const float iscale = -32.0f / max_scale;
      for (int j = 0; j < 16; ++j) {
        const auto l = static_cast<int8_t>(nearest_int(iscale * scales[j]));  // ggml's int8_t, then clamp
        codes[j] = static_cast<int8_t>(std::clamp<int>(l, -32, 31) + 32);
      }
      kquant::set_scales_q3_K(codes, y[i].scales);
      y[i].d = fp32_to_fp16(1 / iscale);
    } else {
      std::memset(y[i].scales, 0, sizeof(y[i].scales));
      y[i].d = fp32_to_fp16(0.0f);
    }
    kquant::finish_q3_K(x, L, y[i]);
  }
}

void quantize_row_q4_K_ref(const float* x, BlockQ4_K* y, int64_t n) {
  check_row(n);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    uint8_t L[QK_K];
    // ggml's q4_K search: 21 iscales from 14 to 16 codes per range.
    search_q45_K(x, 15, -1.0f, 0.1f, 20, L, y[i]);
    kquant::finish_q4_K(x, L, y[i]);
  }
}

void quantize_row_q5_K_ref(const float* x, BlockQ5_K* y, int64_t n) {
  check_row(n);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    uint8_t L[QK_K];
    // ggml's q5_K search: 16 iscales from 30.5 to 32 codes per range.
    search_q45_K(x, 31, -0.5f, 0.1f, 15, L, y[i]);
    kquant::finish_q5_K(x, L, y[i]);
  }
}

void quantize_row_q6_K_ref(const float* x, BlockQ6_K* y, int64_t n) {
  check_row(n);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    int8_t L[QK_K];
    float scales[16];
    float max_scale = 0.0f;
    float max_abs_scale = 0.0f;
    for (int j = 0; j < 16; ++j) {
      scales[j] = quant::make_qx_quants(16, 32, x + 16 * j, L + 16 * j, 1, nullptr);
      const float a = std::fabs(scales[j]);
      if (a > max_abs_scale) {
        max_abs_scale = a;
        max_scale = scales[j];
      }
    }
    kquant::finish_q6_K(x, scales, max_scale, max_abs_scale, L, y[i]);
  }
}

// ---------------------------------------------------------------------------------------------------
// Dequantizers (products in float, in ggml's order: d * scale first, then * q, then - d_min * min).

void dequantize_row_q2_K(const BlockQ2_K* x, float* y, int64_t n) {
  check_row(n);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const float dmin = fp16_to_fp32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    const uint8_t* sc = x[i].scales;
    // Two halves of 128 values; in each, qs[l] (l < 32) holds values l, l+32, l+64, l+96 in its bit
    // pairs 0-1, 2-3, 4-5, 6-7. Groups of 16 run in value order, so group g covers y[16g..16g+15].
    for (int64_t half = 0; half < QK_K / 128; ++half) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int64_t part = 0; part < 2; ++part) {
          const float dl = d * static_cast<float>(*sc & 0x0f);
          const float ml = dmin * static_cast<float>(*sc >> 4);
          ++sc;
          for (int64_t l = 0; l < 16; ++l)
            *y++ = dl * static_cast<float>((q[16 * part + l] >> shift) & 3) - ml;
        }
      }
      q += 32;
    }
  }
}

void dequantize_row_q3_K(const BlockQ3_K* x, float* y, int64_t n) {
  check_row(n);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i) {
    const float d_all = fp16_to_fp32(x[i].d);
    int8_t scales[16];
    kquant::get_scales_q3_K(x[i].scales, scales);
    const uint8_t* q = x[i].qs;
    const int8_t* sc = scales;
    // The low 2 bits are laid out as q2_K's. The high bit of value 128h + 32j + l sits in bit 4h + j of
    // hmask[l]; a clear high bit means q - 4 (codes -4..3).
    int hbit = 0;
    for (int64_t half = 0; half < QK_K / 128; ++half) {
      for (int shift = 0; shift < 8; shift += 2, ++hbit) {
        for (int64_t part = 0; part < 2; ++part) {
          const float dl = d_all * static_cast<float>(*sc++);
          for (int64_t l = 0; l < 16; ++l) {
            const int64_t k = 16 * part + l;
            const int low = (q[k] >> shift) & 3;
            const int high = (x[i].hmask[k] >> hbit) & 1;
            *y++ = dl * static_cast<float>(low - (high ? 0 : 4));
          }
        }
      }
      q += 32;
    }
  }
}

void dequantize_row_q4_K(const BlockQ4_K* x, float* y, int64_t n) {
  check_row(n);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const float dmin = fp16_to_fp32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int g = 0; g < 8; g += 2, q += 32) {
      uint8_t sc = 0;
      uint8_t m = 0;
      kquant::get_scale_min_k4(g, x[i].scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc);
      const float m1 = dmin * static_cast<float>(m);
      kquant::get_scale_min_k4(g + 1, x[i].scales, &sc, &m);
      const float d2 = d * static_cast<float>(sc);
      const float m2 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0x0f) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void dequantize_row_q5_K(const BlockQ5_K* x, float* y, int64_t n) {
  check_row(n);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const float dmin = fp16_to_fp32(x[i].dmin);
    const uint8_t* ql = x[i].qs;
    const uint8_t* qh = x[i].qh;
    // As q4_K, plus the fifth bit of value 32g + l (group g) in bit g of qh[l].
    for (int g = 0; g < 8; g += 2, ql += 32) {
      uint8_t sc = 0;
      uint8_t m = 0;
      kquant::get_scale_min_k4(g, x[i].scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc);
      const float m1 = dmin * static_cast<float>(m);
      kquant::get_scale_min_k4(g + 1, x[i].scales, &sc, &m);
      const float d2 = d * static_cast<float>(sc);
      const float m2 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l)
        *y++ = d1 * static_cast<float>((ql[l] & 0x0f) + (((qh[l] >> g) & 1) << 4)) - m1;
      for (int l = 0; l < 32; ++l)
        *y++ = d2 * static_cast<float>((ql[l] >> 4) + (((qh[l] >> (g + 1)) & 1) << 4)) - m2;
    }
  }
}

}  // namespace qe
