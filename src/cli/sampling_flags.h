// The sampling flags of llama.cpp's tools (llama-cli, llama-server), written once for qrun and qserve
// (for qserve they are the defaults a request's fields override).
#pragma once

#include <CLI/CLI.hpp>
#include <string_view>

#include "formats/error.h"
#include "model/sampler.h"
#include "tokenizer/tokenizer.h"

namespace qe::cli {

// --temp --top-k --top-p --min-p --repeat-penalty --repeat-last-n --presence-penalty --frequency-penalty
// -l/--logit-bias, into p, under the help group `group`.
void add_sampling_options(CLI::App& app, model::SamplerParams& p, const std::string& group);

// llama-cli's TOKEN_ID(+/-)BIAS: "15043+1", "15043-0.5", "15043-inf". Error: its reason, in words.
Result<model::LogitBias> parse_logit_bias(std::string_view text);

// Every --logit-bias token inside the model's vocabulary of n_vocab tokens; else an error naming the
// flag and the model file.
Status check_logit_bias(const model::SamplerParams& p, int64_t n_vocab, const std::string& model_file);

// llama-cli's grammar flags: --grammar GBNF, --grammar-file FILE, -j/--json-schema SCHEMA,
// -jf/--json-schema-file FILE (-jf: give parse_llama_style its long name).
struct GrammarOptions {
  std::string text;
  std::string file;
  std::string json_schema;
  std::string json_schema_file;
};
void add_grammar_options(CLI::App& app, GrammarOptions& g, const std::string& group);

// The grammar the flags give (a schema converted as llama.cpp converts it), parsed and set in p with the
// vocabulary as the grammar reads it (p is left alone when no flag gave one). Error: two of the flags,
// a file that cannot be read, JSON that is not, or the grammar's line and column and what is wrong
// there, naming the flag.
Status load_grammar(const GrammarOptions& g, const tokenizer::Tokenizer& tok, model::SamplerParams& p);

}  // namespace qe::cli
