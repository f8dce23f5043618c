// Importance-weighted quantizers, following ggml-quants.c (quantize_row_q4_0_impl, quantize_row_q4_1_impl
// and their helpers make_qx_quants, make_qkx3_quants) operation by operation in float: as for blocks.cpp,
// any other order of operations, double arithmetic or a fused multiply-add moves values that sit on a
// rounding boundary, and the search below then picks another candidate scale and other codes.
#include "formats/blocks_weighted.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "formats/error.h"
#include "formats/quant_search.h"
#include "formats/exact_float.h"  // after the other headers: no fused multiply-add below

namespace qe {
namespace {

using quant::make_qkx3_quants;
using quant::make_qx_quants;
using quant::row_sigma2;

template <int64_t QK>
void block_weights(const float* xb, const float* qw, float sigma2, float* weight) {
  for (int64_t j = 0; j < QK; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
}

// Element j in the low nibble of byte j, element j + 16 in the high nibble (blocks.h).
template <class Code>
void pack_nibbles(const Code* L, uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
}

}  // namespace

void quantize_row_q4_0_weighted(const float* x, BlockQ4_0* y, int64_t n, const float* quant_weights) {
  if (!quant_weights) {
    quantize_row_q4_0_ref(x, y, n);
    return;
  }
  QE_CHECK(n >= 0 && n % QK4_0 == 0);
  if (n == 0) return;
  static_assert(QK4_0 == 32);
  const float sigma2 = row_sigma2(x, n);
  float weight[QK4_0];
  int8_t L[QK4_0];
  for (int64_t ib = 0; ib < n / QK4_0; ++ib) {
    const float* xb = x + ib * QK4_0;
    block_weights<QK4_0>(xb, quant_weights + ib * QK4_0, sigma2, weight);
    // nmax 8: codes 0..15 around 8, as in the plain q4_0.
    const float d = make_qx_quants(QK4_0, 8, xb, L, 1, weight);
    y[ib].d = fp32_to_fp16(d);
    pack_nibbles(L, y[ib].qs);
  }
}

void quantize_row_q4_1_weighted(const float* x, BlockQ4_1* y, int64_t n, const float* quant_weights) {
  if (!quant_weights) {
    quantize_row_q4_1_ref(x, y, n);
    return;
  }
  QE_CHECK(n >= 0 && n % QK4_1 == 0);
  if (n == 0) return;
  static_assert(QK4_1 == 32);
  const float sigma2 = row_sigma2(x, n);
  float weight[QK4_1];
  uint8_t L[QK4_1];
  uint8_t Laux[QK4_1];
  for (int64_t ib = 0; ib < n / QK4_1; ++ib) {
    const float* xb = x + ib * QK4_1;
    block_weights<QK4_1>(xb, quant_weights + ib * QK4_1, sigma2, weight);
    // ggml's parameters for q4_1 (and q4_K): 37 iscales from (15 - 0.9) to (15 + 0.9) codes per range.
    float neg_min = 0.0f;
    const float d = make_qkx3_quants(QK4_1, 15, xb, weight, L, &neg_min, Laux, -0.9f, 0.05f, 36, false);
    y[ib].d = fp32_to_fp16(d);
    y[ib].m = fp32_to_fp16(-neg_min);
    pack_nibbles(L, y[ib].qs);
  }
}

}  // namespace qe
