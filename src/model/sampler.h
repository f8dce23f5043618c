// Picks the next token from logits with llama.cpp's sampler chain and flag meanings (common_sampler):
//   logit bias -> penalties (repeat, frequency, presence) -> top-k -> top-p -> min-p -> temperature
//   -> draw from the softmax
// temp <= 0 is greedy: argmax after the bias and the penalties, as llama.cpp's temperature sampler keeps
// only the largest logit. Each filter is a free function over a candidate list so it can be tested alone.
//
// Random numbers: std::mt19937 seeded with the 32-bit seed, one 32-bit draw per sampled token mapped to
// u = draw / 2^32 in [0, 1), and the token is the first whose cumulative probability exceeds u. Both the
// engine and the mapping are fixed by the standard / by this file (std::uniform_real_distribution is
// not), so the same seed gives the same tokens on every platform and standard library.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "model/grammar.h"

namespace qe::model {

// A constant added to one token's logit (llama_logit_bias): -inf never samples it.
struct LogitBias {
  int32_t id = -1;
  float bias = 0;
};

struct SamplerParams {
  float temp = 0.8f;               // --temp; <= 0: greedy
  int32_t top_k = 40;              // --top-k; <= 0: off
  float top_p = 0.95f;             // --top-p; >= 1: off
  float min_p = 0.05f;             // --min-p; <= 0: off
  float repeat_penalty = 1.0f;     // --repeat-penalty; 1: off
  float frequency_penalty = 0.0f;  // --frequency-penalty; 0: off
  float presence_penalty = 0.0f;   // --presence-penalty; 0: off
  int32_t repeat_last_n = 64;      // --repeat-last-n: the penalties' window; 0: off, -1: the whole history
  uint32_t seed = 0;               // -s
  // Added to the logits before anything else, in this order (llama.cpp's logit-bias sampler, the first
  // of its chain; an id outside the vocabulary is ignored): --logit-bias, OpenAI's logit_bias, and
  // --ignore-eos, which gives the end-of-generation tokens -inf (generate.h: eog_ids).
  std::vector<LogitBias> logit_bias;
  // llama.cpp's grammar sampler (--grammar, a request's "grammar" / JSON mode): only text the grammar
  // allows (model/grammar.h). The vocabulary as the grammar reads it comes with it: both or neither.
  std::shared_ptr<const Grammar> grammar;
  std::shared_ptr<const GrammarVocab> grammar_vocab;

  bool penalized() const {
    return repeat_last_n != 0 &&
           (repeat_penalty != 1.0f || frequency_penalty != 0.0f || presence_penalty != 0.0f);
  }
  // Gives each id a bias of -inf: never sampled.
  void ban(std::span<const int32_t> ids);
};

// A token and its log-probability under the model (log softmax of the raw logits).
struct TokenLogprob {
  int32_t id = -1;
  float logprob = 0;
};

struct Candidate {
  int32_t id;
  float logit;
  float p;  // probability, valid after softmax()
};

namespace sampling {
// Each keeps at least one candidate, as llama.cpp's samplers with min_keep = 0 do.
// Sorts by logit, descending (stable: ties keep id order), and sets p = softmax(logit).
void softmax(std::vector<Candidate>& c);
// Once for each distinct id in `recent` (an id outside `logits` is ignored), seen `count` times there
// (llama.cpp's penalties sampler, the same float operations): logit > 0 ? logit / repeat : logit * repeat,
// then logit -= count * frequency + presence. `logits` is a row indexed by id.
void penalties(std::span<float> logits, std::span<const int32_t> recent, float repeat, float frequency,
               float presence);
// The smallest prefix of the sorted candidates whose probability mass reaches p (p >= 1: unchanged).
void top_p(std::vector<Candidate>& c, float p);
// Candidates whose probability is at least p times the largest (p <= 0: unchanged).
void min_p(std::vector<Candidate>& c, float p);
// min_p() of a whole row of logits as candidates, without writing the row out first: appends the ids
// whose logit is within log(p) of the largest, in id order (p > 0; logits not NaN).
void min_p_of_row(std::span<const float> logits, float p, std::vector<Candidate>& out);
void temperature(std::vector<Candidate>& c, float temp);  // logit / temp, temp > 0
// The index `best` that the scan `best = 0; for i: if (x[i] > x[best]) best = i` ends at: the first
// largest value, NaN never winning (x[0] NaN: 0). x not empty. Vectorizable passes, same index.
size_t first_max(std::span<const float> x);
// The index of the first NaN or Inf in x; x.size() when every value is finite. Vectorizable.
size_t first_non_finite(std::span<const float> x);
// Draws from softmax(logits) with u in [0, 1): the first candidate whose cumulative p exceeds u.
size_t draw(std::vector<Candidate>& c, double u);
// The ids of the n largest of finite logits, largest first, ties in id order (n <= logits.size()).
std::vector<int32_t> top_ids(std::span<const float> logits, size_t n);
}  // namespace sampling

class Sampler {
 public:
  explicit Sampler(SamplerParams params);

  // The next token id for a row of n_vocab logits, none of them NaN (Context::decode refuses a row with
  // NaN or Inf). Does not record it: call accept(). With a grammar, as llama.cpp's common_sampler: the
  // chain's token is checked alone, and only when the grammar refuses it is the whole row masked and
  // the chain run again (a second draw). -1 when the grammar allows no token at all (the generation
  // ends there, as at an end-of-generation token).
  int32_t sample(std::span<const float> logits);
  // Records a generated token: the penalties' history, and the grammar moves past it.
  void accept(int32_t id);
  // Records a prompt token in the penalties' history (llama.cpp's penalties see the prompt too; its
  // grammar does not).
  void accept_prompt(int32_t id);
  // The grammar back at its start: each reply of a chat is a sentence of its own.
  void reset_grammar();
  const SamplerParams& params() const { return params_; }

 private:
  int32_t sample_chain(std::span<const float> logits);

  SamplerParams params_;
  std::optional<GrammarMatcher> grammar_;
  std::vector<float> masked_;  // the row with what the grammar refuses at -inf
  std::mt19937 rng_;
  std::vector<int32_t> history_;  // accepted ids, the last max(repeat_last_n, 0) kept (all when -1)
  std::vector<float> row_;        // the logits with the bias and the penalties, when there are any
  std::vector<Candidate> cands_;  // reused: no allocation per token once warm
};

}  // namespace qe::model
