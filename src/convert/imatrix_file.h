// llama.cpp importance-matrix files (llama-imatrix's output, llama-quantize --imatrix's input), in both
// of the formats llama.cpp reads (tools/imatrix/imatrix.cpp, tools/quantize/quantize.cpp):
//
// GGUF (current; llama-imatrix writes it unless asked for .dat):
//   general.type         string     "imatrix"
//   imatrix.datasets     array[str] the calibration text files (llama-quantize reads datasets[0])
//   imatrix.chunk_count  uint32     chunks the sums were gathered over
//   imatrix.chunk_size   uint32     tokens per chunk (n_ctx / n_parallel)
//   per weight, sorted by name:
//     <name>.in_sum2  f32, ne {n_cols, n_mat}: sum over the tokens of x^2, per input column, per expert
//     <name>.counts   f32, ne {1, n_mat}:      tokens each expert (matrix) saw
//   ggml drops trailing dims of 1 when it writes (n_mat 1: ne {n_cols} and {1}); gguf-py keeps them.
//
// Legacy .dat (little-endian, no magic; entries sorted by name):
//   int32 n_entries; per entry: int32 len, name bytes, int32 ncall, int32 nval,
//     f32 values[nval] = mean of x^2 per column * ncall (experts concatenated, one ncall for all);
//   then, optionally (later versions): int32 last_chunk, int32 len, dataset name bytes.
//
// Both read into one shape: a legacy entry is in_sum2 = its values and counts = {ncall} (n_mat 1, so
// an MoE entry's experts are not told apart, as in the file), which gives importance() exactly what
// llama-quantize derives from either format. Files are hostile: every length is checked against the
// bytes left before anything is allocated, and a problem is one Error naming the file and the field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/error.h"

namespace qe::convert {

struct ImatrixEntry {
  std::string name;            // the weight it is for, e.g. "blk.0.attn_q.weight"
  std::vector<float> in_sum2;  // (n_mat, n_cols): sum of x^2 per input column; each >= 0, finite
  std::vector<float> counts;   // (n_mat): tokens each matrix saw; each >= 0, finite (0: no data)

  int64_t n_mat() const { return static_cast<int64_t>(counts.size()); }
  int64_t n_cols() const { return counts.empty() ? 0 : static_cast<int64_t>(in_sum2.size() / counts.size()); }
};

enum class ImatrixFormat { kGguf, kLegacy };

struct ImatrixData {
  ImatrixFormat format = ImatrixFormat::kGguf;  // what read_imatrix found (the writer ignores it)
  std::vector<std::string> datasets;            // legacy: the trailer's name, if there is one
  int64_t chunk_count = 0;                      // legacy: the trailer's last_chunk, else 0
  int64_t chunk_size = 0;                       // legacy: not stored, 0
  std::vector<ImatrixEntry> entries;            // sorted by name, names unique
};

// Reads either format: a file starting with "GGUF" must be a valid GGUF imatrix (a broken one is not
// retried as legacy, unlike llama.cpp, so its error is about what is really wrong); anything else is
// read as legacy .dat.
Result<ImatrixData> read_imatrix(const std::string& path);

// Writes llama-imatrix's GGUF layout byte for byte in its key, tensor and dim order, whole or not at
// all. Refuses (Error naming the entry) what llama-quantize would misread or crash on: no entries,
// no datasets, empty or duplicate names, counts/in_sum2 shapes that disagree, negative or non-finite
// values, chunk numbers outside uint32. overwrite=false refuses an existing `path` (option "overwrite").
Status write_imatrix_gguf(const std::string& path, const ImatrixData& data, bool overwrite);

// The per-column weights llama-quantize quantizes with: in_sum2 / count for each matrix, and 1 for
// every column of a matrix whose count is 0 (no calibration token reached it). Same layout as
// in_sum2. The entry must be well formed (as read_imatrix returns it): counts non-empty and
// in_sum2.size() a multiple of counts.size(); anything else is a programming error (QE_CHECK).
std::vector<float> importance(const ImatrixEntry& entry);

}  // namespace qe::convert
