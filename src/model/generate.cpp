#include "model/generate.h"

#include <fmt/core.h>

#include "model/timing.h"

namespace qe::model {

std::string_view stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::eog:
      return "end of generation";
    case StopReason::n_predict:
      return "n_predict";
    case StopReason::context_full:
      return "context full";
    case StopReason::callback:
      return "stopped by the callback";
  }
  return "?";
}

std::vector<int32_t> tokenize_prompt(const Model& model, std::string_view text) {
  return model.tok.tokenize(text, /*add_special=*/true, /*parse_special=*/true);
}

Status check_prompt(const Model& model, std::span<const int32_t> prompt, int64_t n_ctx) {
  if (prompt.empty())
    return Error{"", "", "the prompt is empty (and the vocabulary adds no BOS token)", "prompt"};
  for (int32_t id : prompt)
    if (id < 0 || id >= model.config.n_vocab)
      return Error{"", "",
                   fmt::format("token id {} is outside the vocabulary of {}", id, model.config.n_vocab)};
  const int64_t n = static_cast<int64_t>(prompt.size());
  if (n > n_ctx)
    return Error{"", "", fmt::format("the prompt is {} tokens, longer than the context of {}", n, n_ctx),
                 "n_ctx"};
  return {};
}

Result<GenerateStats> generate(Context& ctx, Sampler& sampler, std::span<const int32_t> prompt,
                               const GenerateParams& params, const StreamCallback& on_chunk,
                               const Context::LogitsSink& prompt_logits) {
  if (Status st = check_prompt(ctx.model(), prompt, ctx.n_ctx() - ctx.n_past()); !st) return st.error();
  const tokenizer::Tokenizer& tok = ctx.model().tok;
  tokenizer::Utf8Stream out;
  for (int32_t id : prompt) {
    sampler.accept(id);  // llama.cpp's penalties see the prompt too
    if (!params.echo_prompt) continue;
    const std::string_view piece = tok.token_to_piece(id, /*special=*/false);
    const std::string text = out.push(piece);
    if (!on_chunk({id, piece, text, /*prompt=*/true, std::nullopt})) {
      const std::string rest = out.finish();
      on_chunk({-1, {}, rest, false, StopReason::callback});
      GenerateStats s;
      s.stop = StopReason::callback;
      return s;
    }
  }

  const Clock::time_point t_prompt = Clock::now();
  Result<std::span<const float>> logits = ctx.eval(prompt, prompt_logits);
  if (!logits) return logits.error();
  const double prompt_ms = ms_since(t_prompt);

  Result<GenerateStats> s = generate_from(ctx, sampler, *logits, params, on_chunk, out);
  if (!s) return s;
  s->n_prompt = static_cast<int64_t>(prompt.size());
  s->prompt_ms = prompt_ms;
  return s;
}

Result<GenerateStats> generate_from(Context& ctx, Sampler& sampler, std::span<const float> logits,
                                    const GenerateParams& params, const StreamCallback& on_chunk,
                                    tokenizer::Utf8Stream& out) {
  const tokenizer::Tokenizer& tok = ctx.model().tok;
  const Clock::time_point t_gen = Clock::now();
  GenerateStats s;
  s.stop = StopReason::n_predict;  // n_predict == 0: nothing to do
  // Order per token, as llama-cli: sample, accept, stop on EOG (not shown), stream, stop on n_predict or
  // a full context (the token stays unevaluated), then evaluate it for the next logits.
  while (params.n_predict < 0 || s.n_gen < params.n_predict) {
    const int32_t id = sampler.sample(logits);
    sampler.accept(id);
    if (tok.is_eog(id)) {
      s.stop = StopReason::eog;
      break;
    }
    const std::string_view piece = tok.token_to_piece(id, /*special=*/false);
    const std::string text = out.push(piece);
    ++s.n_gen;
    const bool go_on = on_chunk({id, piece, text, false, std::nullopt});
    if (params.n_predict >= 0 && s.n_gen >= params.n_predict) {
      s.stop = StopReason::n_predict;
    } else if (ctx.n_past() >= ctx.n_ctx()) {
      s.stop = StopReason::context_full;
    } else if (!go_on) {
      s.stop = StopReason::callback;
    } else {
      const Clock::time_point t_eval = Clock::now();
      Result<std::span<const float>> r = ctx.eval(std::span<const int32_t>(&id, 1));
      if (!r) return r.error();
      s.eval_ms += ms_since(t_eval);
      ++s.n_eval;
      logits = *r;
      continue;
    }
    s.unevaluated = id;
    break;
  }
  const std::string rest = out.finish();
  on_chunk({-1, {}, rest, false, s.stop});
  s.gen_ms = ms_since(t_gen);
  return s;
}

}  // namespace qe::model
