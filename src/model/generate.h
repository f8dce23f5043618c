// Text generation over a Context, as llama-cli's completion does it: the prompt's ids (accepted by the
// sampler, so repeat penalties see them) -> prefill in batches -> sample, stream, evaluate, one token at
// a time until a stop condition. The caller sees every token through a callback and may stop early.
//
//   std::vector<int32_t> ids = tokenize_prompt(model, "The capital of France is");
//   auto print = [](const StreamChunk& c) { std::cout << c.text; return true; };
//   Result<GenerateStats> r = generate(ctx, sampler, ids, {.n_predict = 32}, print);
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/error.h"
#include "model/context.h"
#include "model/model.h"
#include "model/sampler.h"
#include "tokenizer/utf8.h"

namespace qe::model {

enum class StopReason {
  eog,           // the model produced an end-of-generation token (not streamed, not counted)
  n_predict,     // GenerateParams::n_predict tokens were generated
  context_full,  // the cache holds n_ctx positions: nothing more can be evaluated
  callback,      // the callback returned false
};
std::string_view stop_reason_name(StopReason r);

// One step of the stream. Tokens carry their bytes (`piece`) and the text that became complete with
// them (`text`: a multi-byte character split across tokens shows up with its last token). The last
// chunk of every generation has id -1, `stop` set, and the bytes still held (an unfinished character,
// as U+FFFD) in `text`.
struct StreamChunk {
  int32_t id = -1;
  std::string_view piece;          // token_to_piece(id) with control tokens as nothing, as llama-cli prints
  std::string_view text;           // UTF-8 text ready to show
  bool prompt = false;             // an echoed prompt token (GenerateParams::echo_prompt)
  std::optional<StopReason> stop;  // set on the last chunk only
};
// Return false to stop (the last chunk's return value is ignored).
using StreamCallback = std::function<bool(const StreamChunk&)>;

struct GenerateParams {
  int32_t n_predict = -1;    // tokens to generate; -1 = until end of generation or a full context
  bool echo_prompt = false;  // stream the prompt's pieces first (llama-cli prints the prompt)
};

struct GenerateStats {
  StopReason stop = StopReason::eog;
  int64_t n_prompt = 0;  // prompt tokens evaluated
  int64_t n_gen = 0;     // tokens generated and streamed
  int64_t n_eval = 0;    // single-token forward passes of the decode loop
  double prompt_ms = 0;  // the prefill (including a logits sink)
  double eval_ms = 0;    // the decode loop's forward passes
  double gen_ms = 0;     // the decode loop, sampling and streaming included
  // The last generated token when it is not in the cache (stopped by n_predict, a full context or the
  // callback before it was evaluated); -1 otherwise. A chat evaluates it before its next turn.
  int32_t unevaluated = -1;
};

// llama-cli's tokenization of a prompt: BOS as the vocabulary asks, control tokens written in the text
// (<|im_start|>) parsed as such.
std::vector<int32_t> tokenize_prompt(const Model& model, std::string_view text);

// Every end-of-generation id of the vocabulary (EOS, EOT, <|im_end|>, ...): what --ignore-eos bans.
std::vector<int32_t> eog_ids(const Model& model);

// A prompt generate() can run in a context of n_ctx positions: not empty (option "prompt"), every id
// in the vocabulary, no longer than n_ctx (option "n_ctx").
Status check_prompt(const Model& model, std::span<const int32_t> prompt, int64_t n_ctx);

// Generates from `prompt`, evaluated at ctx.n_past() (0 for a fresh context). logits_sink, when given
// (the context needs all_logits), receives the logits of every prompt position batch by batch, then those
// of each decode step (--dump-logits: the rows llama.cpp's logits_all keeps).
Result<GenerateStats> generate(Context& ctx, Sampler& sampler, std::span<const int32_t> prompt,
                               const GenerateParams& params, const StreamCallback& on_chunk,
                               const Context::LogitsSink& logits_sink = {});

// One generated token as llama-cli handles it: sampled from the logits of the last token in the cache,
// accepted by the sampler (repeat penalties), and, unless it ends the generation (not streamed, not
// counted), its piece and the text it completes through `out`. generate_from() and the BatchEngine
// share it, so a batched request gives generate()'s tokens and text.
struct SampledToken {
  int32_t id = -1;
  bool eog = false;
  std::string_view piece;  // token_to_piece with control tokens as nothing
  std::string text;
};
SampledToken sample_token(const tokenizer::Tokenizer& tok, Sampler& sampler, std::span<const float> logits,
                          tokenizer::Utf8Stream& out);
// The same for a token `id` the sampler already drew (Sampler::sample): the steps after the draw. The
// BatchEngine draws for its slots in parallel, then takes each token here in slot order.
SampledToken take_token(const tokenizer::Tokenizer& tok, Sampler& sampler, int32_t id, tokenizer::Utf8Stream& out);

// What ends a generation after its n_gen-th token was streamed, in llama-cli's order: n_predict tokens
// (n_predict >= 0), a full context (n_past of n_ctx positions hold K/V: the token cannot be evaluated),
// the callback's false (go_on); nothing when the token is to be evaluated next.
std::optional<StopReason> stop_after_token(int64_t n_gen, int32_t n_predict, int64_t n_past, int64_t n_ctx,
                                           bool go_on);

// The decode loop alone, for callers that evaluated the prompt themselves (a chat turn): samples from
// `logits` (those of the last token in the cache) and streams through `out`, whose held bytes carry
// over from anything streamed before. Stats count the loop only (n_prompt and prompt_ms are 0).
// decode_logits, when given (all_logits), receives each decode step's logits.
Result<GenerateStats> generate_from(Context& ctx, Sampler& sampler, std::span<const float> logits,
                                    const GenerateParams& params, const StreamCallback& on_chunk,
                                    tokenizer::Utf8Stream& out,
                                    const Context::LogitsSink& decode_logits = {});

}  // namespace qe::model
