#include "model/perplexity.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "formats/error.h"

namespace qe::model::ppl {
namespace {

// ggml's nearest_int: adding 1.5 * 2^23 puts the rounded integer in the low mantissa bits
// (round-half-even), valid for |x| < 2^22; the quantized log-probs are in [0, 65535].
int nearest_int(float x) {
  const int32_t i = std::bit_cast<int32_t>(x + 12582912.f);
  return (i & 0x007fffff) - 0x00400000;
}

float row_float(std::span<const uint16_t> row, int k) {
  float f;
  std::memcpy(&f, row.data() + 2 * k, sizeof f);
  return f;
}

}  // namespace

double token_nll(std::span<const float> logits, int32_t tok) {
  QE_CHECK(!logits.empty() && tok >= 0 && static_cast<size_t>(tok) < logits.size());
  float max_logit = logits[0];
  for (float l : logits) max_logit = std::max(max_logit, l);
  double sum_exp = 0.0;
  for (float l : logits) sum_exp += std::exp(l - max_logit);  // float expf, double sum
  return -(static_cast<double>(logits[static_cast<size_t>(tok)] - max_logit) - std::log(sum_exp));
}

double PplAccumulator::ppl() const {
  return count > 0 ? std::exp(nll / static_cast<double>(count)) : 0.0;
}

double PplAccumulator::ppl_error() const {
  if (count < 2) return -1.0;
  const double n = static_cast<double>(count);
  const double mean = nll / n;
  const double var = nll2 / n - mean * mean;
  if (!(var > 0)) return -1.0;
  return std::sqrt(var / (n - 1)) * std::exp(mean);
}

int64_t log_prob_row_size(int64_t n_vocab) {
  return 2 * ((n_vocab + 1) / 2) + 4;
}

double encode_log_probs(std::span<const float> logits, int32_t tok, std::span<uint16_t> row) {
  const size_t n = logits.size();
  QE_CHECK(n > 0 && tok >= 0 && static_cast<size_t>(tok) < n);
  QE_CHECK(static_cast<int64_t>(row.size()) == log_prob_row_size(static_cast<int64_t>(n)));
  float max_logit = logits[0], min_logit = logits[0];
  for (float l : logits) {
    max_logit = std::max(max_logit, l);
    min_logit = std::min(min_logit, l);
  }
  min_logit = std::max(min_logit, max_logit - 16);
  double sum_exp = 0.0;
  for (float l : logits) sum_exp += std::exp(l - max_logit);
  const float log_sum_exp = static_cast<float>(std::log(sum_exp));
  const float min_log_prob = min_logit - max_logit - log_sum_exp;
  const float scale = (max_logit - min_logit) / 65535.f;
  std::memcpy(row.data(), &scale, sizeof scale);
  std::memcpy(row.data() + 2, &min_log_prob, sizeof min_log_prob);
  uint16_t* q = row.data() + 4;
  std::fill(q, row.data() + row.size(), uint16_t{0});
  if (scale != 0) {
    const float inv_scale = 1 / scale;
    for (size_t i = 0; i < n; ++i)
      if (logits[i] > min_logit)
        q[i] = static_cast<uint16_t>(nearest_int(inv_scale * (logits[i] - min_logit)));
  }
  return max_logit + log_sum_exp - logits[static_cast<size_t>(tok)];
}

float decode_log_prob(std::span<const uint16_t> row, int32_t i) {
  return row_float(row, 0) * static_cast<float>(row[4 + static_cast<size_t>(i)]) + row_float(row, 1);
}

KlToken kl_token(std::span<const float> logits, std::span<const uint16_t> base_row, int32_t tok) {
  const size_t n = logits.size();
  QE_CHECK(n > 0 && tok >= 0 && static_cast<size_t>(tok) < n);
  QE_CHECK(static_cast<int64_t>(base_row.size()) == log_prob_row_size(static_cast<int64_t>(n)));
  float max_logit = logits[0];
  size_t imax = 0;
  for (size_t i = 1; i < n; ++i)
    if (logits[i] > max_logit) {
      max_logit = logits[i];
      imax = i;
    }
  double sum_exp = 0.0;
  for (float l : logits) sum_exp += std::exp(l - max_logit);
  const float log_sum_exp = static_cast<float>(std::log(sum_exp));
  const float scale = row_float(base_row, 0), min_log_prob = row_float(base_row, 1);
  const uint16_t* base = base_row.data() + 4;

  KlToken t;
  t.nll = max_logit + log_sum_exp - logits[static_cast<size_t>(tok)];
  t.nll_base = -(scale * base[tok] + min_log_prob);
  const float log_norm = max_logit + log_sum_exp;  // log q_i = logits_i - log_norm
  double sum = 0;
  size_t imax_base = 0;
  float p_log_base_max = 0;
  for (size_t i = 0; i < n; ++i) {
    const float p_log_base = scale * base[i] + min_log_prob;
    if (i == 0 || p_log_base > p_log_base_max) {
      p_log_base_max = p_log_base;
      imax_base = i;
    }
    // The base row cannot resolve probabilities below e^-16 (its floor): llama.cpp leaves them out.
    if (p_log_base > -16.f) sum += std::exp(p_log_base) * (p_log_base - logits[i] + log_norm);
  }
  t.kld = sum;
  t.same_top = imax == imax_base;
  t.p_diff = std::exp(-t.nll) - std::exp(-t.nll_base);
  return t;
}

void KlStats::add(const KlToken& t) {
  sum_nll += t.nll;
  sum_nll2 += t.nll * t.nll;  // float products, as llama.cpp
  sum_nll_base += t.nll_base;
  sum_nll_base2 += t.nll_base * t.nll_base;
  sum_nll_nll_base += t.nll * t.nll_base;
  sum_kld += t.kld;
  sum_kld2 += t.kld * t.kld;
  sum_p_diff += t.p_diff;
  const double p_diff2 = t.p_diff * t.p_diff;
  sum_p_diff2 += p_diff2;
  sum_p_diff4 += p_diff2 * p_diff2;
  max_p_diff = std::max(max_p_diff, std::fabs(t.p_diff));
  n_same_top += t.same_top ? 1 : 0;
  ++count;
}

Estimate mean_and_uncertainty(double sum, double sum2, size_t count) {
  if (count < 1) return {};
  const double n = static_cast<double>(count);
  const double f = sum / n;
  double df = sum2 / n - f * f;
  df = df > 0 && count > 10 ? std::sqrt(df / (n - 1)) : 0.0;
  return {f, df};
}

double covariance(double sum_a, double sum_b, double sum_ab, size_t count) {
  if (count < 10) return 0.0;
  const double n = static_cast<double>(count);
  return (sum_ab / n - (sum_a / n) * (sum_b / n)) / (n - 1);
}

KlSummary summarize(const KlStats& s) {
  KlSummary r;
  const Estimate log_ppl = mean_and_uncertainty(s.sum_nll, s.sum_nll2, s.count);
  const Estimate log_ppl_base = mean_and_uncertainty(s.sum_nll_base, s.sum_nll_base2, s.count);
  r.ppl = {std::exp(log_ppl.value), std::exp(log_ppl.value) * log_ppl.error};
  r.ppl_base = {std::exp(log_ppl_base.value), std::exp(log_ppl_base.value) * log_ppl_base.error};
  const double cov = covariance(s.sum_nll, s.sum_nll_base, s.sum_nll_nll_base, s.count);
  r.log_ppl_correlation = cov / (log_ppl.error * log_ppl_base.error);
  r.log_ppl_ratio = {
      log_ppl.value - log_ppl_base.value,
      std::sqrt(log_ppl.error * log_ppl.error + log_ppl_base.error * log_ppl_base.error - 2.0 * cov)};
  r.ppl_ratio = {std::exp(r.log_ppl_ratio.value), std::exp(r.log_ppl_ratio.value) * r.log_ppl_ratio.error};
  const double ppl_cov = r.ppl.value * r.ppl_base.value * cov;
  r.ppl_diff = {r.ppl.value - r.ppl_base.value,
                std::sqrt(r.ppl.error * r.ppl.error + r.ppl_base.error * r.ppl_base.error - 2.0 * ppl_cov)};
  r.kld = mean_and_uncertainty(s.sum_kld, s.sum_kld2, s.count);
  r.p_diff = mean_and_uncertainty(s.sum_p_diff, s.sum_p_diff2, s.count);
  const Estimate mse = mean_and_uncertainty(s.sum_p_diff2, s.sum_p_diff4, s.count);
  r.p_diff_rms.value = std::sqrt(mse.value);
  r.p_diff_rms.error = r.p_diff_rms.value > 0 ? 0.5 / r.p_diff_rms.value * mse.error : 0.0;
  if (s.count > 0) {
    const double p = static_cast<double>(s.n_same_top) / static_cast<double>(s.count);
    r.same_top = {p, s.count > 1 ? std::sqrt(p * (1 - p) / static_cast<double>(s.count - 1)) : 0.0};
  }
  return r;
}

float percentile(std::span<const float> sorted, float fraction) {
  QE_CHECK(!sorted.empty());
  if (fraction <= 0) return sorted.front();
  if (fraction >= 1) return sorted.back();
  float p = fraction * static_cast<float>(sorted.size() - 1);
  const size_t ip = static_cast<size_t>(p);
  p -= static_cast<float>(ip);
  return (1 - p) * sorted[ip] + p * sorted[std::min(ip + 1, sorted.size() - 1)];
}

float median(std::span<const float> sorted) {
  QE_CHECK(!sorted.empty());
  const size_t n = sorted.size();
  return n % 2 == 0 ? 0.5f * (sorted[n / 2] + sorted[n / 2 - 1]) : sorted[n / 2];
}

}  // namespace qe::model::ppl
