// Continuous batching over one model: the engine behind qserve (llama-server's slots and unified
// batch). S slots, each a sequence with its own KV cache and positions. One engine thread runs steps;
// a step takes the next token of every generating slot plus prompt chunks of slots still reading their
// prompts, up to n_batch tokens, as ONE forward pass (every matmul one GEMM over the step's tokens,
// attention per sequence), then samples each slot that produced logits with its own sampler.
// Requests join at the next step and leave when done; a freed slot takes the next queued request at
// once.
//
// Determinism is a feature: a request's logits, hence its tokens for a given seed, do not depend on
// what else is in the batch or on the thread count (the fast kernels give a GEMM row the bits of the
// GEMV; attention and activation quantization are per token). llama-server does not promise this.
//
// Prompt caching (llama-server's cache_prompt): a slot keeps the K/V of its last request after it ends,
// and a new request goes to the free slot whose cache holds the longest prefix of its prompt (a
// conversation's next turn finds its history there), evaluating only the rest; at least its last prompt
// token is evaluated, for the logits. Because a token's K/V has the same bits however its sequence was
// chunked or batched (above), a request's tokens are the same with or without the cached prefix. Among
// slots holding no longer prefix, the least recently used one is taken, so the others keep theirs.
// Not under llama.cpp's numerics, whose batch and one-token paths round differently (a prefix that
// was generated token by token would not have a fresh prompt's bits).
//
//   auto engine = BatchEngine::create(model, {.n_slots = 4, .n_ctx = 4096});
//   Result<uint64_t> id = (*engine)->submit(std::move(req), [](const TokenEvent& e) { ...; return true; });
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "formats/error.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/run_state.h"
#include "model/sampler.h"

namespace qe::model {

struct BatchEngineParams {
  int n_slots = 4;         // sequences decoded together
  int64_t n_ctx = 0;       // positions per slot; 0 = default_n_ctx(config)
  int64_t n_batch = kDefaultBatch;  // most tokens per step (prompt chunks fill what decoding leaves)
  int64_t max_queue = 64;  // requests waiting for a slot; submit() refuses more (option "queue")
};

struct BatchRequest {
  std::vector<int32_t> prompt;     // token ids (tokenize_prompt / a rendered chat), not empty
  int32_t max_tokens = -1;         // -1: until end of generation or a full slot
  SamplerParams sampling;          // its own sampler and seed
  std::vector<std::string> stop;   // stop strings: generation ends before the first match (not streamed)
  bool cache_prompt = true;        // take the longest prefix of the prompt that a free slot's cache holds
  int32_t n_logprobs = -1;  // -1: none; 0..kMaxLogprobs: each token's logprob and that many alternatives
};
inline constexpr int32_t kMaxLogprobs = 20;

// One event of a request, on the engine thread. Every request gets exactly one event with `done`, the
// last, which carries the text still held (an unfinished character as U+FFFD, a tail that no stop
// string matched). When a stop string matches, the token that completed it carries the text before the
// match and the final event none.
struct TokenEvent {
  int32_t id = -1;          // the token (-1 on the final event)
  std::string text;         // text that became complete with it (UTF-8; held back while a stop string may match)
  bool done = false;
  StopReason stop = StopReason::eog;  // when done: eog, n_predict (max_tokens), context_full, callback (cancelled)
  bool stopped_by_string = false;     // when done: a stop string matched (stop == eog then)
  int64_t n_prompt = 0, n_gen = 0;    // tokens so far
  int64_t n_cached = 0;     // of the n_prompt, those whose K/V the slot's cache held (not evaluated)
  double prompt_ms = 0;     // from the request's first prompt token to its first sampled token
  std::string error;        // when done: why it failed (forward pass, non-finite logits); else empty
  // When the request asks (n_logprobs >= 0), on a token's event: its log-probability under the model,
  // the log softmax of the raw logits (before penalties, temperature and filters: what the model says,
  // as OpenAI and llama-server report it), and the n_logprobs most likely tokens, most likely first.
  float logprob = 0;
  std::vector<TokenLogprob> top;
};
// Return false to cancel (the request ends at once with its final event, stop == callback; the slot
// takes the next request at the next step). The final event's return value is ignored. A callback may
// call cancel() and submit(), never drain() or the destructor.
using TokenCallback = std::function<bool(const TokenEvent&)>;

struct BatchEngineStats {
  int64_t requests_done = 0, requests_queued = 0, slots_busy = 0;
  int64_t tokens_prompt = 0, tokens_generated = 0;  // prompt tokens evaluated (cached ones not counted)
  int64_t tokens_cached = 0;                        // prompt tokens taken from a slot's cache
  double prompt_ms = 0, decode_ms = 0;  // engine time spent in steps with prompt / with decode tokens
};

class BatchEngine {
 public:
  // Allocates every slot's cache (n_ctx positions each) and starts the engine thread. Error (option
  // "n_slots", "n_ctx", "max_queue") for sizes below their minimum, ("n_batch") when n_batch < n_slots
  // (every generating slot decodes in each step), ("numerics") for llama.cpp numerics with more than
  // one slot (they run one sequence per forward pass), or when the caches do not fit in memory.
  static Result<std::unique_ptr<BatchEngine>> create(const Model& model, const BatchEngineParams& params);
  ~BatchEngine();  // stops the engine thread; pending requests get a final event (callback)

  // Thread-safe. Queues a request; its events arrive on the engine thread. Error (option "queue") when
  // max_queue requests are waiting; (option "prompt") for an empty prompt or one that does not fit a slot;
  // (option "n_logprobs") for n_logprobs outside -1..kMaxLogprobs.
  Result<uint64_t> submit(BatchRequest request, TokenCallback on_event);
  // Thread-safe: ends the request at the next step (its final event says callback).
  void cancel(uint64_t id);
  // Thread-safe: refuses new requests and returns when every accepted one has finished.
  void drain();

  BatchEngineStats stats() const;
  const BatchEngineParams& params() const;

 private:
  struct Impl;
  explicit BatchEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qe::model
