// Scalar reference quantizers. Each follows ggml-quants.c's *_ref function operation by operation, in
// float, because the bytes are the contract: a different order of operations (or double arithmetic, or
// a fused multiply-add) moves values that sit on a rounding boundary and changes the file.
#include "formats/blocks.h"

#include <algorithm>
#include <bit>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>

#include "formats/blocks_weighted.h"
#include "formats/error.h"
#include "formats/exact_float.h"  // after the other headers: no fused multiply-add below

namespace qe {
namespace {

// C's float -> small-int conversion is undefined outside the target's range. ggml and numpy on x86-64
// compile it to cvttss2si, which yields INT32_MIN for NaN and out-of-range values, then keep the low
// byte. Doing the same on purpose keeps blocks holding NaN/Inf (or f32 subnormals, whose 1/d is Inf)
// defined and equal to ggml's x86 bytes. For every in-range value this is plain truncation.
inline int8_t trunc_to_i8(float v) {
  const int32_t i = (v >= -2147483648.0f && v < 2147483648.0f) ? static_cast<int32_t>(v) : INT32_MIN;
  return static_cast<int8_t>(i);  // modular narrowing (C++20)
}

// ggml's nearest_int: adding 1.5 * 2^23 leaves the integer part in the low mantissa bits, rounded to
// nearest even by the addition itself. Valid for |v| <= 2^22 - 1; NaN gives 0.
inline int nearest_int(float v) {
  const float shifted = v + 12582912.0f;
  const int32_t bits = std::bit_cast<int32_t>(shifted);
  return (bits & 0x007fffff) - 0x00400000;
}

// ggml's MAX(a, b) macro, a > b ? a : b: unlike std::max it lets a NaN b through, which decides what a
// block holding a NaN quantizes to.
inline float ggml_max(float a, float b) {
  return a > b ? a : b;
}

inline void check_row(int64_t n, int64_t block) {
  QE_CHECK(n >= 0 && n % block == 0);
}

// The signed value of largest magnitude in x[0..n), the first one on ties (0 when all are zero; a NaN
// never wins): q4_0 and q8_K map it to the exact end of their range.
inline float signed_absmax(const float* x, int64_t n) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// fp16 / bf16

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = h & 0x7c00u;
  const uint32_t mant = h & 0x03ffu;
  if (exp == 0x7c00u)
    return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // Inf, NaN payload kept
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in f32.
    const float mag = static_cast<float>(mant) * 0x1p-24f;
    return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(mag));
  }
  // Normal: rebias the exponent from 15 to 127 ((127 - 15) << 10 = 0x1c000).
  return std::bit_cast<float>(sign | ((static_cast<uint32_t>(h & 0x7fffu) + 0x1c000u) << 13));
}

uint16_t fp32_to_fp16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t exp = u & 0x7f800000u;
  const uint32_t mant = u & 0x007fffffu;

  if (exp == 0x7f800000u) {
    if (mant == 0) return sign | 0x7c00u;
    // numpy keeps the top 10 payload bits; a payload living only in the low bits must stay a NaN.
    uint16_t nan = static_cast<uint16_t>(0x7c00u | (mant >> 13));
    if (nan == 0x7c00u) nan = 0x7c01u;
    return sign | nan;
  }
  if (exp >= 0x47800000u) return sign | 0x7c00u;  // |f| >= 65536: overflow to Inf
  if (exp <= 0x38000000u) {
    // Result is an fp16 subnormal (or zero): units of 2^-24. f = sig * 2^(e - 150), so the subnormal
    // mantissa is sig >> (126 - e), rounded to nearest even. Below 2^-25 everything rounds to zero.
    const uint32_t e = exp >> 23;
    if (e < 102) return sign;
    const uint32_t sig = mant | 0x00800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t q = sig >> shift;
    const uint32_t rem = sig & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;  // may carry into the smallest normal, still right
    return static_cast<uint16_t>(sign | q);
  }
  // Normal: rebias 127 -> 15, keep 10 mantissa bits, round to nearest even on the 13 dropped bits. A carry
  // out of the mantissa bumps the exponent, which is the right answer (and reaches Inf at 65520).
  uint32_t h = ((exp - 0x38000000u) >> 13) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float bf16_to_fp32(uint16_t h) {
  return std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
}

uint16_t fp32_to_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64u);  // NaN: force quiet
  return static_cast<uint16_t>((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

// ---------------------------------------------------------------------------------------------------
// Quantizers

void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t n) {
  check_row(n, QK4_0);
  const int64_t nb = n / QK4_0;
  for (int64_t i = 0; i < nb; ++i, x += QK4_0) {
    // The signed value of largest magnitude maps to q = 0, i.e. d * -8: that side of the range is exact
    // and the other side clips at q = 15.
    const float d = signed_absmax(x, QK4_0) / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int64_t j = 0; j < QK4_0 / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[j + QK4_0 / 2] * id;
      const auto q0 = static_cast<uint8_t>(std::min<int>(15, trunc_to_i8(x0 + 8.5f)));
      const auto q1 = static_cast<uint8_t>(std::min<int>(15, trunc_to_i8(x1 + 8.5f)));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void quantize_row_q4_1_ref(const float* x, BlockQ4_1* y, int64_t n) {
  check_row(n, QK4_1);
  const int64_t nb = n / QK4_1;
  for (int64_t i = 0; i < nb; ++i, x += QK4_1) {
    float min = std::numeric_limits<float>::max();
    float max = -std::numeric_limits<float>::max();
    for (int64_t j = 0; j < QK4_1; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(min);
    for (int64_t j = 0; j < QK4_1 / 2; ++j) {
      const float x0 = (x[j] - min) * id;
      const float x1 = (x[j + QK4_1 / 2] - min) * id;
      const auto q0 = static_cast<uint8_t>(std::min<int>(15, trunc_to_i8(x0 + 0.5f)));
      const auto q1 = static_cast<uint8_t>(std::min<int>(15, trunc_to_i8(x1 + 0.5f)));
      y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

namespace {

// q8_0 and q8_1 share ggml's int8 block (d = amax / 127, qs rounded); returns the unrounded f32 d.
template <int64_t QK, class Block>
float quantize_block_int8(const float* x, Block& b) {
  float amax = 0.0f;
  for (int64_t j = 0; j < QK; ++j) amax = ggml_max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  b.d = fp32_to_fp16(d);
  // roundf: halves away from zero (not the FPU's nearest-even).
  for (int64_t j = 0; j < QK; ++j) b.qs[j] = trunc_to_i8(std::round(x[j] * id));
  return d;
}

}  // namespace

void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n) {
  check_row(n, QK8_0);
  const int64_t nb = n / QK8_0;
  for (int64_t i = 0; i < nb; ++i, x += QK8_0) quantize_block_int8<QK8_0>(x, y[i]);
}

void quantize_row_q8_1_ref(const float* x, BlockQ8_1* y, int64_t n) {
  check_row(n, QK8_1);
  const int64_t nb = n / QK8_1;
  for (int64_t i = 0; i < nb; ++i, x += QK8_1) {
    const float d = quantize_block_int8<QK8_1>(x, y[i]);
    int sum = 0;
    for (int64_t j = 0; j < QK8_1; ++j) sum += y[i].qs[j];
    // s uses the unrounded f32 d, as ggml does (|sum| <= 4064, so the int -> float is exact).
    y[i].s = fp32_to_fp16(static_cast<float>(sum) * d);
  }
}

void quantize_row_q8_K_ref(const float* x, BlockQ8_K* y, int64_t n) {
  check_row(n, QK_K);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    const float max = signed_absmax(x, QK_K);
    if (max == 0.0f) {
      // ggml leaves bsums unwritten here; zero them so the block is fully defined.
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    // -127 (not -128): the signed extreme maps to -127 so that q stays symmetric (ggml's AVX iq2 paths).
    const float iscale = -127.0f / max;
    for (int64_t j = 0; j < QK_K; ++j)
      y[i].qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
    for (int64_t g = 0; g < QK_K / 16; ++g) {
      int sum = 0;
      for (int64_t j = 0; j < 16; ++j) sum += y[i].qs[g * 16 + j];
      y[i].bsums[g] = static_cast<int16_t>(sum);
    }
    y[i].d = 1.0f / iscale;
  }
}

void quantize_row_f16_ref(const float* x, uint16_t* y, int64_t n) {
  check_row(n, 1);
  for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
}

void quantize_row_bf16_ref(const float* x, uint16_t* y, int64_t n) {
  check_row(n, 1);
  for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_bf16(x[i]);
}

// ---------------------------------------------------------------------------------------------------
// Dequantizers (products in float, in ggml's order: d * scale first, then * q).

void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n) {
  check_row(n, QK4_0);
  const int64_t nb = n / QK4_0;
  for (int64_t i = 0; i < nb; ++i, y += QK4_0) {
    const float d = fp16_to_fp32(x[i].d);
    for (int64_t j = 0; j < QK4_0 / 2; ++j) {
      y[j] = static_cast<float>((x[i].qs[j] & 0x0f) - 8) * d;
      y[j + QK4_0 / 2] = static_cast<float>((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t n) {
  check_row(n, QK4_1);
  const int64_t nb = n / QK4_1;
  for (int64_t i = 0; i < nb; ++i, y += QK4_1) {
    const float d = fp16_to_fp32(x[i].d);
    const float m = fp16_to_fp32(x[i].m);
    for (int64_t j = 0; j < QK4_1 / 2; ++j) {
      y[j] = static_cast<float>(x[i].qs[j] & 0x0f) * d + m;
      y[j + QK4_1 / 2] = static_cast<float>(x[i].qs[j] >> 4) * d + m;
    }
  }
}

namespace {

// x = d * q for q8_0 and q8_1 alike (q8_1's s is only for dot products).
template <int64_t QK, class Block>
void dequantize_row_int8(const Block* x, float* y, int64_t n) {
  check_row(n, QK);
  const int64_t nb = n / QK;
  for (int64_t i = 0; i < nb; ++i, y += QK) {
    const float d = fp16_to_fp32(x[i].d);
    for (int64_t j = 0; j < QK; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
  }
}

}  // namespace

void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n) { dequantize_row_int8<QK8_0>(x, y, n); }

void dequantize_row_q8_1(const BlockQ8_1* x, float* y, int64_t n) { dequantize_row_int8<QK8_1>(x, y, n); }

void dequantize_row_q8_K(const BlockQ8_K* x, float* y, int64_t n) {
  check_row(n, QK_K);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i, y += QK_K)
    for (int64_t j = 0; j < QK_K; ++j) y[j] = x[i].d * static_cast<float>(x[i].qs[j]);
}

void dequantize_row_q6_K(const BlockQ6_K* x, float* y, int64_t n) {
  check_row(n, QK_K);
  const int64_t nb = n / QK_K;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    // Two halves of 128 weights. In each half, ql[l] holds the low nibbles of weights l (low) and l+64
    // (high), ql[l+32] those of l+32 and l+96; qh[l] holds the 2 high bits of l, l+32, l+64, l+96 in
    // bit pairs 0-1, 2-3, 4-5, 6-7. Each group of 16 weights has its own int8 scale.
    for (int64_t half = 0; half < QK_K / 128; ++half) {
      for (int64_t l = 0; l < 32; ++l) {
        const int64_t is = l / 16;
        const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

void dequantize_row_f16(const uint16_t* x, float* y, int64_t n) {
  check_row(n, 1);
  for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}

void dequantize_row_bf16(const uint16_t* x, float* y, int64_t n) {
  check_row(n, 1);
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(x[i]);
}

// ---------------------------------------------------------------------------------------------------
// Traits

namespace {

void f32_from_float(const float* x, void* y, int64_t n) {
  check_row(n, 1);
  if (n > 0) std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
}
void f32_to_float(const void* x, float* y, int64_t n) {
  check_row(n, 1);
  if (n > 0) std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
}

// Adapters from the typed row functions to the traits' void* signatures.
template <class Block, void (*F)(const float*, Block*, int64_t)>
void from_float_as(const float* x, void* y, int64_t n) {
  F(x, static_cast<Block*>(y), n);
}
template <class Block, void (*F)(const Block*, float*, int64_t)>
void to_float_as(const void* x, float* y, int64_t n) {
  F(static_cast<const Block*>(x), y, n);
}

template <class Block, void (*F)(const float*, Block*, int64_t, const float*)>
void weighted_as(const float* x, void* y, int64_t n, const float* quant_weights) {
  F(x, static_cast<Block*>(y), n, quant_weights);
}

#define QE_BLOCK_TRAITS(TYPE, Block, name)                                                          \
  {GgmlType::TYPE, from_float_as<Block, quantize_row_##name##_ref>, to_float_as<Block, dequantize_row_##name>, \
   weighted_as<Block, quantize_row_##name##_weighted>}

constexpr BlockTraits kTraits[] = {
    {GgmlType::F32, f32_from_float, f32_to_float, nullptr},
    {GgmlType::F16, from_float_as<uint16_t, quantize_row_f16_ref>, to_float_as<uint16_t, dequantize_row_f16>,
     nullptr},
    {GgmlType::BF16, from_float_as<uint16_t, quantize_row_bf16_ref>, to_float_as<uint16_t, dequantize_row_bf16>,
     nullptr},
    QE_BLOCK_TRAITS(Q4_0, BlockQ4_0, q4_0),
    QE_BLOCK_TRAITS(Q4_1, BlockQ4_1, q4_1),
    QE_BLOCK_TRAITS(Q5_0, BlockQ5_0, q5_0),
    QE_BLOCK_TRAITS(Q5_1, BlockQ5_1, q5_1),
    // ggml ignores an imatrix for q8_0.
    {GgmlType::Q8_0, from_float_as<BlockQ8_0, quantize_row_q8_0_ref>, to_float_as<BlockQ8_0, dequantize_row_q8_0>,
     nullptr},
    {GgmlType::Q8_1, from_float_as<BlockQ8_1, quantize_row_q8_1_ref>, to_float_as<BlockQ8_1, dequantize_row_q8_1>,
     nullptr},
    QE_BLOCK_TRAITS(Q2_K, BlockQ2_K, q2_K),
    QE_BLOCK_TRAITS(Q3_K, BlockQ3_K, q3_K),
    QE_BLOCK_TRAITS(Q4_K, BlockQ4_K, q4_K),
    QE_BLOCK_TRAITS(Q5_K, BlockQ5_K, q5_K),
    QE_BLOCK_TRAITS(Q6_K, BlockQ6_K, q6_K),
    QE_BLOCK_TRAITS(IQ4_NL, BlockIQ4_NL, iq4_nl),
    QE_BLOCK_TRAITS(IQ4_XS, BlockIQ4_XS, iq4_xs),
};
#undef QE_BLOCK_TRAITS

}  // namespace

const BlockTraits* block_traits(GgmlType type) {
  for (const BlockTraits& t : kTraits)
    if (t.type == type) return &t;
  return nullptr;
}

}  // namespace qe
