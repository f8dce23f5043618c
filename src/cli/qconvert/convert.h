// qconvert's conversion front end: flags -> ConvertJob, progress on stderr, summary, --report JSON and
// the --card Markdown model card.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "formats/error.h"

namespace qe::cli {

struct ConvertOptions {
  std::string input;
  std::string output;                     // -o (GGUF)
  std::string to_hf;                      // --to-hf DIR
  std::string type;                       // --type; default f16 (HF input), f32 (--to-hf), required for GGUF -> GGUF
  std::vector<std::string> tensor_types;  // --tensor-type REGEX=TYPE, repeatable
  std::string output_tensor_type;         // --output-tensor-type TYPE
  std::string token_embedding_type;       // --token-embedding-type TYPE
  bool leave_output_tensor = false;       // --leave-output-tensor
  bool pure = false;
  bool allow_requantize = false;
  bool force = false;
  int n_threads = 0;                      // 0: physical cores
  std::string report;                     // --report FILE.json
  bool card = false;
  std::string isa;
  bool verbose = false;
  std::vector<std::string> args;          // the command line (argv), for the report and the card

  std::string imatrix;                    // --imatrix FILE: llama.cpp importance matrix (GGUF or .dat)
  std::string awq;                        // --awq CALIB.txt: activation-aware calibration on this text
  // The --awq-* knobs; unset (not given) takes convert::AwqOptions' default. Given without --awq: an error.
  std::optional<int64_t> awq_samples, awq_ctx;
  std::optional<int> awq_grid;
  bool no_awq_clip = false;
  std::optional<uint64_t> seed;
  std::string imatrix_out;                // --imatrix-out FILE (with --awq)
  std::string method;                     // --method awq_q4_0|awq_q4_1|awq_q8_0|awq_f16: --type and --awq in one
  std::string config;                     // --config FILE.yaml (main.cpp has applied it)
  std::vector<std::string> kv_overrides;  // --override-kv KEY=TYPE:VALUE, repeatable (llama-quantize's)
};

Status run_conversion(const ConvertOptions& opt);

}  // namespace qe::cli
