// The sampling flags of llama.cpp's tools (llama-cli, llama-server), written once for qrun and qserve
// (for qserve they are the defaults a request's fields override).
#pragma once

#include <CLI/CLI.hpp>
#include <string_view>

#include "formats/error.h"
#include "model/sampler.h"

namespace qe::cli {

// --temp --top-k --top-p --min-p --repeat-penalty --repeat-last-n --presence-penalty --frequency-penalty
// -l/--logit-bias, into p, under the help group `group`.
void add_sampling_options(CLI::App& app, model::SamplerParams& p, const std::string& group);

// llama-cli's TOKEN_ID(+/-)BIAS: "15043+1", "15043-0.5", "15043-inf". Error: its reason, in words.
Result<model::LogitBias> parse_logit_bias(std::string_view text);

// Every --logit-bias token inside the model's vocabulary of n_vocab tokens; else an error naming the
// flag and the model file.
Status check_logit_bias(const model::SamplerParams& p, int64_t n_vocab, const std::string& model_file);

}  // namespace qe::cli
