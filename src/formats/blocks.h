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
inline constexpr int64_t QK5_0 = 32;
inline constexpr int64_t QK5_1 = 32;
inline constexpr int64_t QK4_NL = 32;
inline constexpr int64_t QK_K = 256;
inline constexpr int64_t K_SCALE_SIZE = 12;  // q4_K / q5_K: 8 scales and 8 mins of 6 bits

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

struct BlockQ5_0 {
  uint16_t d;              // fp16 scale; x = d * (q - 16)
  uint8_t qh[4];           // bit 4 of element j in bit j (little-endian uint32)
  uint8_t qs[QK5_0 / 2];   // low 4 bits, nibble order as q4_0
};
static_assert(sizeof(BlockQ5_0) == 22);

struct BlockQ5_1 {
  uint16_t d;              // fp16 scale
  uint16_t m;              // fp16 minimum; x = d * q + m
  uint8_t qh[4];
  uint8_t qs[QK5_1 / 2];
};
static_assert(sizeof(BlockQ5_1) == 24);

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

// ---- k-quants: super-blocks of 256 values (ggml-common.h's layouts).
struct BlockQ2_K {         // 16 groups of 16; x = d * (scales[g] & 0xF) * q - dmin * (scales[g] >> 4)
  uint8_t scales[QK_K / 16];
  uint8_t qs[QK_K / 4];    // 2-bit quants
  uint16_t d;              // fp16 super-block scale of the scales
  uint16_t dmin;           // fp16 super-block scale of the mins
};
static_assert(sizeof(BlockQ2_K) == 84);

struct BlockQ3_K {         // 16 groups of 16; x = d * (scale6[g] - 32) * (q - 4 * !hbit)
  uint8_t hmask[QK_K / 8]; // high bit
  uint8_t qs[QK_K / 4];    // low 2 bits
  uint8_t scales[12];      // 16 scales of 6 bits
  uint16_t d;
};
static_assert(sizeof(BlockQ3_K) == 110);

struct BlockQ4_K {         // 8 groups of 32; x = d * sc[g] * q - dmin * m[g] (sc, m: 6 bits each)
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qs[QK_K / 2];    // 4-bit quants: group pair (2i, 2i+1) in the low/high nibbles of qs[32i..32i+31]
};
static_assert(sizeof(BlockQ4_K) == 144);

struct BlockQ5_K {         // as q4_K with a fifth bit per value
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176);

struct BlockQ6_K {         // 256 weights in 16 groups of 16; x = d * scales[g] * (q - 32)
  uint8_t ql[QK_K / 2];    // low 4 bits
  uint8_t qh[QK_K / 4];    // high 2 bits
  int8_t scales[QK_K / 16];
  uint16_t d;              // fp16 super-block scale
};
static_assert(sizeof(BlockQ6_K) == 210);

// ---- Non-linear 4-bit: the code indexes ggml's kvalues_iq4nl table (int8), x = d * table[q].
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t qs[QK4_NL / 2];  // nibble order as q4_0
};
static_assert(sizeof(BlockIQ4_NL) == 18);

struct BlockIQ4_XS {       // 8 groups of 32 with 6-bit scales; x = d * (ls[g] - 32) * table[q]
  uint16_t d;
  uint16_t scales_h;       // 2 high bits of each group's scale
  uint8_t scales_l[QK_K / 64];  // 4 low bits, two groups per byte
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(BlockIQ4_XS) == 136);

// ggml's kvalues_iq4nl: the 16 levels of iq4_nl / iq4_xs.
inline constexpr int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

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
void quantize_row_q5_0_ref(const float* x, BlockQ5_0* y, int64_t n);
void quantize_row_q5_1_ref(const float* x, BlockQ5_1* y, int64_t n);
// The k-quants and i-quants below without importances: ggml_quantize_chunk's bytes with imatrix = NULL
// (quantize_row_*_ref; iq4_nl / iq4_xs run their search with weights x^2, as ggml_quantize_chunk does). n a multiple of 256
// (iq4_nl: 32).
void quantize_row_q2_K_ref(const float* x, BlockQ2_K* y, int64_t n);
void quantize_row_q3_K_ref(const float* x, BlockQ3_K* y, int64_t n);
void quantize_row_q4_K_ref(const float* x, BlockQ4_K* y, int64_t n);
void quantize_row_q5_K_ref(const float* x, BlockQ5_K* y, int64_t n);
void quantize_row_q6_K_ref(const float* x, BlockQ6_K* y, int64_t n);
void quantize_row_iq4_nl_ref(const float* x, BlockIQ4_NL* y, int64_t n);
void quantize_row_iq4_xs_ref(const float* x, BlockIQ4_XS* y, int64_t n);
void quantize_row_f16_ref(const float* x, uint16_t* y, int64_t n);
void quantize_row_bf16_ref(const float* x, uint16_t* y, int64_t n);
// An all-zero block gets d = 0 and bsums = 0 (ggml leaves its bsums unwritten).
void quantize_row_q8_K_ref(const float* x, BlockQ8_K* y, int64_t n);

void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n);
void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t n);
void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n);
void dequantize_row_q8_1(const BlockQ8_1* x, float* y, int64_t n);
void dequantize_row_q5_0(const BlockQ5_0* x, float* y, int64_t n);
void dequantize_row_q5_1(const BlockQ5_1* x, float* y, int64_t n);
void dequantize_row_q2_K(const BlockQ2_K* x, float* y, int64_t n);
void dequantize_row_q3_K(const BlockQ3_K* x, float* y, int64_t n);
void dequantize_row_q4_K(const BlockQ4_K* x, float* y, int64_t n);
void dequantize_row_q5_K(const BlockQ5_K* x, float* y, int64_t n);
void dequantize_row_q6_K(const BlockQ6_K* x, float* y, int64_t n);
void dequantize_row_iq4_nl(const BlockIQ4_NL* x, float* y, int64_t n);
void dequantize_row_iq4_xs(const BlockIQ4_XS* x, float* y, int64_t n);
void dequantize_row_f16(const uint16_t* x, float* y, int64_t n);
void dequantize_row_bf16(const uint16_t* x, float* y, int64_t n);
void dequantize_row_q8_K(const BlockQ8_K* x, float* y, int64_t n);

// ---- Traits: row conversions by type, so converters and tests never switch on the type.
struct BlockTraits {
  GgmlType type;
  // f32 -> this type over one row of n elements; nullptr when we do not write this type.
  void (*from_float)(const float* x, void* y, int64_t n);
  // this type -> f32 over one row of n elements.
  void (*to_float)(const void* x, float* y, int64_t n);
  // f32 -> this type with one importance per column (an imatrix row; blocks_weighted.h): x is one WHOLE
  // row. quant_weights = nullptr gives from_float's bytes. nullptr when the type ignores importances, as
  // ggml does for q8_0, f16, bf16 and f32.
  void (*from_float_weighted)(const float* x, void* y, int64_t n, const float* quant_weights);
};

// nullptr for types we cannot convert (the other i-quants, ternary types, integers).
const BlockTraits* block_traits(GgmlType type);

}  // namespace qe
