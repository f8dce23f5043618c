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

std::vector<int32_t> eog_ids(const Model& model) {
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < model.config.n_vocab; ++id)
    if (model.tok.is_eog(id)) ids.push_back(id);
  return ids;
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
                               const Context::LogitsSink& logits_sink) {
  if (Status st = check_prompt(ctx.model(), prompt, ctx.n_ctx() - ctx.n_past()); !st) return st.error();
  const tokenizer::Tokenizer& tok = ctx.model().tok;
  tokenizer::Utf8Stream out;
  for (int32_t id : prompt) {
    sampler.accept_prompt(id);  // llama.cpp's penalties see the prompt too (its grammar does not)
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
  Result<std::span<const float>> logits = ctx.eval(prompt, logits_sink);
  if (!logits) return logits.error();
  const double prompt_ms = ms_since(t_prompt);

  Result<GenerateStats> s = generate_from(ctx, sampler, *logits, params, on_chunk, out, logits_sink);
  if (!s) return s;
  s->n_prompt = static_cast<int64_t>(prompt.size());
  s->prompt_ms = prompt_ms;
  return s;
}

SampledToken sample_token(const tokenizer::Tokenizer& tok, Sampler& sampler, std::span<const float> logits,
                          tokenizer::Utf8Stream& out) {
  return take_token(tok, sampler, sampler.sample(logits), out);
}

SampledToken take_token(const tokenizer::Tokenizer& tok, Sampler& sampler, int32_t id, tokenizer::Utf8Stream& out) {
  SampledToken t;
  t.id = id;
  if (id < 0) {  // the grammar allows no token: the generation ends as at an end-of-generation token
    t.eog = true;
    return t;
  }
  sampler.accept(t.id);
  t.eog = tok.is_eog(t.id);
  if (t.eog) return t;
  t.piece = tok.token_to_piece(t.id, /*special=*/false);
  t.text = out.push(t.piece);
  return t;
}

std::optional<StopReason> stop_after_token(int64_t n_gen, int32_t n_predict, int64_t n_past, int64_t n_ctx,
                                           bool go_on) {
  if (n_predict >= 0 && n_gen >= n_predict) return StopReason::n_predict;
  if (n_past >= n_ctx) return StopReason::context_full;
  if (!go_on) return StopReason::callback;
  return std::nullopt;
}

Result<GenerateStats> generate_from(Context& ctx, Sampler& sampler, std::span<const float> logits,
                                    const GenerateParams& params, const StreamCallback& on_chunk,
                                    tokenizer::Utf8Stream& out, const Context::LogitsSink& decode_logits) {
  const tokenizer::Tokenizer& tok = ctx.model().tok;
  const Clock::time_point t_gen = Clock::now();
  GenerateStats s;
  s.stop = StopReason::n_predict;  // n_predict == 0: nothing to do
  // Order per token, as llama-cli: sample, accept, stop on EOG (not shown), stream, stop on n_predict or
  // a full context (the token stays unevaluated), then evaluate it for the next logits.
  while (params.n_predict < 0 || s.n_gen < params.n_predict) {
    const SampledToken t = sample_token(tok, sampler, logits, out);
    if (t.eog) {
      s.stop = StopReason::eog;
      break;
    }
    ++s.n_gen;
    const bool go_on = on_chunk({t.id, t.piece, t.text, false, std::nullopt});
    if (const std::optional<StopReason> stop =
            stop_after_token(s.n_gen, params.n_predict, ctx.n_past(), ctx.n_ctx(), go_on)) {
      s.stop = *stop;
      s.unevaluated = t.id;
      break;
    }
    const Clock::time_point t_eval = Clock::now();
    Result<std::span<const float>> r = ctx.eval(std::span<const int32_t>(&t.id, 1), decode_logits);
    if (!r) return r.error();
    s.eval_ms += ms_since(t_eval);
    ++s.n_eval;
    logits = *r;
  }
  const std::string rest = out.finish();
  on_chunk({-1, {}, rest, false, s.stop});
  s.gen_ms = ms_since(t_gen);
  return s;
}

}  // namespace qe::model
