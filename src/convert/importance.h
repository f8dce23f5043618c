// The importance weights of one conversion: ConvertJob::imatrix (a llama.cpp importance matrix file) and
// ConvertJob::importance (the calibrator's), matched to the output tensors by GGUF name, and the metadata
// keys that record them.
//
// As llama-quantize: entries for tensors that are not in the output are ignored, a tensor without an
// entry is rounded plainly, and an entry that does not fit its tensor (another model's imatrix) is an
// error, not a silent fallback.
#pragma once

#include <map>
#include <span>
#include <string>
#include <vector>

#include "convert/plan.h"
#include "convert/run.h"
#include "formats/error.h"
#include "formats/gguf_reader.h"

namespace qe::convert {

struct ImportanceSet {
  struct Row {
    std::vector<float> weights;  // n_mat * n_cols
    int64_t n_mat = 1;
    bool from_file = false;  // job.imatrix (else job.importance)
  };
  std::map<std::string, Row> rows;  // by output tensor name
  // llama-quantize's provenance keys (tools/quantize/quantize.cpp) when a file was read:
  //   quantize.imatrix.file          str  the path as given (llama-quantize keeps 127 bytes)
  //   quantize.imatrix.dataset       str  the file's first dataset, when it names one
  //   quantize.imatrix.entries_count u32  entries in the file
  //   quantize.imatrix.chunks_count  u32  chunks it was gathered over, when > 0
  std::vector<GgufKv> metadata;
};

// Reads job.imatrix (if set; its errors carry option "imatrix") and overlays job.importance, which wins
// for the names it has.
Result<ImportanceSet> load_importance(const ConvertJob& job);

// Points each plan at its row (TensorPlan::importance); the set must outlive the plans' use. An entry
// for an output tensor must be one matrix of exactly the tensor's row length (dims[0]).
Status attach_importance(const ConvertJob& job, const ImportanceSet& set, std::vector<TensorPlan>& plans);

// kvs with `extra` set as ggml's gguf_set_val sets a key (llama-quantize's order): a key already there
// is removed, and every key of `extra` goes at the end in its order.
void set_metadata(std::vector<GgufKv>& kvs, std::span<const GgufKv> extra);

}  // namespace qe::convert
