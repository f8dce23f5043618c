// Reference weight-conversion kernels: the scalar routines of formats/blocks.h behind the table's
// signatures, and the error pass qconvert always used (one double sum in element order). Every SIMD
// level is tested byte for byte against these.
#include <algorithm>
#include <cmath>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::ref {
namespace {

template <class Block, void (*F)(const float*, Block*, int64_t)>
void from_f32(const float* x, void* y, int64_t n) {
  F(x, static_cast<Block*>(y), n);
}
template <class Block, void (*F)(const Block*, float*, int64_t)>
void to_f32(const void* x, float* y, int64_t n) {
  F(static_cast<const Block*>(x), y, n);
}

// std::max(m, NaN) keeps m, so a NaN difference never becomes the maximum (but does poison the sum).
RowError error_stats(const float* src, const float* out, int64_t n) {
  RowError r;
  for (int64_t i = 0; i < n; ++i) {
    const float e = out[i] - src[i];
    r.sum_sq += static_cast<double>(e) * e;
    r.max_abs = std::max(r.max_abs, std::fabs(e));
  }
  return r;
}

}  // namespace

void fill_convert(KernelTable& t) {
  t.to_f32_f16 = to_f32<uint16_t, dequantize_row_f16>;
  t.to_f32_bf16 = to_f32<uint16_t, dequantize_row_bf16>;
  t.to_f32_q4_0 = to_f32<BlockQ4_0, dequantize_row_q4_0>;
  t.to_f32_q4_1 = to_f32<BlockQ4_1, dequantize_row_q4_1>;
  t.to_f32_q8_0 = to_f32<BlockQ8_0, dequantize_row_q8_0>;
  t.quantize_row_q4_0 = from_f32<BlockQ4_0, quantize_row_q4_0_ref>;
  t.quantize_row_q4_1 = from_f32<BlockQ4_1, quantize_row_q4_1_ref>;
  t.quantize_row_q8_0 = from_f32<BlockQ8_0, quantize_row_q8_0_ref>;
  t.from_f32_f16 = from_f32<uint16_t, quantize_row_f16_ref>;
  t.from_f32_bf16 = from_f32<uint16_t, quantize_row_bf16_ref>;
  t.error_stats = error_stats;
}

}  // namespace qe::kernels::ref
