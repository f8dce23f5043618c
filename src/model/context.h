// A context: the state one stream of tokens runs in (llama.cpp's llama_context). The KV cache for n_ctx
// positions, the activation buffers for batches of n_batch tokens, the position the next token goes to,
// and time counters. Several contexts may share one Model, which must outlive them; one context is used
// by one thread at a time (its forward passes are parallel inside).
//
//   Result<Context> ctx = Context::create(model, {.n_ctx = 512});
//   Result<std::span<const float>> logits = ctx->eval(prompt);   // last token's n_vocab logits
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "formats/error.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/run_state.h"

namespace qe::model {

struct ContextParams {
  int64_t n_ctx = 0;        // positions the KV cache holds; 0 = default_n_ctx(config)
  int64_t n_batch = kDefaultBatch;  // most tokens per forward pass (GEMM width); capped at n_ctx
  bool all_logits = false;  // room for the logits of every token of a batch (eval's sink, decode(all))
};

// The model's training context, capped at 4096 so a 128k-context model does not allocate gigabytes of
// cache by default.
int64_t default_n_ctx(const Config& c);

// llama.cpp's llama_perf_context split: an evaluation of several tokens counts as prompt, of one token
// as a decode step ("eval").
struct ContextTimings {
  double prompt_ms = 0;
  int64_t n_prompt = 0;  // tokens
  double eval_ms = 0;
  int64_t n_eval = 0;  // single-token evaluations
};

class Context {
 public:
  // Receives each batch's logits, (tokens, n_vocab) row-major; an error stops the evaluation.
  using LogitsSink = std::function<Status(std::span<const float>)>;

  // Error (option "n_ctx", "n_batch") for sizes below 1, or when the cache does not fit in memory.
  static Result<Context> create(const Model& model, const ContextParams& params);

  // Evaluates tokens at positions n_past() .. in batches of n_batch and returns the last token's logits
  // (n_vocab, valid until the next call). With a sink (needs all_logits), every batch's logits go to it
  // first. Error when the tokens do not fit in the context (option "n_ctx") or an id is not in the
  // vocabulary; the cache then holds the batches already evaluated.
  Result<std::span<const float>> eval(std::span<const int32_t> tokens, const LogitsSink& sink = {});

  // One forward pass of 1..n_batch tokens at n_past(): the logits of every token when `all` (needs
  // all_logits), else of the last one. For callers that choose their own batches (perplexity).
  Result<std::span<const float>> decode(std::span<const int32_t> tokens, bool all);

  // Back to position 0: the next tokens overwrite the cache (a new sequence).
  void clear() { n_past_ = 0; }

  const Model& model() const { return *model_; }
  int64_t n_ctx() const { return state_.n_ctx; }
  int64_t n_batch() const { return state_.n_batch; }
  int64_t n_past() const { return n_past_; }  // tokens in the cache = position of the next one
  int64_t n_vocab() const { return model_->config.n_vocab; }
  const KvCache& kv_cache() const { return kv_; }
  const ContextTimings& timings() const { return timings_; }
  // The threads its forward passes run on: a benchmark that interleaves other parallel work with them
  // (qbench's read along decode) runs it there, so that they stay awake between two passes as they do
  // when passes follow each other.
  kernels::ThreadTeam& team() const { return *state_.team; }

 private:
  Context(const Model& m, KvCache kv, RunState s) : model_(&m), kv_(std::move(kv)), state_(std::move(s)) {}

  const Model* model_;
  KvCache kv_;
  RunState state_;
  bool all_logits_ = false;  // state_ was sized for every token's logits
  int64_t n_past_ = 0;
  ContextTimings timings_;
};

}  // namespace qe::model
