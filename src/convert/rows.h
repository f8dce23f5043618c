// The inner loop of qconvert: source rows (any type we can dequantize) -> f32 -> output type, in
// parallel over rows, with the q/k RoPE row reordering applied on the way and the error of what was
// written measured by dequantizing it again in the same pass (the report's rmse / max_abs_error).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

#include "formats/ggml_type.h"
#include "kernels/kernel_table.h"

namespace qe::convert {

struct ErrorStats {
  double sum_sq = 0.0;   // sum of (written - source)^2
  double max_abs = 0.0;  // largest |written - source|
  uint64_t n = 0;        // elements compared
  // Rows whose importance-weighted rounding decoded to a non-finite value (ggml's q2_K/q4_K/q5_K write a
  // NaN scale, 0/0, for a super-block whose importances are all 0: llama-quantize then refuses the file),
  // written with plain rounding instead.
  uint64_t unweighted_rows = 0;

  double rmse() const;
};

// HF stores each q/k head as two halves (rows i and i + head_dim/2 are a RoPE pair); llama.cpp's
// `llama` arch rotates adjacent rows (2i, 2i+1), so convert_hf_to_gguf.py permutes the rows per head:
// reshape(heads, 2, head_dim/2, in).swapaxes(1, 2). GGUF row h*hd + 2i + j comes from HF row
// h*hd + j*hd/2 + i. head_dim = 0 is the identity; to_hf undoes the permutation.
struct RowOrder {
  int64_t head_dim = 0;
  bool to_hf = false;

  int64_t source_row(int64_t out_row) const {
    if (head_dim == 0) return out_row;
    const int64_t h = out_row / head_dim, r = out_row % head_dim, half = head_dim / 2;
    if (!to_hf) return h * head_dim + (r % 2) * half + r / 2;  // out (i, j) <- in (j, i)
    return h * head_dim + (r % half) * 2 + r / half;           // out (j, i) <- in (i, j)
  }
};

// Writes output rows [r0, r1) to `out` (contiguous, out_type), row r taken from source row
// order.source_row(r) of `src` (rows of row_len elements of src_type, contiguous from row 0).
// Both types must have block traits (to_float for src, from_float and to_float for out) and row_len
// must be a multiple of both block sizes (checked). Adds the error of the written rows to `stats`, summed
// in row order (the same bits for any thread count).
// side_task (may be empty) runs once, on one of the n_threads threads, while the others start on the rows
// (which are dealt out dynamically, so that thread joins them when done): qconvert writes the previous
// chunk this way, inside the team, instead of on an extra thread that would compete with it for cores.
// importance (empty, or row_len weights, one per column): q4_0 / q4_1 rows are then written by ggml's
// importance-weighted quantizers (formats/blocks_weighted.h), the bytes llama-quantize --imatrix writes;
// other output types ignore it, as ggml does. It is per column, so the RoPE row order does not touch it.
void convert_rows(GgmlType src_type, const std::byte* src, GgmlType out_type, std::byte* out, int64_t row_len,
                  int64_t r0, int64_t r1, const RowOrder& order, int n_threads, ErrorStats& stats,
                  const std::function<void()>& side_task = {}, std::span<const float> importance = {});

// Whether convert_rows uses `importance` for this output type (every block type llama-quantize feeds an
// imatrix to: q4_0 q4_1 q5_0 q5_1, the k-quants, iq4_nl, iq4_xs; not q8_0).
bool takes_importance(GgmlType out_type);

// The row codec of one output type as convert_rows writes it: the active level's byte-exact kernels
// (the block traits' reference for types the table does not cover) and, for quantize() with weights,
// ggml's importance-weighted quantizer (takes_importance types; ignored for the others, as in ggml).
// The calibrator scores its candidates with the same codec, so what it measures is what is written.
struct RowCodec {
  explicit RowCodec(GgmlType type);  // the type must have block traits with from_float
  GgmlType type;
  kernels::QuantizeRowFn from_f32 = nullptr;
  kernels::RowToF32Fn to_f32 = nullptr;
  // ggml's importance-weighted quantizer (formats/blocks_weighted.h); nullptr when the type ignores
  // importances (q8_0, f16, ...), as ggml does.
  void (*from_f32_weighted)(const float* x, void* y, int64_t n, const float* weights) = nullptr;

  // x: one whole row of n values (the weighting sees the whole row); weights: nullptr or n values.
  void quantize(const float* x, std::byte* out, int64_t n, const float* weights = nullptr) const;
};

}  // namespace qe::convert
