// Reference weight-conversion kernels: the scalar routines of formats/blocks.h behind the table's
// signatures, and the error pass qconvert always used (one double sum in element order). Every SIMD
// level is tested byte for byte against these.
#include <algorithm>
#include <cmath>

#include "formats/blocks.h"
#include "kernels/kernel_tables.h"

namespace qe::kernels::ref {
namespace {

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
  // The block traits' row functions (formats/blocks.cpp) already have the table's signatures.
  auto traits = [](GgmlType type) -> const BlockTraits& { return *block_traits(type); };
  t.to_f32_f16 = traits(GgmlType::F16).to_float;
  t.to_f32_bf16 = traits(GgmlType::BF16).to_float;
  t.to_f32_q4_0 = traits(GgmlType::Q4_0).to_float;
  t.to_f32_q4_1 = traits(GgmlType::Q4_1).to_float;
  t.to_f32_q8_0 = traits(GgmlType::Q8_0).to_float;
  t.quantize_row_q4_0 = traits(GgmlType::Q4_0).from_float;
  t.quantize_row_q4_1 = traits(GgmlType::Q4_1).from_float;
  t.quantize_row_q8_0 = traits(GgmlType::Q8_0).from_float;
  t.from_f32_f16 = traits(GgmlType::F16).from_float;
  t.from_f32_bf16 = traits(GgmlType::BF16).from_float;
  t.error_stats = error_stats;
}

}  // namespace qe::kernels::ref
