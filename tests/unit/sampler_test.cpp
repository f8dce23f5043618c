// The sampler's filters on hand-made logits (llama.cpp's semantics), greedy = argmax, and determinism
// under a seed.
#include "model/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

namespace qe::model {
namespace {

std::vector<Candidate> cands(std::vector<float> logits) {
  std::vector<Candidate> c;
  for (size_t i = 0; i < logits.size(); ++i) c.push_back({static_cast<int32_t>(i), logits[i], 0.0f});
  return c;
}

std::vector<int32_t> ids(const std::vector<Candidate>& c) {
  std::vector<int32_t> out;
  for (const Candidate& x : c) out.push_back(x.id);
  return out;
}

TEST(Sampling, SoftmaxSortsAndNormalises) {
  auto c = cands({0.0f, 2.0f, 1.0f});
  sampling::softmax(c);
  EXPECT_EQ(ids(c), (std::vector<int32_t>{1, 2, 0}));
  const double z = std::exp(0.0) + std::exp(2.0) + std::exp(1.0);
  EXPECT_NEAR(c[0].p, std::exp(2.0) / z, 1e-6);
  EXPECT_NEAR(c[2].p, 1.0 / z, 1e-6);
}

// softmax's order is std::stable_sort's by logit, descending: on long rows (a radix sort) and short ones,
// unsorted, sorted and reversed, with ties, -0 / +0, infinities, subnormals and negatives of every size.
TEST(Sampling, SoftmaxOrdersAsAStableSort) {
  std::mt19937 rng(3);
  const float odd[] = {0.0f, -0.0f, -INFINITY, INFINITY, 1e-45f, -1e-45f, -3.4e38f, 3.4e38f, -1.0f, 1.0f};
  for (int trial = 0; trial < 60; ++trial) {
    const size_t n = trial % 3 == 0 ? 50 + rng() % 900 : 1024 + rng() % 60000;
    std::vector<float> x(n);
    const int spread = 1 + static_cast<int>(rng() % 2000);
    for (float& v : x)
      v = rng() % 10 == 0 ? odd[rng() % 10]
                          : static_cast<float>(static_cast<int>(rng() % spread) - spread / 2) * 0.37f;
    if (trial % 5 == 1) std::sort(x.begin(), x.end(), std::greater<>());
    if (trial % 5 == 2) std::sort(x.begin(), x.end());
    if (trial % 7 == 0) std::fill(x.begin(), x.end(), -INFINITY);
    auto c = cands(x);
    auto want = c;
    std::stable_sort(want.begin(), want.end(),
                     [](const Candidate& a, const Candidate& b) { return a.logit > b.logit; });
    sampling::softmax(c);
    ASSERT_EQ(ids(c), ids(want)) << "trial " << trial << " n " << n;
  }
}

TEST(Sampling, TopPKeepsTheSmallestPrefixReachingP) {
  // probabilities 0.5, 0.25, 0.125, 0.125 (logits are their logs)
  auto make = [] { return cands({std::log(0.125f), std::log(0.5f), std::log(0.25f), std::log(0.125f)}); };
  auto c = make();
  sampling::top_p(c, 0.7f);  // 0.5 < 0.7 <= 0.75
  EXPECT_EQ(ids(c), (std::vector<int32_t>{1, 2}));
  c = make();
  sampling::top_p(c, 0.5f);  // the first already reaches p
  EXPECT_EQ(ids(c), (std::vector<int32_t>{1}));
  c = make();
  sampling::top_p(c, 0.01f);  // at least one is kept
  EXPECT_EQ(c.size(), 1u);
  c = make();
  sampling::top_p(c, 1.0f);  // disabled
  EXPECT_EQ(c.size(), 4u);
}

TEST(Sampling, MinPKeepsTokensAtLeastPTimesTheMostLikely) {
  auto c = cands({std::log(0.5f), std::log(0.3f), std::log(0.1f), std::log(0.04f)});
  sampling::min_p(c, 0.2f);  // threshold 0.1: 0.1 stays (>=), 0.04 goes
  std::vector<int32_t> kept = ids(c);
  std::sort(kept.begin(), kept.end());
  EXPECT_EQ(kept, (std::vector<int32_t>{0, 1, 2}));
  auto d = cands({1.0f, 0.0f});
  sampling::min_p(d, 0.0f);  // disabled
  EXPECT_EQ(d.size(), 2u);
}

TEST(Sampling, RepeatPenaltyDividesPositiveAndMultipliesNegative) {
  std::vector<float> x = {2.0f, -2.0f, 1.0f, 0.0f};
  const std::vector<int32_t> recent = {0, 1, 1, 1, 3};  // token 1 three times: penalised once
  sampling::penalties(x, recent, 2.0f, 0.0f, 0.0f);
  EXPECT_EQ(x, (std::vector<float>{1.0f, -4.0f, 1.0f, 0.0f}));  // token 2 not recent
}

// OpenAI's penalties as llama.cpp applies them: minus count * frequency + presence, after the repeat
// penalty, once for each distinct recent token; the values are exact in float.
TEST(Sampling, FrequencyAndPresencePenaltiesSubtractPerCount) {
  std::vector<float> x = {2.0f, -2.0f, 1.0f, 0.5f, 3.0f};
  const std::vector<int32_t> recent = {0, 1, 1, 1, 3, 7, -1};  // 7 and -1: outside the row, ignored
  sampling::penalties(x, recent, 2.0f, 0.25f, 0.5f);
  EXPECT_EQ(x[0], 2.0f / 2 - (1 * 0.25f + 0.5f));
  EXPECT_EQ(x[1], -2.0f * 2 - (3 * 0.25f + 0.5f));
  EXPECT_EQ(x[2], 1.0f);  // not recent
  EXPECT_EQ(x[3], 0.5f / 2 - (1 * 0.25f + 0.5f));
  EXPECT_EQ(x[4], 3.0f);
  // Negative values reward repetition.
  std::vector<float> y = {1.0f, 1.0f};
  sampling::penalties(y, std::vector<int32_t>{0, 0}, 1.0f, -0.5f, -1.0f);
  EXPECT_EQ(y, (std::vector<float>{3.0f, 1.0f}));
}

TEST(Sampling, TemperatureScalesLogits) {
  auto c = cands({2.0f, -1.0f});
  sampling::temperature(c, 0.5f);
  EXPECT_FLOAT_EQ(c[0].logit, 4.0f);
  EXPECT_FLOAT_EQ(c[1].logit, -2.0f);
}

TEST(Sampling, DrawWalksTheCumulativeDistribution) {
  auto make = [] { return cands({std::log(0.25f), std::log(0.75f)}); };
  auto c = make();
  EXPECT_EQ(c[sampling::draw(c, 0.0)].id, 1);
  c = make();
  EXPECT_EQ(c[sampling::draw(c, 0.74)].id, 1);
  c = make();
  EXPECT_EQ(c[sampling::draw(c, 0.76)].id, 0);
  c = make();
  EXPECT_EQ(c[sampling::draw(c, 0.999999)].id, 0);
}

TEST(Sampler, GreedyIsArgmax) {
  SamplerParams p;
  p.temp = 0.0f;
  Sampler s(p);
  const std::vector<float> logits = {0.5f, -3.0f, 7.25f, 7.0f, 1.0f};
  EXPECT_EQ(s.sample(logits), 2);
  p.temp = -1.0f;
  Sampler s2(p);
  EXPECT_EQ(s2.sample(logits), 2);
}

// llama.cpp's chain run the plain way, one filter after another with every token a candidate (as this
// sampler ran it before it took top-k straight from the row): the bias and the penalties on the
// candidates, greedy as the first largest, top-k as a partial sort (logit descending, ties by id), then
// the same top-p, min-p, temperature and draw. Sampler must give its tokens.
class PlainChain {
 public:
  explicit PlainChain(SamplerParams p) : p_(std::move(p)), rng_(p_.seed) {}
  void accept(int32_t id) { history_.push_back(id); }
  int32_t sample(std::span<const float> logits) {
    std::vector<Candidate> c = cands(std::vector<float>(logits.begin(), logits.end()));
    for (const LogitBias& b : p_.logit_bias)
      if (b.id >= 0 && static_cast<size_t>(b.id) < c.size()) c[static_cast<size_t>(b.id)].logit += b.bias;
    if (p_.penalized()) {
      const size_t n = p_.repeat_last_n < 0
                           ? history_.size()
                           : std::min(history_.size(), static_cast<size_t>(p_.repeat_last_n));
      std::map<int32_t, int> count;
      for (size_t i = history_.size() - n; i < history_.size(); ++i) ++count[history_[i]];
      for (const auto& [id, k] : count) {
        if (id < 0 || static_cast<size_t>(id) >= c.size()) continue;
        float& x = c[static_cast<size_t>(id)].logit;
        x = x <= 0 ? x * p_.repeat_penalty : x / p_.repeat_penalty;
        x -= static_cast<float>(k) * p_.frequency_penalty + p_.presence_penalty;
      }
    }
    if (p_.temp <= 0.0f) {
      size_t best = 0;
      for (size_t i = 1; i < c.size(); ++i)
        if (c[i].logit > c[best].logit) best = i;
      return c[best].id;
    }
    if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < c.size()) {
      std::partial_sort(c.begin(), c.begin() + p_.top_k, c.end(), [](const Candidate& a, const Candidate& b) {
        return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
      });
      c.resize(static_cast<size_t>(p_.top_k));
    }
    sampling::top_p(c, p_.top_p);
    sampling::min_p(c, p_.min_p);
    sampling::temperature(c, p_.temp);
    return c[sampling::draw(c, static_cast<double>(rng_()) / 4294967296.0)].id;
  }

 private:
  SamplerParams p_;
  std::mt19937 rng_;
  std::vector<int32_t> history_;
};

TEST(Sampler, GivesThePlainChainsTokens) {
  std::mt19937 rng(5);
  const auto pick = [&](auto... v) {
    const std::vector<std::common_type_t<decltype(v)...>> all = {v...};
    return all[rng() % all.size()];
  };
  for (int trial = 0; trial < 1500; ++trial) {
    const size_t n = trial % 100 == 99 ? 49152 : 1 + rng() % 300;
    SamplerParams p;
    p.temp = pick(0.0f, -1.0f, 0.5f, 1.0f, 1.5f);
    p.top_k = pick(0, 1, 3, 40, static_cast<int>(n), static_cast<int>(n) + 5);
    p.top_p = pick(1.0f, 0.95f, 0.5f);
    p.min_p = pick(0.0f, 0.05f, 0.3f);
    p.repeat_penalty = pick(1.0f, 1.3f, 0.8f);
    p.frequency_penalty = pick(0.0f, 0.5f, -0.3f);
    p.presence_penalty = pick(0.0f, 0.7f);
    p.repeat_last_n = pick(0, 4, 64, -1);
    p.seed = static_cast<uint32_t>(rng());
    const auto any = [&] { return static_cast<int32_t>(rng() % (n + 2)) - 1; };  // -1 and n too
    for (int b = static_cast<int>(rng() % 4); b > 0; --b)
      p.logit_bias.push_back({any(), pick(-2.0f, 1.5f, 0.0f)});
    if (trial % 5 == 0) p.ban(std::vector<int32_t>{any()});
    Sampler got(p);
    PlainChain want(p);
    for (int h = static_cast<int>(rng() % 70); h > 0; --h) {
      const int32_t id = any();
      got.accept(id);
      want.accept(id);
    }
    std::vector<float> logits(n);
    for (int step = 0; step < 4; ++step) {
      // Integer-valued logits tie often; a few -inf.
      const int spread = 1 + static_cast<int>(rng() % 12);
      for (float& x : logits) x = static_cast<float>(static_cast<int>(rng() % spread)) * 0.75f - 3.0f;
      if (rng() % 4 == 0) logits[rng() % n] = -INFINITY;
      const int32_t a = got.sample(logits), b = want.sample(logits);
      ASSERT_EQ(a, b) << "trial " << trial << " step " << step << " n " << n << " temp " << p.temp
                      << " top_k " << p.top_k;
      got.accept(a);
      want.accept(b);
    }
  }
}

// first_max against the scan it replaces, on every length to 70 and a vocabulary's, values drawn from
// a few (ties everywhere), with NaN (at 0 too), -0 / +0 and infinities mixed in.
TEST(Sampling, FirstMaxIsTheScalarScansIndex) {
  std::mt19937 rng(11);
  const float pool[] = {-2.0f, -0.0f, 0.0f, 1.0f, 3.5f, NAN, INFINITY, -INFINITY};
  for (int trial = 0; trial < 3000; ++trial) {
    const size_t n = trial < 2800 ? 1 + trial % 70 : 49152;
    std::vector<float> x(n);
    const int spread = 1 + trial % 8;  // how many of the pool's values this trial draws from
    for (float& v : x) v = pool[rng() % spread];
    if (trial % 5 == 0) x[rng() % n] = pool[5];  // a NaN somewhere
    if (trial % 11 == 0) x[0] = pool[5];
    size_t best = 0;
    for (size_t i = 1; i < n; ++i)
      if (x[i] > x[best]) best = i;
    ASSERT_EQ(sampling::first_max(x), best) << "trial " << trial << " n " << n;
  }
}

TEST(Sampling, TopIdsAreTheLargestInOrderTiesById) {
  const std::vector<float> x = {0.5f, 3.0f, -1.0f, 3.0f, 2.0f, -INFINITY, 7.0f, 2.0f};
  EXPECT_EQ(sampling::top_ids(x, 4), (std::vector<int32_t>{6, 1, 3, 4}));
  EXPECT_EQ(sampling::top_ids(x, 1), (std::vector<int32_t>{6}));
  EXPECT_TRUE(sampling::top_ids(x, 0).empty());
  EXPECT_EQ(sampling::top_ids(x, x.size()), (std::vector<int32_t>{6, 1, 3, 4, 7, 0, 2, 5}));
  // Against a stable sort, on random rows with many ties.
  std::mt19937 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> row(300);
    for (float& v : row) v = static_cast<float>(static_cast<int>(rng() % 40)) - 20.0f;
    std::vector<int32_t> want(row.size());
    for (size_t i = 0; i < row.size(); ++i) want[i] = static_cast<int32_t>(i);
    std::stable_sort(want.begin(), want.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
    want.resize(20);
    EXPECT_EQ(sampling::top_ids(row, 20), want);
  }
}

TEST(Sampling, FirstNonFiniteFindsTheFirstNaNOrInf) {
  std::mt19937 rng(12);
  const float odd[] = {NAN, -NAN, INFINITY, -INFINITY};
  for (int trial = 0; trial < 2000; ++trial) {
    const size_t n = trial < 1900 ? trial % 70 : 49152;
    std::vector<float> x(n);
    // Finite values up to the largest, subnormals, zeros of both signs
    const float fine[] = {0.0f, -0.0f, 1e-45f, -3.4028235e38f, 3.4028235e38f, 1.5f};
    for (float& v : x) v = fine[rng() % 6];
    for (int k = trial % 3; k > 0 && n > 0; --k) x[rng() % n] = odd[rng() % 4];
    const auto want = static_cast<size_t>(
        std::find_if(x.begin(), x.end(), [](float v) { return !std::isfinite(v); }) - x.begin());
    ASSERT_EQ(sampling::first_non_finite(x), want) << "trial " << trial << " n " << n;
  }
}

TEST(Sampler, GreedyAppliesTheRepeatPenaltyFirst) {
  SamplerParams p;
  p.temp = 0.0f;
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 2;
  Sampler s(p);
  const std::vector<float> logits = {4.0f, 3.0f, 0.0f};
  s.accept(0);
  EXPECT_EQ(s.sample(logits), 1);  // 4 / 2 < 3
  s.accept(2);
  s.accept(2);  // token 0 is now older than the last 2
  EXPECT_EQ(s.sample(logits), 0);
}

TEST(Sampler, BannedIdsAreNeverSampled) {
  // --ignore-eos: the end-of-generation ids get llama.cpp's -inf logit bias, greedy or drawn.
  const std::vector<float> logits = {0.5f, -3.0f, 7.25f, 7.0f, 1.0f};
  SamplerParams p;
  p.temp = 0.0f;
  p.ban(std::vector<int32_t>{2, 99, -1});  // out-of-range ids are ignored
  EXPECT_EQ(Sampler(p).sample(logits), 3);
  p.temp = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.logit_bias.clear();
  p.ban(std::vector<int32_t>{2, 3});
  Sampler s(p);
  for (int i = 0; i < 500; ++i) {
    const int32_t id = s.sample(logits);
    ASSERT_NE(id, 2);
    ASSERT_NE(id, 3);
  }
}

TEST(Sampler, LogitBiasComesBeforeThePenalties) {
  SamplerParams p;
  p.temp = 0.0f;
  const std::vector<float> logits = {1.0f, 0.5f, 0.9f};
  p.logit_bias = {{1, 0.375f}, {1, 0.25f}};  // entries add up: 0.5 + 0.625 > 1
  EXPECT_EQ(Sampler(p).sample(logits), 1);
  // Biased below zero first, token 0's logit is then multiplied by the repeat penalty, not divided:
  // 1 - 1.5 = -0.5 -> -1.0 < token 2's -0.1 * 2 = -0.2.
  p.logit_bias = {{0, -1.5f}, {2, -1.0f}, {1, -10.0f}};
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  s.accept(0);
  s.accept(2);
  EXPECT_EQ(s.sample(logits), 2);
}

TEST(Sampler, SameSeedSameTokens) {
  const uint32_t seed = 1234;
  SamplerParams p;
  p.temp = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = seed;
  std::vector<float> logits(64);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(static_cast<float>(i)) * 2.0f;
  auto run = [&](SamplerParams q) {
    Sampler s(q);
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(s.sample(logits));
    return out;
  };
  const auto a = run(p), b = run(p);
  EXPECT_EQ(a, b) << "seed " << seed;
  p.seed = seed + 1;
  EXPECT_NE(a, run(p)) << "seed " << seed + 1;
}

TEST(Sampler, DrawsFollowTheDistribution) {
  // Two tokens with p = 0.25 / 0.75: 4000 draws land within 5 sigma of 1000 / 3000.
  const uint32_t seed = 42;
  SamplerParams p;
  p.temp = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = seed;
  Sampler s(p);
  const std::vector<float> logits = {std::log(0.25f), std::log(0.75f)};
  int ones = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) ones += s.sample(logits) == 1;
  const double sigma = std::sqrt(n * 0.25 * 0.75);
  EXPECT_NEAR(ones, 0.75 * n, 5 * sigma) << "seed " << seed;
}

TEST(Sampler, FiltersComposeInLlamaCppOrder) {
  // top-k 2 leaves {3, 0}; min-p 0.5 of the best then drops id 0 (p ratio e^-1 < 0.5): always id 3.
  SamplerParams p;
  p.temp = 1.0f;
  p.top_k = 2;
  p.top_p = 1.0f;
  p.min_p = 0.5f;
  p.seed = 7;
  Sampler s(p);
  const std::vector<float> logits = {1.0f, -5.0f, 0.5f, 2.0f};
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(logits), 3);
}

}  // namespace
}  // namespace qe::model
