// qconvert's three conversions, end to end: HF directory -> GGUF, GGUF -> GGUF (requantization) and
// GGUF -> HF directory. Tensors stream one at a time through convert_rows (never the whole model in
// memory; source pages are released after use), outputs go through temp file + rename, and the input
// is only ever opened read-only and never named as an output.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "formats/error.h"
#include "formats/gguf_reader.h"
#include "convert/awq.h"
#include "convert/plan.h"
#include "convert/types.h"

namespace qe::convert {

enum class ConvertMode { kHfToGguf, kRequantize, kGgufToHf };

struct ConvertJob {
  std::string input;              // HF directory or GGUF file
  std::string output;             // GGUF path, or the HF directory with to_hf
  bool to_hf = false;
  TypePolicy policy;              // GGUF outputs
  GgmlType export_type = GgmlType::F32;  // to_hf: f32, f16 or bf16
  bool allow_requantize = false;
  bool overwrite = false;         // replace existing output files
  int n_threads = 1;
  std::vector<std::string> extra_outputs;  // more paths we will write (the card): checked against the inputs

  // Importance-weighted rounding from a llama.cpp importance matrix (llama-quantize --imatrix): GGUF or
  // legacy .dat. q4_0 / q4_1 tensors it has an entry for are quantized with ggml's weighted quantizers.
  std::string imatrix;
  // Activation-aware calibration before quantizing (convert/awq.h). GGUF and HF inputs; not to_hf.
  std::optional<AwqOptions> awq;
  // With awq: the calibration's importance matrix (sum of x^2 per input column) written here in
  // llama-imatrix's GGUF layout, so llama-quantize --imatrix can use it.
  std::string imatrix_out;

  // Set by the library itself (the calibrator's second stage), not by front ends: per output tensor name,
  // one importance per input column, used as `imatrix` entries are; and metadata written after the
  // input's keys (a key already there is removed and appended, as ggml's gguf_set_val does).
  std::shared_ptr<const std::map<std::string, std::vector<float>>> importance;
  // Per output tensor name, its bytes already in the output type (the calibrator's error-compensated
  // rounding): written as they are, after a check of their size.
  std::shared_ptr<const std::map<std::string, std::vector<std::byte>>> prequantized;
  std::vector<GgufKv> extra_metadata;
  // llama-quantize's --override-kv, as it writes them (the front end has made the values): after the file
  // type keys and before an imatrix's, each key removed and appended (ggml's gguf_set_val). GGUF outputs.
  std::vector<GgufKv> kv_overrides;

  // GGUF -> HF: the text of README.md after its front matter (which carries the general.* keys,
  // convert/general_metadata.h): the front end's model card. Unset: a short paragraph naming the source.
  std::function<std::string(const struct ConvertResult&)> hf_readme_body;
};

struct TensorReport {
  std::string name;
  std::vector<uint64_t> dims;  // output order (GGUF: innermost first)
  GgmlType src_type = GgmlType::F32, out_type = GgmlType::F32;
  uint64_t src_bytes = 0, out_bytes = 0, n_elements = 0;
  double rmse = 0.0, max_abs_error = 0.0;
  bool copied = false;
  bool weighted = false;                 // rounded with importance weights (an imatrix entry, a type that takes it)
  uint64_t unweighted_rows = 0;          // rows rounded plainly: the weighted rounding gave NaN (ErrorStats)
  std::string reason;                    // TensorPlan::reason
  bool fallback = false;
  std::optional<size_t> override_index;  // TensorPlan::override_index
};

struct ConvertResult {
  ConvertMode mode = ConvertMode::kHfToGguf;
  std::vector<TensorReport> tensors;
  std::vector<std::string> files_written;
  uint64_t src_bytes = 0;     // tensor bytes read
  uint64_t out_bytes = 0;     // tensor bytes written
  uint64_t output_file_bytes = 0;
  uint64_t n_weights = 0;
  double seconds = 0.0;
  std::vector<std::string> warnings;
  std::string license;        // general.license of the GGUF side (from config.json's license for HF), may be empty
  std::string model_name;     // general.name
  // The GGUF side's metadata (the output's, or for GGUF -> HF the source's) without tokenizer.* keys:
  // what the model card shows.
  std::vector<GgufKv> metadata;
  std::optional<AwqReport> awq;  // with ConvertJob::awq
};

struct ConvertObserver {
  std::function<void(const std::string&)> log;                                 // one line, no newline
  std::function<void(const TensorPlan&, size_t index, size_t count)> tensor;   // a tensor starts
  std::function<void(uint64_t done, uint64_t total)> progress;                 // source bytes overall
  std::function<void(const AwqProgress&)> awq_progress;                        // calibration, before the tensors
  // The front end asks to stop (Ctrl-C): checked between tensors, chunks, calibration windows and searched
  // blocks. The conversion then ends with interrupted_error(output) and removes what it had written.
  std::function<bool()> stop_requested;
};

// The error a stopped conversion returns (its option is "interrupted", for the front end's exit code).
Error interrupted_error(const std::string& output);
bool is_interrupted(const Error& e);

Result<ConvertResult> run_convert(const ConvertJob& job, const ConvertObserver& obs);

// Which mode a job is (inspects the input: a directory is HF, a file must start with the GGUF magic).
Result<ConvertMode> detect_mode(const ConvertJob& job);

}  // namespace qe::convert
