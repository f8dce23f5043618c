// Error-compensated rounding (GPTQ, Frantar et al. 2022) into ggml's blocks, the calibrator's third
// rounding beside the plain and the importance-weighted quantizer. A row is rounded left to right; each
// block's scale (and q4_1's minimum) is fixed from the row's current values when the block starts, as
// ggml's quantizer would fix it, and each element's rounding error is spread over the elements not yet
// rounded through the inverse Gram matrix, so that the row's output error (w - q) H (w - q)^T, not its
// weight error, is what the rounding keeps small. The result is ordinary blocks, written as bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "formats/ggml_type.h"

namespace qe::convert {

// The types gptq_round writes: q4_0, q4_1, q8_0.
bool gptq_supports(GgmlType type);

// U (n x n, row-major, upper triangular) with (H + damp I)^-1 = U^T U, for H = D^-1 G D^-1 the Gram
// matrix of the input divided by the column scales (empty: none) and damp 1% of H's mean diagonal.
// Empty when H is not positive definite even so (the caller keeps its other candidates).
std::vector<float> gptq_factor(std::span<const float> gram, int64_t n, std::span<const float> col_scale,
                               int n_threads);

// The rows of w (rows x n) rounded into `type` blocks with error feedback through u: the blocks' bytes
// (rows * row bytes) and, in deq, their values (rows x n).
std::vector<std::byte> gptq_round(GgmlType type, const float* w, int64_t rows, int64_t n,
                                  std::span<const float> u, std::vector<float>& deq, int n_threads);

}  // namespace qe::convert
