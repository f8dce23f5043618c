// qconvert's conversion front end: flags -> ConvertJob, progress on stderr, summary, --report JSON and
// the --card Markdown model card.
#pragma once

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
  bool pure = false;
  bool allow_requantize = false;
  bool force = false;
  int n_threads = 0;                      // 0: physical cores
  std::string report;                     // --report FILE.json
  bool card = false;
  std::string isa;
  bool verbose = false;
  std::string command_line;               // for the report and the card
};

Status run_conversion(const ConvertOptions& opt);

}  // namespace qe::cli
