// qrun's settings, one field per flag (llama.cpp's flag names and meanings).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/error.h"
#include "model/sampler.h"

namespace qe::cli {

struct RunOptions {
  std::string model;               // -m
  std::string prompt;              // -p
  std::string prompt_file;         // -f
  std::vector<int32_t> token_ids;  // --token-ids (dev): the prompt as ids, not tokenized
  int32_t n_predict = -1;          // -n: tokens to generate, -1 = until end of generation or full context
  int64_t n_ctx = 0;               // -c: 0 = the model's context, capped at 4096
  int64_t n_batch = 512;           // -b: prompt tokens per forward pass
  int n_threads = 0;               // -t: 0 = physical cores
  int64_t seed = -1;               // -s: -1 = random
  model::SamplerParams sampling;   // --temp --top-k --top-p --min-p --repeat-penalty --repeat-last-n
  std::string isa;                 // --isa
  std::string cache_type = "f16";  // --cache-type
  std::string dump_logits;         // --dump-logits (dev): raw f32 logits of every prompt position
  bool verbose = false;            // --verbose
};

// Loads the model and generates, streaming the prompt and the text to stdout and logs to stderr.
Status run(const RunOptions& o);

}  // namespace qe::cli
