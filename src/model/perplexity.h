// The scoring maths of llama.cpp's llama-perplexity (tools/perplexity/perplexity.cpp), as pure
// functions so each can be tested alone: the negative log-likelihood of a token, the perplexity and its
// error estimate, the 16-bit log-probability rows of a --kl-divergence-base file, and the KL divergence
// statistics against such a row. Float/double mixes follow llama.cpp's code operation for operation, so
// our figures agree with its own to the last printed digit on the same logits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace qe::model::ppl {

// -log softmax(logits)[tok]: float max, double sum of expf(l - max), as llama.cpp's log_softmax.
double token_nll(std::span<const float> logits, int32_t tok);

// Running perplexity: sums of the per-token nll and its square (llama.cpp's nll, nll2).
struct PplAccumulator {
  double nll = 0, nll2 = 0;
  int64_t count = 0;

  void add(double v) {
    nll += v;
    nll2 += v * v;
    ++count;
  }
  double ppl() const;  // exp(mean nll)
  // llama.cpp's "+/-": ppl * sqrt(var(nll) / (count - 1)); negative when the variance is not positive
  // (llama.cpp then reports an error instead of the estimate).
  double ppl_error() const;
};

// ---- --kl-divergence-base rows. llama.cpp stores, per scored position, nv = 2*((n_vocab+1)/2) + 4
// uint16: a float scale and a float min_log_prob (the first 4 uint16), then log p_i of every token as
// round((logit_i - min_logit) / scale), where min_logit = max(min logit, max logit - 16) and scale =
// (max_logit - min_logit) / 65535; log p_i = scale * q_i + min_log_prob. Tokens more than 16 below the
// top are clamped to the floor (q = 0). The padding entry of an odd vocabulary stays 0.
int64_t log_prob_row_size(int64_t n_vocab);
// Writes the row for `logits` (row.size() == log_prob_row_size) and returns the nll of `tok` as llama.cpp
// computes it on this path (a float sum, slightly different rounding from token_nll).
double encode_log_probs(std::span<const float> logits, int32_t tok, std::span<uint16_t> row);
// log p_i of a row (the reader's side, for tests and tools).
float decode_log_prob(std::span<const uint16_t> row, int32_t i);

// One scored position compared with the base row.
struct KlToken {
  float nll = 0;          // -log q(tok) of the current model
  float nll_base = 0;     // -log p(tok) of the base (decoded)
  double kld = 0;         // sum_i p_i (log p_i - log q_i) over the base tokens with log p_i > -16
  float p_diff = 0;       // q(tok) - p(tok)
  bool same_top = false;  // argmax of q == argmax of p (first maximum on ties, both sides)
};
KlToken kl_token(std::span<const float> logits, std::span<const uint16_t> base_row, int32_t tok);

// llama.cpp's kl_divergence_result: sums over the positions, in the same float/double mix.
struct KlStats {
  double sum_nll = 0, sum_nll2 = 0, sum_nll_base = 0, sum_nll_base2 = 0, sum_nll_nll_base = 0;
  double sum_kld = 0, sum_kld2 = 0, sum_p_diff = 0, sum_p_diff2 = 0, sum_p_diff4 = 0;
  float max_p_diff = 0;
  size_t n_same_top = 0, count = 0;

  void add(const KlToken& t);
};

struct Estimate {
  double value = 0, error = 0;
};
// mean of sum/count and its standard error (0 when count <= 10 or the variance is not positive).
Estimate mean_and_uncertainty(double sum, double sum2, size_t count);
// Covariance of the means of a and b (0 when count < 10).
double covariance(double sum_a, double sum_b, double sum_ab, size_t count);

// What llama-perplexity --kl-divergence prints, derived from the sums.
struct KlSummary {
  Estimate ppl, ppl_base, log_ppl_ratio, ppl_ratio, ppl_diff, kld, p_diff, p_diff_rms, same_top;
  double log_ppl_correlation = 0;
};
KlSummary summarize(const KlStats& s);

// llama.cpp's percentile: linear interpolation between the sorted values around fraction*(n-1).
float percentile(std::span<const float> sorted, float fraction);
// The middle value (the mean of the two middle ones for an even count), as llama.cpp's.
float median(std::span<const float> sorted);

}  // namespace qe::model::ppl
