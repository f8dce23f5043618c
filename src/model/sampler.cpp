#include "model/sampler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "formats/error.h"

namespace qe::model::sampling {

namespace {

constexpr size_t kBlock = 16;  // floats a block test looks at

// Whether one of the kBlock floats at x is above t (or at least t): four vectors of four lanes (GCC /
// Clang vector types, SSE2 or NEON at the baseline), so that a scan can pass over a block at once.
template <bool kOrEqual>
bool any_in_block(const float* x, float t) {
  using F4 = float __attribute__((vector_size(16)));
  using I4 = int32_t __attribute__((vector_size(16)));
  F4 v[4];
  std::memcpy(v, x, sizeof v);
  const I4 m = kOrEqual ? (v[0] >= t) | (v[1] >= t) | (v[2] >= t) | (v[3] >= t)
                        : (v[0] > t) | (v[1] > t) | (v[2] > t) | (v[3] > t);
  return (m[0] | m[1] | m[2] | m[3]) != 0;
}

// c sorted by logit, descending, ties in their order: std::stable_sort's result. A row of the whole
// vocabulary (top-k off) goes by a stable radix sort on the logits' bits, 4 passes of 8 bits (49152
// candidates: ~0.3 ms against stable_sort's 3.4); an already sorted list (the candidates of top-k, or of
// top-p after temperature, which keeps the order) is left as it is.
void sort_descending(std::vector<Candidate>& c, std::vector<Candidate>& scratch) {
  const auto desc = [](const Candidate& a, const Candidate& b) { return a.logit > b.logit; };
  if (std::is_sorted(c.begin(), c.end(), desc)) return;
  if (c.size() < 1024) {
    std::stable_sort(c.begin(), c.end(), desc);
    return;
  }
  // The key orders the floats descending as unsigned integers: -0 and +0 alike (they compare equal),
  // negatives by their magnitude.
  const auto key = [](float x) {
    const uint32_t u = x == 0.0f ? 0u : std::bit_cast<uint32_t>(x);
    return ~(u & 0x80000000u ? ~u : u | 0x80000000u);
  };
  scratch.resize(c.size());
  std::vector<Candidate>* from = &c;
  std::vector<Candidate>* to = &scratch;
  for (int shift = 0; shift < 32; shift += 8) {
    size_t start[257] = {};
    for (const Candidate& x : *from) ++start[((key(x.logit) >> shift) & 0xFF) + 1];
    for (int b = 0; b < 256; ++b) start[b + 1] += start[b];
    for (const Candidate& x : *from) (*to)[start[(key(x.logit) >> shift) & 0xFF]++] = x;
    std::swap(from, to);
  }
}

}  // namespace

void softmax(std::vector<Candidate>& c) {
  if (c.empty()) return;
  thread_local std::vector<Candidate> scratch;
  sort_descending(c, scratch);
  const float mx = c.front().logit;
  double sum = 0;
  for (Candidate& x : c) {
    x.p = std::exp(x.logit - mx);
    sum += x.p;
  }
  for (Candidate& x : c) x.p = static_cast<float>(x.p / sum);
}

void penalties(std::span<float> logits, std::span<const int32_t> recent, float repeat, float frequency,
               float presence) {
  if (recent.empty() || (repeat == 1.0f && frequency == 0.0f && presence == 0.0f)) return;
  // Each distinct id and its count: the window sorted, its runs (no allocation once warm).
  thread_local std::vector<int32_t> ids;
  ids.assign(recent.begin(), recent.end());
  std::sort(ids.begin(), ids.end());
  for (size_t i = 0, end = 0; i < ids.size(); i = end) {
    while (end < ids.size() && ids[end] == ids[i]) ++end;
    const int32_t id = ids[i];
    if (id < 0 || static_cast<size_t>(id) >= logits.size()) continue;
    float& x = logits[static_cast<size_t>(id)];
    // Multiplying a negative logit (dividing would raise it), llama.cpp's reading of the CTRL paper.
    x = x <= 0 ? x * repeat : x / repeat;
    x -= static_cast<float>(end - i) * frequency + presence;
  }
}

void top_p(std::vector<Candidate>& c, float p) {
  if (p >= 1.0f || c.empty()) return;
  softmax(c);
  double cum = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    cum += c[i].p;
    if (cum >= p) {
      c.resize(i + 1);
      return;
    }
  }
}

void min_p(std::vector<Candidate>& c, float p) {
  if (p <= 0.0f || c.empty()) return;
  // p_i >= p * p_max  <=>  logit_i >= logit_max + log(p), llama.cpp's form.
  float mx = c.front().logit;
  for (const Candidate& x : c) mx = std::max(mx, x.logit);
  const float threshold = mx + std::log(p);
  std::erase_if(c, [threshold](const Candidate& x) { return x.logit < threshold; });
}

void min_p_of_row(std::span<const float> logits, float p, std::vector<Candidate>& out) {
  const float threshold = logits[first_max(logits)] + std::log(p);
  const auto keep = [&](size_t i) {
    if (logits[i] >= threshold) out.push_back({static_cast<int32_t>(i), logits[i], 0.0f});
  };
  size_t i = 0;
  for (; i + kBlock <= logits.size(); i += kBlock)
    if (any_in_block<true>(logits.data() + i, threshold))
      for (size_t j = i; j < i + kBlock; ++j) keep(j);
  for (; i < logits.size(); ++i) keep(i);
}

void temperature(std::vector<Candidate>& c, float temp) {
  QE_CHECK(temp > 0.0f);
  for (Candidate& x : c) x.logit /= temp;
}

std::vector<int32_t> top_ids(std::span<const float> logits, size_t n) {
  // One pass, the best n so far kept sorted: a logit below the n-th best costs one comparison, and once
  // the list is full a block of 16 logits none of which beats the n-th best is passed over whole (the
  // n-th best only rises, so a block it passed holds nothing the list would take). A 49152-token row,
  // n = 40: ~37 us one by one.
  std::vector<int32_t> top;
  if (n == 0) return top;
  top.reserve(n + 1);
  auto consider = [&](size_t i) {
    const float x = logits[i];
    if (top.size() == n && !(x > logits[static_cast<size_t>(top.back())])) return;
    auto at = top.end();
    while (at != top.begin() && x > logits[static_cast<size_t>(*(at - 1))]) --at;
    top.insert(at, static_cast<int32_t>(i));
    if (top.size() > n) top.pop_back();
  };
  size_t i = 0;
  for (; i < logits.size() && top.size() < n; ++i) consider(i);
  for (; i + kBlock <= logits.size(); i += kBlock)
    if (any_in_block<false>(logits.data() + i, logits[static_cast<size_t>(top.back())]))
      for (size_t j = i; j < i + kBlock; ++j) consider(j);
  for (; i < logits.size(); ++i) consider(i);
  return top;
}

size_t first_max(std::span<const float> x) {
  QE_CHECK(!x.empty() && x.size() < (size_t{1} << 31));
  // Each lane keeps the scan's (value, index) over its own positions, starting from x[0] and moving
  // only on a strict >: NaN never replaces a value, ties keep the earlier index. The largest lane value
  // is then the scan's, and the smallest index among the lanes holding it the scan's index (-0 and +0
  // compare equal in both). Four vectors of four lanes (GCC / Clang vector types: SSE2 or NEON at the
  // baseline, no ISA dispatch for a pass this short) hide the compare-and-select latency. A
  // 49152-token vocabulary: ~38 us per greedy token in the scalar scan, whose every step waits on the
  // one before.
  using F4 = float __attribute__((vector_size(16)));
  using I4 = int32_t __attribute__((vector_size(16)));
  constexpr int kVecs = 4, kStep = 4 * kVecs;
  if (std::isnan(x[0])) return 0;
  const size_t n = x.size(), whole = n - n % kStep;
  F4 best[kVecs];
  I4 at[kVecs];
  for (int v = 0; v < kVecs; ++v) {
    best[v] = F4{} + x[0];
    at[v] = I4{};
  }
  I4 idx[kVecs];
  for (int v = 0; v < kVecs; ++v) idx[v] = I4{0, 1, 2, 3} + 4 * v;
  for (size_t i = 0; i < whole; i += kStep) {
    for (int v = 0; v < kVecs; ++v) {
      F4 y;
      std::memcpy(&y, x.data() + i + 4 * v, sizeof y);
      const I4 gt = y > best[v];  // -1 where y wins
      best[v] = reinterpret_cast<F4>((reinterpret_cast<I4>(y) & gt) | (reinterpret_cast<I4>(best[v]) & ~gt));
      at[v] = (idx[v] & gt) | (at[v] & ~gt);
      idx[v] += kStep;
    }
  }
  float m = x[0];
  for (int v = 0; v < kVecs; ++v)
    for (int l = 0; l < 4; ++l) m = best[v][l] > m ? best[v][l] : m;
  size_t found = n;
  for (int v = 0; v < kVecs; ++v)
    for (int l = 0; l < 4; ++l)
      if (best[v][l] == m) found = std::min(found, static_cast<size_t>(at[v][l]));
  for (size_t i = whole; i < n; ++i)
    if (x[i] > m) m = x[i], found = i;
  return found;
}

size_t first_non_finite(std::span<const float> x) {
  // A float is NaN or Inf when its exponent bits are all ones; adding one to the exponent field then
  // carries into bit 31. One pass ORs those sums over all of x (four vectors of four lanes, as in
  // first_max, no early exit: logits are almost always finite), and only when bit 31 shows up does a
  // scalar scan look for the first.
  using U4 = uint32_t __attribute__((vector_size(16)));
  constexpr size_t kBlock = 16;
  constexpr uint32_t kExp = 0x7f800000u, kOne = 0x00800000u, kCarry = 0x80000000u;
  const size_t n = x.size(), whole = n - n % kBlock;
  U4 acc{};
  for (size_t i = 0; i < whole; i += kBlock) {
    U4 v[4];
    std::memcpy(v, x.data() + i, sizeof v);
    acc |= ((v[0] & kExp) + kOne) | ((v[1] & kExp) + kOne) | ((v[2] & kExp) + kOne) | ((v[3] & kExp) + kOne);
  }
  uint32_t any = acc[0] | acc[1] | acc[2] | acc[3];
  for (size_t i = whole; i < n; ++i) any |= (std::bit_cast<uint32_t>(x[i]) & kExp) + kOne;
  if (!(any & kCarry)) return n;
  return static_cast<size_t>(std::find_if(x.begin(), x.end(), [](float v) { return !std::isfinite(v); }) - x.begin());
}

size_t draw(std::vector<Candidate>& c, double u) {
  QE_CHECK(!c.empty());
  softmax(c);
  double cum = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    cum += c[i].p;
    if (u < cum) return i;
  }
  return c.size() - 1;  // u within rounding of 1
}

}  // namespace qe::model::sampling

namespace qe::model {

Sampler::Sampler(SamplerParams params) : params_(std::move(params)), rng_(params_.seed) {
  if (params_.grammar) grammar_.emplace(params_.grammar, params_.grammar_vocab);
}

int32_t Sampler::sample(std::span<const float> logits) {
  const int32_t id = sample_chain(logits);
  if (!grammar_ || grammar_->allows(id)) return id;
  masked_.assign(logits.begin(), logits.end());
  grammar_->mask(masked_);
  if (masked_[sampling::first_max(masked_)] == -INFINITY) return -1;
  const int32_t again = sample_chain(masked_);
  return grammar_->allows(again) ? again : -1;  // (a token of probability 0 drawn at u within rounding of 1)
}

int32_t Sampler::sample_chain(std::span<const float> logits) {
  QE_CHECK(!logits.empty());
  const SamplerParams& p = params_;
  // Greedy without penalties: a bias that is not positive only lowers a logit, so the row's first largest
  // stands unless a bias raises some token or names it (--ignore-eos then costs no copy of the row).
  if (p.temp <= 0.0f && !p.penalized()) {
    const auto id = static_cast<int32_t>(sampling::first_max(logits));
    if (std::none_of(p.logit_bias.begin(), p.logit_bias.end(),
                     [id](const LogitBias& b) { return b.id == id || !(b.bias <= 0.0f); }))
      return id;
  }
  // The bias and the penalties change a few logits: on a copy of the row, by id.
  std::span<const float> row = logits;
  if (!p.logit_bias.empty() || p.penalized()) {
    row_.assign(logits.begin(), logits.end());
    for (const LogitBias& b : p.logit_bias)
      if (b.id >= 0 && static_cast<size_t>(b.id) < row_.size()) row_[static_cast<size_t>(b.id)] += b.bias;
    if (p.penalized()) {
      const size_t n = p.repeat_last_n < 0 ? history_.size()
                                           : std::min(history_.size(), static_cast<size_t>(p.repeat_last_n));
      sampling::penalties(row_, std::span<const int32_t>(history_).last(n), p.repeat_penalty,
                          p.frequency_penalty, p.presence_penalty);
    }
    row = row_;
  }
  // Greedy: the first largest, as argmax over the candidates gives.
  if (p.temp <= 0.0f) return static_cast<int32_t>(sampling::first_max(row));

  // Top-k straight from the row: its k largest, in order, ties by id, which is what a partial sort of the
  // whole vocabulary as candidates gives, without writing the vocabulary out first (~10 us instead of ~90
  // for 49152 logits and k = 40). Without a top-k, min-p alone (top-p off) keeps the tokens within
  // log(min_p) of the largest logit, which become the only candidates, in id order as min_p() leaves
  // them; else every token is a candidate.
  const size_t k = p.top_k > 0 ? std::min(row.size(), static_cast<size_t>(p.top_k)) : row.size();
  cands_.clear();
  if (k < row.size()) {
    for (int32_t id : sampling::top_ids(row, k)) cands_.push_back({id, row[static_cast<size_t>(id)], 0.0f});
  } else if (p.top_p >= 1.0f && p.min_p > 0.0f) {
    sampling::min_p_of_row(row, p.min_p, cands_);
  } else {
    for (size_t i = 0; i < row.size(); ++i) cands_.push_back({static_cast<int32_t>(i), row[i], 0.0f});
  }
  sampling::top_p(cands_, p.top_p);
  sampling::min_p(cands_, p.min_p);
  sampling::temperature(cands_, p.temp);
  const double u = static_cast<double>(rng_()) / 4294967296.0;  // mt19937 yields 32 bits: u in [0, 1)
  return cands_[sampling::draw(cands_, u)].id;
}

void SamplerParams::ban(std::span<const int32_t> ids) {
  for (int32_t id : ids) logit_bias.push_back({id, -INFINITY});
}

void Sampler::accept(int32_t id) {
  accept_prompt(id);
  if (grammar_) grammar_->accept(id);  // a token it refused leaves it allowing nothing: sample() says -1
}

void Sampler::reset_grammar() {
  if (grammar_) grammar_->reset();
}

void Sampler::accept_prompt(int32_t id) {
  history_.push_back(id);
  // Keep the last repeat_last_n ids; trim in halves so the erase is amortised over many tokens.
  const int32_t keep = params_.repeat_last_n;
  if (keep >= 0 && history_.size() > 2 * static_cast<size_t>(keep) + 64)
    history_.erase(history_.begin(), history_.end() - keep);
}

}  // namespace qe::model
