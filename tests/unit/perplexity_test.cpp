// The perplexity maths against the definitions computed here in long double: -log softmax, the
// perplexity and its error, the 16-bit log-probability rows (error within half a quantization step,
// tokens below the -16 floor clamped), and the KL divergence against such a row.
#include "model/perplexity.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace qe::model::ppl {
namespace {

constexpr uint32_t kSeed = 20240607;

std::vector<float> random_logits(std::mt19937& rng, size_t n, float spread) {
  std::normal_distribution<float> d(0.0f, spread);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// log softmax(logits)[i] in long double.
std::vector<long double> log_softmax(const std::vector<float>& l) {
  long double mx = *std::max_element(l.begin(), l.end()), sum = 0;
  for (float x : l) sum += std::exp(static_cast<long double>(x) - mx);
  std::vector<long double> out(l.size());
  for (size_t i = 0; i < l.size(); ++i) out[i] = static_cast<long double>(l[i]) - mx - std::log(sum);
  return out;
}

float row_scale(const std::vector<uint16_t>& row) {
  float f;
  std::memcpy(&f, row.data(), 4);
  return f;
}

TEST(Perplexity, TokenNllIsMinusLogSoftmax) {
  std::mt19937 rng(kSeed);
  for (size_t n : {1u, 2u, 7u, 256u, 4099u}) {
    const std::vector<float> l = random_logits(rng, n, 4.0f);
    const std::vector<long double> ls = log_softmax(l);
    for (size_t t : {size_t{0}, n / 2, n - 1}) {
      const double got = token_nll(l, static_cast<int32_t>(t));
      // float exp terms (1 ulp each) summed in double: relative error ~1e-7 of the sum
      EXPECT_NEAR(got, -static_cast<double>(ls[t]), 1e-6 * (1 + std::fabs(static_cast<double>(ls[t]))))
          << "seed " << kSeed << " n " << n << " token " << t;
    }
  }
  EXPECT_EQ(token_nll(std::vector<float>{3.0f}, 0), 0.0);  // one token: probability 1
  // Uniform logits: nll = log(n)
  EXPECT_NEAR(token_nll(std::vector<float>(1000, 0.5f), 17), std::log(1000.0), 1e-9);
}

TEST(Perplexity, AccumulatorMatchesTheDefinition) {
  PplAccumulator a;
  const std::vector<double> v = {1.5, 2.0, 0.25, 3.0, 1.0};
  for (double x : v) a.add(x);
  double mean = 0, var = 0;
  for (double x : v) mean += x;
  mean /= v.size();
  for (double x : v) var += (x - mean) * (x - mean);
  var /= v.size();  // llama.cpp: E[x^2] - E[x]^2, then / (count - 1)
  EXPECT_EQ(a.count, 5);
  EXPECT_NEAR(a.ppl(), std::exp(mean), 1e-12);
  EXPECT_NEAR(a.ppl_error(), std::exp(mean) * std::sqrt(var / 4), 1e-12);
  PplAccumulator flat;
  for (int i = 0; i < 4; ++i) flat.add(2.0);
  EXPECT_LT(flat.ppl_error(), 0);  // zero variance: llama.cpp reports an error, not an estimate
  EXPECT_EQ(PplAccumulator{}.ppl(), 0.0);
}

TEST(Perplexity, LogProbRowsRoundTripWithinHalfAStep) {
  std::mt19937 rng(kSeed + 1);
  for (size_t n : {1u, 2u, 3u, 255u, 256u, 1001u}) {
    const std::vector<float> l = random_logits(rng, n, 6.0f);  // spreads past the -16 floor
    const int64_t nv = log_prob_row_size(static_cast<int64_t>(n));
    EXPECT_EQ(nv % 2, 0);
    EXPECT_GE(nv, static_cast<int64_t>(n) + 4);
    std::vector<uint16_t> row(static_cast<size_t>(nv), 0xABCD);
    const int32_t tok = static_cast<int32_t>(n / 3);
    const double nll = encode_log_probs(l, tok, row);
    const std::vector<long double> ls = log_softmax(l);
    EXPECT_NEAR(nll, -static_cast<double>(ls[static_cast<size_t>(tok)]), 1e-5) << "n " << n;
    if (n % 2 == 1) {
      EXPECT_EQ(row.back(), 0) << "padding of an odd vocabulary";
    }
    const float scale = row_scale(row);
    const long double top = *std::max_element(ls.begin(), ls.end());
    for (size_t i = 0; i < n; ++i) {
      const double got = decode_log_prob(row, static_cast<int32_t>(i));
      if (ls[i] < top - 16) {  // below the floor: clamped to it
        EXPECT_NEAR(got, static_cast<double>(top - 16), 1e-4) << "n " << n << " i " << i;
      } else {
        // half a step of rounding, plus float rounding of values up to ~20 in magnitude
        EXPECT_NEAR(got, static_cast<double>(ls[i]), scale / 2 + 1e-5) << "n " << n << " i " << i;
      }
    }
  }
}

TEST(Perplexity, ConstantLogitsGiveAZeroScaleRow) {
  std::vector<uint16_t> row(static_cast<size_t>(log_prob_row_size(4)), 7);
  encode_log_probs(std::vector<float>(4, 1.0f), 0, row);
  EXPECT_EQ(row_scale(row), 0.0f);
  for (int32_t i = 0; i < 4; ++i) EXPECT_NEAR(decode_log_prob(row, i), -std::log(4.0), 1e-6);
}

TEST(Perplexity, KlOfAModelAgainstItselfIsQuantizationNoise) {
  std::mt19937 rng(kSeed + 2);
  const size_t n = 512;
  for (int rep = 0; rep < 20; ++rep) {
    const std::vector<float> l = random_logits(rng, n, 3.0f);
    std::vector<uint16_t> row(static_cast<size_t>(log_prob_row_size(n)));
    encode_log_probs(l, 5, row);
    const KlToken t = kl_token(l, row, 5);
    // each log p is off by at most half a step; KL = sum p (log p~ - log q) is bounded by it
    EXPECT_LE(std::fabs(t.kld), row_scale(row)) << "seed " << kSeed + 2 << " rep " << rep;
    EXPECT_TRUE(t.same_top);
    EXPECT_NEAR(t.nll, t.nll_base, row_scale(row));
    EXPECT_NEAR(t.p_diff, 0.0f, 1e-3f);
  }
}

TEST(Perplexity, KlMatchesTheDefinition) {
  std::mt19937 rng(kSeed + 3);
  const size_t n = 300;
  const std::vector<float> p = random_logits(rng, n, 2.0f);
  std::vector<float> q = p;
  std::normal_distribution<float> noise(0.0f, 0.5f);
  for (float& x : q) x += noise(rng);
  std::vector<uint16_t> row(static_cast<size_t>(log_prob_row_size(n)));
  encode_log_probs(p, 0, row);
  const std::vector<long double> lp = log_softmax(p), lq = log_softmax(q);
  long double want = 0;
  for (size_t i = 0; i < n; ++i) want += std::exp(lp[i]) * (lp[i] - lq[i]);
  const KlToken t = kl_token(q, row, 11);
  EXPECT_GT(want, 0.01L);
  // the base side is quantized: within a step of log p, times the total mass (about 1)
  EXPECT_NEAR(t.kld, static_cast<double>(want), 2 * row_scale(row)) << "seed " << kSeed + 3;
  EXPECT_NEAR(t.nll, -static_cast<double>(lq[11]), 1e-5);
  EXPECT_NEAR(t.nll_base, -static_cast<double>(lp[11]), row_scale(row));
  EXPECT_EQ(t.same_top, std::max_element(p.begin(), p.end()) - p.begin() ==
                            std::max_element(q.begin(), q.end()) - q.begin());
}

TEST(Perplexity, StatsAndSummary) {
  KlStats s;
  for (int i = 0; i < 200; ++i) {
    KlToken t;
    t.nll = 2.0f + 0.01f * static_cast<float>(i % 7);
    t.nll_base = t.nll - 0.1f;
    t.kld = 0.01 * (i % 3);
    t.p_diff = 0.001f * static_cast<float>((i % 5) - 2);
    t.same_top = i % 4 != 0;
    s.add(t);
  }
  const KlSummary r = summarize(s);
  EXPECT_EQ(s.count, 200u);
  EXPECT_NEAR(r.same_top.value, 0.75, 1e-12);
  EXPECT_NEAR(r.kld.value, 0.01 * (67 + 2 * 66) / 200.0, 1e-9);
  EXPECT_NEAR(r.log_ppl_ratio.value, 0.1, 1e-6);
  EXPECT_NEAR(r.ppl_ratio.value, std::exp(0.1), 1e-6);
  // nll and nll_base move together. The squares are float products (as llama.cpp): ~2.4e-7 relative of
  // E[x^2] ~ 4.2 against a variance of ~4e-4 leaves ~1e-3 of the variance, hence the tolerance.
  EXPECT_NEAR(r.log_ppl_correlation, 1.0, 3e-3);
  EXPECT_NEAR(r.ppl.value / r.ppl_base.value, std::exp(0.1), 1e-6);
  EXPECT_FLOAT_EQ(s.max_p_diff, 0.002f);

  EXPECT_EQ(mean_and_uncertainty(1.0, 1.0, 0).value, 0.0);
  EXPECT_EQ(mean_and_uncertainty(5.0, 30.0, 5).error, 0.0);  // <= 10 values: no uncertainty, as llama.cpp
  EXPECT_EQ(covariance(1, 2, 3, 9), 0.0);
}

TEST(Perplexity, PercentileInterpolates) {
  const std::vector<float> v = {0.0f, 1.0f, 2.0f, 3.0f, 4.0f};
  EXPECT_EQ(percentile(v, 0.0f), 0.0f);
  EXPECT_EQ(percentile(v, 1.0f), 4.0f);
  EXPECT_FLOAT_EQ(percentile(v, 0.5f), 2.0f);
  EXPECT_FLOAT_EQ(percentile(v, 0.9f), 3.6f);
  EXPECT_EQ(percentile(std::vector<float>{7.0f}, 0.3f), 7.0f);
}

TEST(Perplexity, MedianOfOddAndEvenCounts) {
  EXPECT_EQ(median(std::vector<float>{1.0f, 2.0f, 9.0f}), 2.0f);
  EXPECT_EQ(median(std::vector<float>{1.0f, 2.0f, 4.0f, 9.0f}), 3.0f);  // the mean of the middle two
  EXPECT_EQ(median(std::vector<float>{7.0f}), 7.0f);
}

}  // namespace
}  // namespace qe::model::ppl
