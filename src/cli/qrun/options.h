// qrun's settings, one field per flag (llama.cpp's flag names and meanings).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cli/sampling_flags.h"
#include "formats/error.h"
#include "model/run_state.h"
#include "model/sampler.h"

namespace qe::cli {

struct RunOptions {
  std::string model;               // -m
  std::string prompt;              // -p
  std::string prompt_file;         // -f
  std::vector<int32_t> token_ids;  // --token-ids (dev): the prompt as ids, not tokenized
  int32_t n_predict = -1;          // -n: tokens to generate, -1 = until end of generation or full context
  int64_t n_ctx = 0;               // -c: 0 = the model's context, capped at 4096
  int64_t n_batch = model::kDefaultBatch;  // -b: prompt tokens per forward pass (--numerics llama.cpp: 512)
  int n_threads = 0;               // -t: 0 = physical cores
  int64_t seed = -1;               // -s: -1 = random
  model::SamplerParams sampling;   // cli/sampling_flags.h: --temp ... --logit-bias
  GrammarOptions grammar;          // --grammar, --grammar-file, -j, -jf
  std::string isa;                 // --isa
  std::string cache_type = "f16";  // --cache-type
  std::string cache_type_k;        // -ctk, --cache-type-k: "" = --cache-type's (K and V must agree)
  std::string cache_type_v;        // -ctv, --cache-type-v
  bool ignore_eos = false;         // --ignore-eos: end-of-generation tokens are never sampled
  bool no_display_prompt = false;  // --no-display-prompt: the prompt is not echoed
  bool escape = true;              // -e (llama-cli's default) / --no-escape: escapes in -p, -f, -sys, chat lines
  std::string dump_logits;         // --dump-logits (dev): f32 logits of the prompt, then of each decode step
  bool verbose = false;            // --verbose
  bool no_repack = false;          // -nr, --no-repack: weights stay in the file's layout
  bool f16_as_bf16 = false;        // --f16-as-bf16: f16 matrices repacked as bf16 (lossy, opt-in)
  std::string numerics = "fast";   // --numerics: fast, or llama.cpp (its bits; implies -nr)

  // Chat (llama-cli's conversation mode)
  bool conversation = false;     // -cnv: user turns from stdin, replies to stdout
  bool no_conversation = false;  // -no-cnv: completion (the default; llama-cli's default is chat)
  bool single_turn = false;      // -st: chat for one user message, then exit
  std::string system_prompt;  // -sys
  std::string chat_template;  // --chat-template NAME ("" = the model's, else chatml)

  // llama-perplexity
  bool perplexity = false;     // --perplexity: score -f's text
  bool kl_divergence = false;  // --kl-divergence: compare with --kl-divergence-base's saved logits
  std::string
      kl_divergence_base;  // --kl-divergence-base FILE: written by --perplexity, read by --kl-divergence
  int32_t n_chunks = -1;   // --chunks: at most this many chunks (-1 = all)
  bool force = false;      // --force: --perplexity may overwrite an existing --kl-divergence-base
};

// Loads the model and runs the mode the options ask for: completion (the default: the prompt and the
// generated text to stdout), chat, perplexity or KL divergence. Logs go to stderr.
Status run(const RunOptions& o);

}  // namespace qe::cli
