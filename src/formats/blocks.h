// ggml block formats: plain structs whose bytes are the file format, and scalar reference
// quantize/dequantize whose output is byte-identical to ggml's *_ref functions (witness: the `gguf`
// Python package's gguf.quants). The SIMD kernels in src/kernels are tested against these.
#pragma once

#include <cstdint>

#include "formats/ggml_type.h"

namespace qe {

inline constexpr int64_t QK4_0 = 32;
inline constexpr int64_t QK4_1 = 32;
inline constexpr int64_t QK8_0 = 32;
inline constexpr int64_t QK8_1 = 32;
inline constexpr int64_t QK_K = 256;

// fp16 / bf16 values are stored as their raw 16 bits.
struct BlockQ4_0 {
  uint16_t d;              // fp16 scale; x = d * (q - 8)
  uint8_t qs[QK4_0 / 2];   // element j in the low nibble of qs[j], element j+16 in the high nibble
};
static_assert(sizeof(BlockQ4_0) == 18);

struct BlockQ4_1 {
  uint16_t d;              // fp16 scale
  uint16_t m;              // fp16 minimum; x = d * q + m
  uint8_t qs[QK4_1 / 2];   // nibble order as q4_0
};
static_assert(sizeof(BlockQ4_1) == 20);

struct BlockQ8_0 {
  uint16_t d;              // fp16 scale; x = d * q
  int8_t qs[QK8_0];
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ8_1 {         // activations paired with q4_1 weights
  uint16_t d;              // fp16 scale
  uint16_t s;              // fp16 of d * sum(qs), lets q4_1's m term be applied once per block
  int8_t qs[QK8_1];
};
static_assert(sizeof(BlockQ8_1) == 36);

struct BlockQ6_K {         // 256 weights in 16 groups of 16; x = d * scales[g] * (q - 32)
  uint8_t ql[QK_K / 2];    // low 4 bits
  uint8_t qh[QK_K / 4];    // high 2 bits
  int8_t scales[QK_K / 16];
  uint16_t d;              // fp16 super-block scale
};
static_assert(sizeof(BlockQ6_K) == 210);

// ggml's block_q8_K: the activation type for q6_K dots. Never stored in files (llama.cpp does not load it),
// so it is not in the traits table.
struct BlockQ8_K {
  float d;                   // f32 scale (not fp16); x = d * q
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];  // sum of qs over each group of 16: lets q6_K's -32 offset be applied per group
};
static_assert(sizeof(BlockQ8_K) == 292);

// ---- Scalar conversions (IEEE round-to-nearest-even, as F16C and numpy do).
// NaNs follow numpy's astype (what gguf.quants writes for F16): the payload is truncated/shifted and never
// quietened; a payload that truncates to 0 becomes 1. (F16C quietens signalling NaNs; finite values agree.)
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);  // ggml_compute_fp32_to_bf16: NaN forced quiet, then round to nearest even

// ---- Reference quantizers; n is a multiple of the block size (checked).
void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t n);
void quantize_row_q4_1_ref(const float* x, BlockQ4_1* y, int64_t n);
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n);
void quantize_row_q8_1_ref(const float* x, BlockQ8_1* y, int64_t n);
void quantize_row_f16_ref(const float* x, uint16_t* y, int64_t n);
void quantize_row_bf16_ref(const float* x, uint16_t* y, int64_t n);
// An all-zero block gets d = 0 and bsums = 0 (ggml leaves its bsums unwritten).
void quantize_row_q8_K_ref(const float* x, BlockQ8_K* y, int64_t n);

void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n);
void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t n);
void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n);
void dequantize_row_q8_1(const BlockQ8_1* x, float* y, int64_t n);
void dequantize_row_q6_K(const BlockQ6_K* x, float* y, int64_t n);
void dequantize_row_f16(const uint16_t* x, float* y, int64_t n);
void dequantize_row_bf16(const uint16_t* x, float* y, int64_t n);
void dequantize_row_q8_K(const BlockQ8_K* x, float* y, int64_t n);

// ---- Traits: row conversions by type, so converters and tests never switch on the type.
struct BlockTraits {
  GgmlType type;
  // f32 -> this type over one row of n elements; nullptr when we do not write this type (q6_K).
  void (*from_float)(const float* x, void* y, int64_t n);
  // this type -> f32 over one row of n elements.
  void (*to_float)(const void* x, float* y, int64_t n);
};

// nullptr for types we cannot convert (the k-quants other than q6_K, i-quants, integers).
const BlockTraits* block_traits(GgmlType type);

}  // namespace qe
