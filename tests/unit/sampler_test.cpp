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

TEST(Sampling, TopK) {
  auto c = cands({0.1f, 3.0f, -1.0f, 2.0f, 2.5f});
  sampling::top_k(c, 3);
  EXPECT_EQ(ids(c), (std::vector<int32_t>{1, 4, 3}));
  auto all = cands({1.0f, 2.0f});
  sampling::top_k(all, 0);  // disabled
  EXPECT_EQ(all.size(), 2u);
  sampling::top_k(all, 10);  // k past the size keeps everything
  EXPECT_EQ(all.size(), 2u);
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
  auto c = cands({2.0f, -2.0f, 1.0f, 0.0f});
  const std::vector<int32_t> recent = {0, 1, 1, 1, 3};  // token 1 three times: penalised once
  sampling::penalties(c, recent, 2.0f, 0.0f, 0.0f);
  EXPECT_FLOAT_EQ(c[0].logit, 1.0f);
  EXPECT_FLOAT_EQ(c[1].logit, -4.0f);
  EXPECT_FLOAT_EQ(c[2].logit, 1.0f);  // not recent
  EXPECT_FLOAT_EQ(c[3].logit, 0.0f);
}

// OpenAI's penalties as llama.cpp applies them: minus count * frequency + presence, after the repeat
// penalty, once for each distinct recent token; the values are exact in float.
TEST(Sampling, FrequencyAndPresencePenaltiesSubtractPerCount) {
  auto c = cands({2.0f, -2.0f, 1.0f, 0.5f, 3.0f});
  const std::vector<int32_t> recent = {0, 1, 1, 1, 3, 7};  // 7: not a candidate, ignored
  sampling::penalties(c, recent, 2.0f, 0.25f, 0.5f);
  EXPECT_EQ(c[0].logit, 2.0f / 2 - (1 * 0.25f + 0.5f));
  EXPECT_EQ(c[1].logit, -2.0f * 2 - (3 * 0.25f + 0.5f));
  EXPECT_EQ(c[2].logit, 1.0f);  // not recent
  EXPECT_EQ(c[3].logit, 0.5f / 2 - (1 * 0.25f + 0.5f));
  EXPECT_EQ(c[4].logit, 3.0f);
  // Negative values reward repetition; the candidates' order does not matter.
  auto d = cands({1.0f, 1.0f});
  std::swap(d[0], d[1]);
  sampling::penalties(d, std::vector<int32_t>{0, 0}, 1.0f, -0.5f, -1.0f);
  EXPECT_EQ(d[1].id, 0);
  EXPECT_EQ(d[1].logit, 3.0f);
  EXPECT_EQ(d[0].logit, 1.0f);
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

// Greedy without penalties reads the logits directly; with a penalty set (and nothing yet to penalise)
// it builds the candidates: both give the first largest logit, ties, bans and biases included (a bias
// of 0 or below keeps the fast path unless it names the winner; a positive one sends it to the full
// path).
TEST(Sampler, GreedyFastPathEqualsTheCandidatePath) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 400; ++trial) {
    std::vector<float> logits(1 + rng() % 300);
    for (float& x : logits) x = static_cast<float>(static_cast<int>(rng() % 9)) - 4.0f;  // many ties
    if (trial % 7 == 0) logits[rng() % logits.size()] = -INFINITY;
    SamplerParams fast;
    fast.temp = 0.0f;
    const auto any = [&] { return static_cast<int32_t>(rng() % logits.size()); };
    if (trial % 3 == 0) fast.ban(std::vector<int32_t>{any(), 0});
    if (trial % 4 == 1) fast.logit_bias.push_back({any(), -1.0f * static_cast<float>(rng() % 3)});
    if (trial % 5 == 2) fast.logit_bias.push_back({any(), static_cast<float>(rng() % 3)});
    SamplerParams full = fast;
    full.repeat_penalty = 1.5f;
    ASSERT_EQ(Sampler(fast).sample(logits), Sampler(full).sample(logits)) << "trial " << trial;
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
    const auto want = static_cast<size_t>(std::find_if(x.begin(), x.end(), [](float v) { return !std::isfinite(v); }) - x.begin());
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
