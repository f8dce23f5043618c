// q5_0 / q5_1: the q4_0 / q4_1 blocks with a fifth bit per value kept apart in qh. The quantizers follow
// ggml-quants.c (quantize_row_q5_{0,1}_ref, and quantize_row_q5_{0,1}_impl for importances) operation by
// operation in float: the bytes are the contract (blocks.cpp says why the order of operations matters).
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>

#include "formats/blocks.h"
#include "formats/blocks_weighted.h"
#include "formats/error.h"
#include "formats/quant_search.h"
#include "formats/exact_float.h"  // after the other headers: no fused multiply-add below

namespace qe {
namespace {

static_assert(QK5_0 == 32 && QK5_1 == 32, "the qh bit masks below assume 32 values per block");

inline void check_row(int64_t n, int64_t block) {
  QE_CHECK(n >= 0 && n % block == 0);
}

// ggml's (int8_t) / (uint8_t) casts of a float: cvttss2si on x86-64 (INT32_MIN for NaN and out-of-range
// values), then the low byte. Spelled out so NaN/Inf blocks stay defined and match ggml's x86 bytes
// (blocks.cpp's trunc_to_i8 has the same reasoning).
inline int8_t trunc_to_i8(float v) {
  const int32_t i = (v >= -2147483648.0f && v < 2147483648.0f) ? static_cast<int32_t>(v) : INT32_MIN;
  return static_cast<int8_t>(i);
}

// Five-bit codes of one block: the low nibbles pair element j with j + 16 as in q4_0, and bit 4 of
// element j goes to bit j of the little-endian word qh. Only the low five bits of each code are kept,
// which is what ggml's masks do to the (rare) out-of-range codes of NaN blocks.
template <class Code>
void pack_q5(const Code* L, uint8_t* qs, uint8_t* qh_bytes) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const auto q0 = static_cast<uint8_t>(L[j]);
    const auto q1 = static_cast<uint8_t>(L[j + 16]);
    qs[j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
    qh |= static_cast<uint32_t>((q0 >> 4) & 1u) << j;
    qh |= static_cast<uint32_t>((q1 >> 4) & 1u) << (j + 16);
  }
  // The file stores qh little-endian; memcpy of the native word is what ggml does (x86, arm64).
  std::memcpy(qh_bytes, &qh, sizeof(qh));
}

// The 32 five-bit codes of one block, in element order.
inline void unpack_q5(const uint8_t* qs, const uint8_t* qh_bytes, int* q) {
  uint32_t qh = 0;
  std::memcpy(&qh, qh_bytes, sizeof(qh));
  for (int j = 0; j < 16; ++j) {
    q[j] = (qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1u) << 4);
    q[j + 16] = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
  }
}

template <int64_t QK>
void block_weights(const float* xb, const float* qw, float sigma2, float* weight) {
  for (int64_t j = 0; j < QK; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
}

}  // namespace

void quantize_row_q5_0_ref(const float* x, BlockQ5_0* y, int64_t n) {
  check_row(n, QK5_0);
  const int64_t nb = n / QK5_0;
  int8_t L[QK5_0];
  for (int64_t i = 0; i < nb; ++i, x += QK5_0) {
    // As q4_0: the signed value of largest magnitude maps exactly to code 0 (d * -16); the first one wins
    // ties and a NaN never does.
    float amax = 0.0f;
    float max = 0.0f;
    for (int64_t j = 0; j < QK5_0; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    // Truncating x * id + 16.5 rounds halves up; the far side of the range clips at 31.
    for (int64_t j = 0; j < QK5_0; ++j) L[j] = std::min<int8_t>(31, trunc_to_i8(x[j] * id + 16.5f));
    pack_q5(L, y[i].qs, y[i].qh);
  }
}

void quantize_row_q5_1_ref(const float* x, BlockQ5_1* y, int64_t n) {
  check_row(n, QK5_1);
  const int64_t nb = n / QK5_1;
  int8_t L[QK5_1];
  for (int64_t i = 0; i < nb; ++i, x += QK5_1) {
    float min = std::numeric_limits<float>::max();
    float max = -std::numeric_limits<float>::max();
    for (int64_t j = 0; j < QK5_1; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(min);
    // No clip at 31 (unlike q5_0): (max - min) * id + 0.5 stays below 32 for finite input.
    for (int64_t j = 0; j < QK5_1; ++j) L[j] = trunc_to_i8((x[j] - min) * id + 0.5f);
    pack_q5(L, y[i].qs, y[i].qh);
  }
}

void quantize_row_q5_0_weighted(const float* x, BlockQ5_0* y, int64_t n, const float* quant_weights) {
  if (!quant_weights) {
    quantize_row_q5_0_ref(x, y, n);
    return;
  }
  check_row(n, QK5_0);
  if (n == 0) return;
  const float sigma2 = quant::row_sigma2(x, n);
  float weight[QK5_0];
  int8_t L[QK5_0];
  for (int64_t ib = 0; ib < n / QK5_0; ++ib) {
    const float* xb = x + ib * QK5_0;
    block_weights<QK5_0>(xb, quant_weights + ib * QK5_0, sigma2, weight);
    // nmax 16: codes 0..31 around 16, as in the plain q5_0.
    const float d = quant::make_qx_quants(QK5_0, 16, xb, L, 1, weight);
    y[ib].d = fp32_to_fp16(d);
    pack_q5(L, y[ib].qs, y[ib].qh);
  }
}

void quantize_row_q5_1_weighted(const float* x, BlockQ5_1* y, int64_t n, const float* quant_weights) {
  if (!quant_weights) {
    quantize_row_q5_1_ref(x, y, n);
    return;
  }
  check_row(n, QK5_1);
  if (n == 0) return;
  const float sigma2 = quant::row_sigma2(x, n);
  float weight[QK5_1];
  uint8_t L[QK5_1];
  uint8_t Laux[QK5_1];
  for (int64_t ib = 0; ib < n / QK5_1; ++ib) {
    const float* xb = x + ib * QK5_1;
    block_weights<QK5_1>(xb, quant_weights + ib * QK5_1, sigma2, weight);
    // ggml's parameters for q5_1: q4_1's search (37 iscales over +-0.9 codes per range) with nmax 31.
    float neg_min = 0.0f;
    const float d =
        quant::make_qkx3_quants(QK5_1, 31, xb, weight, L, &neg_min, Laux, -0.9f, 0.05f, 36, false);
    y[ib].d = fp32_to_fp16(d);
    y[ib].m = fp32_to_fp16(-neg_min);
    pack_q5(L, y[ib].qs, y[ib].qh);
  }
}

void dequantize_row_q5_0(const BlockQ5_0* x, float* y, int64_t n) {
  check_row(n, QK5_0);
  const int64_t nb = n / QK5_0;
  int q[QK5_0];
  for (int64_t i = 0; i < nb; ++i, y += QK5_0) {
    const float d = fp16_to_fp32(x[i].d);
    unpack_q5(x[i].qs, x[i].qh, q);
    for (int64_t j = 0; j < QK5_0; ++j) y[j] = static_cast<float>(q[j] - 16) * d;
  }
}

void dequantize_row_q5_1(const BlockQ5_1* x, float* y, int64_t n) {
  check_row(n, QK5_1);
  const int64_t nb = n / QK5_1;
  int q[QK5_1];
  for (int64_t i = 0; i < nb; ++i, y += QK5_1) {
    const float d = fp16_to_fp32(x[i].d);
    const float m = fp16_to_fp32(x[i].m);
    unpack_q5(x[i].qs, x[i].qh, q);
    for (int64_t j = 0; j < QK5_1; ++j) y[j] = static_cast<float>(q[j]) * d + m;
  }
}

}  // namespace qe
