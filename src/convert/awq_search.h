// The calibrator's second half, for one linear group of one block (convert/awq.h has the method): the
// alpha search for the group's input scales, then per weight matrix the clipping search and the
// rounding choice, each scored by the exact output error the Gram matrix gives,
//   loss(W') = E_x |x W^T - x W'^T|^2 = sum over rows r of (W - W')_r G (W - W')_r^T,  G = E[x x^T],
// with W' what the target type's quantizer really writes (the kernels' byte-exact quantizers, and ggml's
// importance-weighted ones for q4_0 / q4_1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "formats/ggml_type.h"

namespace qe::convert {

// What the search knows about the group's input, per channel (cols): all in the original basis.
struct AwqGroupInput {
  int64_t cols = 0;
  std::vector<float> mean_abs;    // E|x|, the salience the scales follow
  std::vector<float> importance;  // weighted rounding's column weights (E[x^2], or an imatrix's)
  std::vector<float> gram;        // (cols, cols) E[x x^T]
};

// One weight matrix of the group.
struct AwqTensor {
  std::string name;
  GgmlType type = GgmlType::F32;  // the type it will be written as
  int64_t rows = 0, cols = 0;
  const float* w = nullptr;       // (rows, cols) full precision
  std::vector<float> row_scale;   // empty, or (rows): the rows are divided by it (v for o, up for down)
  bool clip = true;               // search a shrink of each row's max (not for q, k)

  // Results of finish_tensor
  std::vector<float> out;         // (rows, cols) to write: W diag(s) / row_scale, clipped
  bool weighted = false;          // quantize with the weighted quantizer and importance / s^2
  // With error-compensated rounding: the output bytes themselves, each row the best of the plain,
  // weighted and GPTQ roundings (then `weighted` is unused: the bytes are final).
  std::vector<std::byte> bytes;
  int weighted_rows = 0, gptq_rows = 0;
  double loss_rtn = 0.0;          // plain round-to-nearest of W (alpha 0, no clip), from search_alpha
  double loss = 0.0;              // of `out` as written
  int clipped_rows = 0;
};

struct AlphaSearch {
  float alpha = 0.0f;
  std::vector<float> scale;        // (cols) s: W's columns are multiplied by it, the input divided
  std::vector<double> losses;      // per grid point, the group's loss with the plain quantizer
};

// The scales s = mean_abs^alpha / sqrt(max * min) (AutoAWQ's normalisation; mean_abs clamped to 1e-4
// after the power), for the alpha in {0, 1/n_grid, ..., (n_grid-1)/n_grid} with the lowest group loss;
// alpha 0 (s = 1, plain RTN) wins ties. Sets each tensor's loss_rtn. The inputs must be finite.
// fixed_alpha: score only that alpha (it is chosen whatever its loss).
AlphaSearch search_alpha(std::span<AwqTensor> tensors, const AwqGroupInput& in, int n_grid, int n_threads,
                         std::optional<float> fixed_alpha = std::nullopt);

// `out` for a tensor given the group's column scales (empty = 1): the clipping search per row (when
// t.clip and `clip`: max shrunk by 0, 5, ..., 45%) with the plain quantizer, then, for types with a
// weighted quantizer, the weighted rounding (with and without each row's clip) when it lowers the loss.
// With gptq_u (convert/awq_gptq.h, for the same column scales) and a type it supports, also the
// error-compensated rounding, and every row takes the lowest of the three: `bytes` holds the result.
void finish_tensor(AwqTensor& t, std::span<const float> col_scale, const AwqGroupInput& in, bool clip,
                   int n_threads, std::span<const float> gptq_u = {});

// The group's input divided by s is what the scaled weights see: its importance becomes importance / s^2.
std::vector<float> scaled_importance(const AwqGroupInput& in, std::span<const float> col_scale);

// True when every weight is finite.
bool all_finite(std::span<const float> v);

}  // namespace qe::convert
