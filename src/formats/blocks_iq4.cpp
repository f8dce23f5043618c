// iq4_nl / iq4_xs: 4-bit codes into ggml's non-linear table kIQ4NLValues. Both quantizers are ggml-quants.c's
// quantize_row_iq4_nl_impl (one search, two block shapes), followed operation by operation in float: the
// bytes are the contract (blocks.cpp says why the order of operations matters).
//
// ggml has two entry points without importances. ggml_quantize_chunk (what llama-quantize runs, imatrix
// NULL) calls quantize_iq4_{nl,xs}, which runs the search with weights x^2 and 7 tries either side; the
// quantize_row_iq4_nl_ref "from_float" skips the tries for iq4_nl. Files are what matters, so our _ref is
// the ggml_quantize_chunk bytes: weighted(nullptr).
#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "formats/blocks_weighted.h"
#include "formats/error.h"
#include "formats/quant_search.h"
#include "formats/exact_float.h"  // after the other headers: no fused multiply-add below

namespace qe {
namespace {

inline void check_row(int64_t n, int64_t block) {
  QE_CHECK(n >= 0 && n % block == 0);
}

// The index of the table level nearest to v (the upper one on a tie), by bisection over the sorted
// levels as ggml's best_index_int8 does. A NaN compares false everywhere and ends on the last level, as
// in ggml.
int nearest_level(float v) {
  constexpr int kLevels = 16;
  const int8_t* val = kIQ4NLValues;
  if (v <= val[0]) return 0;
  if (v >= val[kLevels - 1]) return kLevels - 1;
  int lo = 0;
  int hi = kLevels - 1;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (v < val[mid]) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return v - val[hi - 1] < val[hi] - v ? hi - 1 : hi;
}

// Group size of both formats: iq4_nl is one group per block, iq4_xs eight groups under one fp16 scale.
constexpr int kGroup = 32;
// Scales tried either side of the one that maps the group's extreme value onto the table's end (ggml's
// ntry for quantize_iq4_nl / quantize_iq4_xs).
constexpr int kTries = 7;

// The weighted least-squares scale of one group of 32: codes chosen for the scale that maps the signed
// extreme onto -127 and for 2 * kTries + 1 neighbouring scales, each refit as sum(w q x) / sum(w q^2);
// the fit with the largest sum(w q x)^2 / sum(w q^2) wins. Writes the winning codes of the first
// candidate only (ggml recomputes the final codes from the stored scale). Returns 0 for a zero group.
float group_scale(const float* xb, const float* weight, uint8_t* L) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int j = 0; j < kGroup; ++j) {
    const float ax = std::fabs(xb[j]);
    if (ax > amax) {
      amax = ax;
      max = xb[j];
    }
  }
  if (amax < quant::kGroupMaxEps) return 0.0f;

  const auto v0 = static_cast<float>(kIQ4NLValues[0]);
  float d = -max / v0;  // the extreme value lands on the table's far-negative end
  float id = 1 / d;
  float sumqx = 0.0f;
  float sumq2 = 0.0f;
  for (int j = 0; j < kGroup; ++j) {
    const int l = nearest_level(id * xb[j]);
    L[j] = static_cast<uint8_t>(l);
    const auto q = static_cast<float>(kIQ4NLValues[l]);
    const float w = weight[j];
    sumqx += w * q * xb[j];
    sumq2 += w * q * q;
  }
  d = sumqx / sumq2;
  float best = d * sumqx;
  for (int itry = -kTries; itry <= kTries; ++itry) {
    id = static_cast<float>(itry + kIQ4NLValues[0]) / max;
    sumqx = 0.0f;
    sumq2 = 0.0f;
    for (int j = 0; j < kGroup; ++j) {
      const auto q = static_cast<float>(kIQ4NLValues[nearest_level(id * xb[j])]);
      const float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

// ggml's importance of each value of a group: qw * sqrt(sigma2 + x^2) with importances, x^2 without.
void group_weights(const float* xb, const float* qw, float sigma2, float* weight) {
  if (qw) {
    for (int j = 0; j < kGroup; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
  } else {
    for (int j = 0; j < kGroup; ++j) weight[j] = xb[j] * xb[j];
  }
}

// Twice the mean square of a super-block (not of the row, unlike q4_0 .. q5_1's weighting).
template <int SuperBlock>
float super_block_sigma2(const float* x) {
  float sigma2 = 0.0f;
  for (int j = 0; j < SuperBlock; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.0f / SuperBlock;
  return sigma2;
}

// Nibble order as q4_0 within each group of 32.
void pack_groups(const uint8_t* L, int n, uint8_t* qs) {
  for (int g = 0; g < n / kGroup; ++g) {
    for (int j = 0; j < 16; ++j) {
      qs[16 * g + j] = static_cast<uint8_t>(L[kGroup * g + j] | (L[kGroup * g + 16 + j] << 4));
    }
  }
}

void quantize_block_iq4_nl(const float* x, BlockIQ4_NL& y, const float* qw) {
  static_assert(QK4_NL == kGroup);
  float weight[kGroup];
  uint8_t L[kGroup];
  const float sigma2 = super_block_sigma2<kGroup>(x);
  group_weights(x, qw, sigma2, weight);
  const float d = group_scale(x, weight, L);
  y.d = fp32_to_fp16(d);
  // The codes come from the unrounded scale (not the stored fp16 one); a zero group gets id 0, so every
  // code is the level nearest 0 (index 8, value 1), as in ggml.
  const float id = d != 0.0f ? 1 / d : 0.0f;
  for (int j = 0; j < kGroup; ++j) L[j] = static_cast<uint8_t>(nearest_level(id * x[j]));
  pack_groups(L, kGroup, y.qs);
}

void quantize_block_iq4_xs(const float* x, BlockIQ4_XS& y, const float* qw) {
  constexpr int kGroups = QK_K / kGroup;
  float weight[kGroup];
  float scales[kGroups];
  uint8_t L[QK_K];
  const float sigma2 = super_block_sigma2<QK_K>(x);

  float max_scale = 0.0f;
  float amax_scale = 0.0f;
  for (int g = 0; g < kGroups; ++g) {
    group_weights(x + kGroup * g, qw ? qw + kGroup * g : nullptr, sigma2, weight);
    scales[g] = group_scale(x + kGroup * g, weight, L + kGroup * g);
    const float abs_d = std::fabs(scales[g]);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = scales[g];
    }
  }

  // Group scales become 6-bit signed multiples (-32..31) of d; the largest maps to -32 exactly. An
  // all-zero block gets d = -0 (fp16 0x8000), as in ggml.
  const float d = -max_scale / 32;
  y.d = fp32_to_fp16(d);
  const float id = d != 0.0f ? 1 / d : 0.0f;
  y.scales_h = 0;
  std::memset(y.scales_l, 0, sizeof(y.scales_l));
  for (int g = 0; g < kGroups; ++g) {
    int l = quant::nearest_int(id * scales[g]);
    l = l < -32 ? -32 : (l > 31 ? 31 : l);
    // The codes are refit to the group's rounded scale (d * l in float, not the fp16 d).
    const float dl = d * static_cast<float>(l);
    const float idl = dl != 0.0f ? 1 / dl : 0.0f;
    for (int j = 0; j < kGroup; ++j)
      L[kGroup * g + j] = static_cast<uint8_t>(nearest_level(idl * x[kGroup * g + j]));
    const auto ls = static_cast<unsigned>(l + 32);
    y.scales_l[g / 2] = static_cast<uint8_t>(y.scales_l[g / 2] | ((ls & 0xfu) << (4 * (g % 2))));
    y.scales_h = static_cast<uint16_t>(y.scales_h | ((ls >> 4) << (2 * g)));
  }
  pack_groups(L, QK_K, y.qs);
}

}  // namespace

void quantize_row_iq4_nl_weighted(const float* x, BlockIQ4_NL* y, int64_t n, const float* quant_weights) {
  check_row(n, QK4_NL);
  for (int64_t i = 0; i < n / QK4_NL; ++i) {
    quantize_block_iq4_nl(x + i * QK4_NL, y[i], quant_weights ? quant_weights + i * QK4_NL : nullptr);
  }
}

void quantize_row_iq4_xs_weighted(const float* x, BlockIQ4_XS* y, int64_t n, const float* quant_weights) {
  check_row(n, QK_K);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    quantize_block_iq4_xs(x + i * QK_K, y[i], quant_weights ? quant_weights + i * QK_K : nullptr);
  }
}

void quantize_row_iq4_nl_ref(const float* x, BlockIQ4_NL* y, int64_t n) {
  quantize_row_iq4_nl_weighted(x, y, n, nullptr);
}

void quantize_row_iq4_xs_ref(const float* x, BlockIQ4_XS* y, int64_t n) {
  quantize_row_iq4_xs_weighted(x, y, n, nullptr);
}

void dequantize_row_iq4_nl(const BlockIQ4_NL* x, float* y, int64_t n) {
  check_row(n, QK4_NL);
  for (int64_t i = 0; i < n / QK4_NL; ++i, y += QK4_NL) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(kIQ4NLValues[x[i].qs[j] & 0x0f]);
      y[j + 16] = d * static_cast<float>(kIQ4NLValues[x[i].qs[j] >> 4]);
    }
  }
}

void dequantize_row_iq4_xs(const BlockIQ4_XS* x, float* y, int64_t n) {
  check_row(n, QK_K);
  for (int64_t i = 0; i < n / QK_K; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const uint8_t* qs = x[i].qs;
    for (int g = 0; g < QK_K / kGroup; ++g, y += kGroup, qs += 16) {
      const int ls =
          ((x[i].scales_l[g / 2] >> (4 * (g % 2))) & 0xf) | (((x[i].scales_h >> (2 * g)) & 3) << 4);
      const float dl = d * static_cast<float>(ls - 32);
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * static_cast<float>(kIQ4NLValues[qs[j] & 0x0f]);
        y[j + 16] = dl * static_cast<float>(kIQ4NLValues[qs[j] >> 4]);
      }
    }
  }
}

}  // namespace qe
