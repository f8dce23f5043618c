#include "cli/sampling_flags.h"

#include <fmt/core.h>

#include <charconv>
#include <cmath>
#include <string>

namespace qe::cli {

Result<model::LogitBias> parse_logit_bias(std::string_view text) {
  const auto bad = [&](std::string_view why) {
    return Error{"", "--logit-bias",
                 fmt::format("'{}' {} (TOKEN_ID+BIAS or TOKEN_ID-BIAS, e.g. 15043+1 or 15043-inf)",
                             printable(text), why)};
  };
  model::LogitBias b;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, b.id);
  if (ec != std::errc() || p == text.data()) return bad("does not start with a token id");
  if (b.id < 0) return bad("has a negative token id");
  if (p == end || (*p != '+' && *p != '-')) return bad("has no + or - after the token id");
  // The sign belongs to the bias; -inf bans the token, as in llama-cli. +inf would make the softmax's
  // probabilities NaN: a large finite bias (+100) makes a token all but certain instead.
  const std::string_view rest(p, static_cast<size_t>(end - p));
  if (rest == "-inf") {
    b.bias = -INFINITY;
    return b;
  }
  if (rest == "+inf") return bad("asks for +inf, which no probability can hold (use e.g. +100)");
  const char* from = *p == '+' ? p + 1 : p;
  auto [q, ec2] = std::from_chars(from, end, b.bias);
  if (ec2 != std::errc() || q != end || !std::isfinite(b.bias) || (from != p && *from == '-'))
    return bad("has no number after the sign");
  return b;
}

void add_sampling_options(CLI::App& app, model::SamplerParams& p, const std::string& group) {
  app.add_option("--temp", p.temp, "temperature (<= 0: greedy)")->group(group);
  app.add_option("--top-k", p.top_k, "top-k sampling (0 = disabled)")->group(group);
  app.add_option("--top-p", p.top_p, "top-p sampling (1.0 = disabled)")->group(group);
  app.add_option("--min-p", p.min_p, "min-p sampling (0.0 = disabled)")->group(group);
  app.add_option("--repeat-penalty", p.repeat_penalty, "penalize repeat sequence of tokens (1.0 = disabled)")
      ->group(group);
  app.add_option("--repeat-last-n", p.repeat_last_n,
                 "last n tokens to consider for the penalties (0 = disabled, -1 = ctx_size)")
      ->group(group);
  app.add_option("--presence-penalty", p.presence_penalty, "repeat alpha presence penalty (0.0 = disabled)")
      ->group(group);
  app.add_option("--frequency-penalty", p.frequency_penalty,
                 "repeat alpha frequency penalty (0.0 = disabled)")
      ->group(group);
  app.add_option_function<std::vector<std::string>>(
         "-l,--logit-bias",
         [&p](const std::vector<std::string>& all) {
           for (const std::string& s : all) {
             Result<model::LogitBias> b = parse_logit_bias(s);
             if (!b) throw CLI::ValidationError(b.error().message());
             p.logit_bias.push_back(*b);
           }
         },
         "modifies the likelihood of a token: TOKEN_ID(+/-)BIAS, e.g. 15043+1, 15043-inf (repeatable)")
      ->group(group);
}

Status check_logit_bias(const model::SamplerParams& p, int64_t n_vocab, const std::string& model_file) {
  for (const model::LogitBias& b : p.logit_bias)
    if (b.id >= n_vocab)
      return Error{model_file, "--logit-bias",
                   fmt::format("token id {} is outside the model's vocabulary of {} tokens", b.id, n_vocab)};
  return Status::Ok();
}

}  // namespace qe::cli
