// Importance-weighted k-quants: ggml-quants.c's quantize_row_q{2..6}_K_impl, what ggml_quantize_chunk runs
// when llama-quantize hands it an imatrix row. Followed operation by operation in float, as blocks.cpp and
// blocks_kquants.cpp are: the searches below pick among candidate scales by comparing float sums, so
// another order of operations (or an FMA) picks other codes.
//
// Common shape: each group's (scale[, min]) comes from a search weighted by importance * sqrt(sigma2 + x^2),
// sigma2 being the super-block's mean square (times 2 for q3_K..q5_K); the group scales are then
// quantized by a second search weighted by each group's total weight, and the codes recomputed against
// the decoded scales (kquant::finish_*). q6_K uses the raw importances in its one search.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "formats/blocks_weighted.h"
#include "formats/error.h"
#include "formats/kquant_layout.h"
#include "formats/quant_search.h"
#include "formats/exact_float.h"  // after the other headers: no fused multiply-add below

namespace qe {
namespace {

inline void check_row(int64_t n) {
  QE_CHECK(n >= 0 && n % QK_K == 0);
}

// Sum of x^2 over one super-block, in ggml's order.
inline float block_sum_x2(const float* x) {
  float sum = 0.0f;
  for (int64_t j = 0; j < QK_K; ++j) sum += x[j] * x[j];
  return sum;
}

// weight[l] = qw[l] * sqrt(sigma2 + x[l]^2) over one group; returns the group's total weight.
inline float group_weights(const float* x, const float* qw, float sigma2, int n, float* weight) {
  float sum = 0.0f;
  for (int l = 0; l < n; ++l) weight[l] = qw[l] * std::sqrt(sigma2 + x[l] * x[l]);
  for (int l = 0; l < n; ++l) sum += weight[l];
  return sum;
}

// q4_K / q5_K: 8 groups of 32 searched with (nmax, -0.9, 0.05, 36 steps), then 6-bit scales and mins by
// make_qp_quants. clamp63: q5_K clamps the codes to 63, q4_K does not (a wrapped negative code then
// spills into the neighbouring fields, as in ggml).
template <class Block>
void weighted_q45_K(const float* x, const float* qw, int nmax, bool clamp63, uint8_t* L, Block& y) {
  const float sigma2 = 2 * block_sum_x2(x) / QK_K;
  float weights[32];
  float sw[8];
  float scales[8];
  float mins[8];
  uint8_t Laux[32];
  for (int j = 0; j < 8; ++j) {
    sw[j] = group_weights(x + 32 * j, qw + 32 * j, sigma2, 32, weights);
    scales[j] = quant::make_qkx3_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f,
                                        0.05f, 36, false);
  }
  uint8_t ls[8];
  uint8_t lm[8];
  const float d_block = quant::make_qp_quants(8, 63, scales, ls, sw);
  const float m_block = quant::make_qp_quants(8, 63, mins, lm, sw);
  if (clamp63)
    for (int j = 0; j < 8; ++j) {
      ls[j] = std::min<uint8_t>(63, ls[j]);
      lm[j] = std::min<uint8_t>(63, lm[j]);
    }
  kquant::set_scales_mins_k4(ls, lm, y.scales);
  y.d = fp32_to_fp16(d_block);
  y.dmin = fp32_to_fp16(m_block);
}

}  // namespace

void quantize_row_q2_K_weighted(const float* x, BlockQ2_K* y, int64_t n, const float* quant_weights) {
  if (!quant_weights) {
    quantize_row_q2_K_ref(x, y, n);
    return;
  }
  check_row(n);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    const float* qw = quant_weights + i * QK_K;
    const float sigma2 = block_sum_x2(x) / QK_K;  // q2_K alone does not double it
    uint8_t L[QK_K];
    uint8_t Laux[16];
    float weight[16];
    float sw[16];
    float scales[16];
    float mins[16];
    for (int j = 0; j < 16; ++j) {
      sw[j] = group_weights(x + 16 * j, qw + 16 * j, sigma2, 16, weight);
      scales[j] = quant::make_qkx3_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f,
                                          36, false);
    }
    uint8_t ls[16];
    uint8_t lm[16];
    const float dm = quant::make_qp_quants(16, 15, scales, ls, sw);
    const float mm = quant::make_qp_quants(16, 15, mins, lm, sw);
    y[i].d = fp32_to_fp16(dm);
    y[i].dmin = fp32_to_fp16(mm);
    for (int j = 0; j < 16; ++j) y[i].scales[j] = static_cast<uint8_t>(ls[j] | (lm[j] << 4));
    kquant::finish_q2_K(x, L, y[i]);
  }
}

void quantize_row_q3_K_weighted(const float* x, BlockQ3_K* y, int64_t n, const float* quant_weights) {
  if (!quant_weights) {
    quantize_row_q3_K_ref(x, y, n);
    return;
  }
  check_row(n);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    const float* qw = quant_weights + i * QK_K;
    const float sigma2 = 2 * block_sum_x2(x) / QK_K;
    int8_t L[QK_K];
    float weight[16];
    float sw[16];
    float scales[16];
    for (int j = 0; j < 16; ++j) {
      sw[j] = group_weights(x + 16 * j, qw + 16 * j, sigma2, 16, weight);
      scales[j] = quant::make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
    }
    // The signed group scales to 6-bit codes (offset 32) by the same symmetric search, weighted by group.
    int8_t ls[16];
    const float d_block = quant::make_qx_quants(16, 32, scales, ls, 1, sw);
    kquant::set_scales_q3_K(ls, y[i].scales);
    y[i].d = fp32_to_fp16(d_block);
    kquant::finish_q3_K(x, L, y[i]);
  }
}

void quantize_row_q4_K_weighted(const float* x, BlockQ4_K* y, int64_t n, const float* quant_weights) {
  if (!quant_weights) {
    quantize_row_q4_K_ref(x, y, n);
    return;
  }
  check_row(n);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    uint8_t L[QK_K];
    weighted_q45_K(x, quant_weights + i * QK_K, 15, false, L, y[i]);
    kquant::finish_q4_K(x, L, y[i]);
  }
}

void quantize_row_q5_K_weighted(const float* x, BlockQ5_K* y, int64_t n, const float* quant_weights) {
  if (!quant_weights) {
    quantize_row_q5_K_ref(x, y, n);
    return;
  }
  check_row(n);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    uint8_t L[QK_K];
    weighted_q45_K(x, quant_weights + i * QK_K, 31, true, L, y[i]);
    kquant::finish_q5_K(x, L, y[i]);
  }
}

void quantize_row_q6_K_weighted(const float* x, BlockQ6_K* y, int64_t n, const float* quant_weights) {
  if (!quant_weights) {
    quantize_row_q6_K_ref(x, y, n);
    return;
  }
  check_row(n);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    int8_t L[QK_K];
    float scales[16];
    float max_scale = 0.0f;
    float max_abs_scale = 0.0f;
    for (int j = 0; j < 16; ++j) {
      // The raw importances: ggml's sigma2 widening is commented out for q6_K.
      scales[j] = quant::make_qx_quants(16, 32, x + 16 * j, L + 16 * j, 1, quant_weights + i * QK_K + 16 * j);
      const float a = std::fabs(scales[j]);
      if (a > max_abs_scale) {
        max_abs_scale = a;
        max_scale = scales[j];
      }
    }
    kquant::finish_q6_K(x, scales, max_scale, max_abs_scale, L, y[i]);
  }
}

}  // namespace qe
