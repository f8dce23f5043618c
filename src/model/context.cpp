#include "model/context.h"

#include <fmt/core.h>

#include <algorithm>

#include "model/forward.h"
#include "model/sampler.h"
#include "model/timing.h"

namespace qe::model {
int64_t default_n_ctx(const Config& c) {
  return std::min<int64_t>(c.n_ctx_train, 4096);
}

Result<Context> Context::create(const Model& model, const ContextParams& params) {
  const Config& c = model.config;
  const int64_t n_ctx = params.n_ctx > 0 ? params.n_ctx : default_n_ctx(c);
  if (params.n_ctx < 0 || n_ctx < 1)
    return Error{"", "n_ctx", fmt::format("{} must be >= 1", params.n_ctx), "n_ctx"};
  if (params.n_batch < 1)
    return Error{"", "n_batch", fmt::format("{} must be >= 1", params.n_batch), "n_batch"};
  const int64_t n_batch = std::min(params.n_batch, n_ctx);
  Result<KvCache> kv = KvCache::create(c, n_ctx, model.options.cache_type, model.options.cache_layout());
  if (!kv) return kv.error();
  Result<RunState> state =
      RunState::create(c, model.weights.rope_freqs, n_batch, n_ctx, model.n_threads(), params.all_logits);
  if (!state) return state.error();
  state->numerics = model.options.numerics;
  Context ctx(model, std::move(*kv), std::move(*state));
  ctx.all_logits_ = params.all_logits;
  return ctx;
}

Result<std::span<const float>> Context::decode(std::span<const int32_t> tokens, bool all) {
  QE_CHECK(!all || all_logits_);
  state_.all_logits = all;  // read per call; the buffer was sized at creation
  Result<std::span<const float>> r = forward(model_->config, model_->weights, state_, kv_, tokens, n_past_);
  if (!r) return r.error();
  // A NaN or Inf in a weight's scales (a damaged or hostile file: the reader cannot afford to decode
  // every block) reaches the logits; no sampler or perplexity can use them, and sorting them is
  // undefined behaviour. Stop with the position instead.
  if (const size_t bad = sampling::first_non_finite(*r); bad != r->size()) {
    const int64_t t = static_cast<int64_t>(bad) / model_->config.n_vocab + (all ? 0 : static_cast<int64_t>(tokens.size()) - 1);
    return Error{"", "logits",
                 fmt::format("non-finite value ({}) at position {}: the weights or scales of the model hold NaN or Inf",
                             (*r)[bad], n_past_ + t)};
  }
  n_past_ += static_cast<int64_t>(tokens.size());
  return r;
}

Result<std::span<const float>> Context::eval(std::span<const int32_t> tokens, const LogitsSink& sink) {
  QE_CHECK(!sink || all_logits_);
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return Error{"", "eval", "no tokens to evaluate"};
  if (n_past_ + n > n_ctx())
    return Error{"", "",
                 fmt::format("{} tokens at position {} need {} positions, more than the context of {}", n,
                             n_past_, n_past_ + n, n_ctx()),
                 "n_ctx"};
  const Clock::time_point t0 = Clock::now();
  std::span<const float> logits;
  for (size_t p = 0; p < tokens.size(); p += static_cast<size_t>(n_batch())) {
    const size_t k = std::min(tokens.size() - p, static_cast<size_t>(n_batch()));
    Result<std::span<const float>> r = decode(tokens.subspan(p, k), /*all=*/static_cast<bool>(sink));
    if (!r) return r.error();
    if (sink)
      if (Status st = sink(*r); !st) return st.error();
    logits = r->last(static_cast<size_t>(n_vocab()));
  }
  (n == 1 ? timings_.eval_ms : timings_.prompt_ms) += ms_since(t0);
  (n == 1 ? timings_.n_eval : timings_.n_prompt) += n;
  return logits;
}

}  // namespace qe::model
