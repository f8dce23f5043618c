// The llama forward pass: token ids in, logits out, K/V appended to the cache. One plain function that
// reads like the maths; a prefill batch and a single decode token take the same path (several tokens
// per matmul = GEMM, one token = GEMV).
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "formats/error.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/run_state.h"
#include "model/weights.h"

namespace qe::model {

// Runs tokens (1 <= size <= s.n_batch) at positions [pos, pos + size) through the model, attending to
// the cache's positions [0, pos) and to each other causally, and stores their K/V in the cache.
// Returns the logits in s.logits: (size, n_vocab) when s.all_logits, else (1, n_vocab) of the last
// token. Error on a token id outside the vocabulary or positions past the context.
// Error unless the weights and the cache can run with these numerics: llama.cpp's cover q4_0 (rows % 8
// == 0, which llama.cpp repacks), q4_1, q8_0 and f16 matrices with an f16 cache; names the first tensor
// that falls outside.
// Where a ForwardTap sees the activations of block `layer`: the inputs of its linear groups.
enum class TapPoint {
  kAttnIn,    // (n, dim)    rmsnorm(x) * attn_norm: the input of q, k and v
  kAttnOut,   // (n, q_dim)  the attention output, heads side by side: the input of o
  kFfnIn,     // (n, dim)    rmsnorm(x) * ffn_norm: the input of gate and up
  kFfnDownIn  // (n, n_ff)   silu(gate) * up: the input of down
};

// An observer of a forward pass (the calibrator's statistics). on_input sees x (n_tokens rows of cols
// floats, row-major) before the matmuls read it; the buffer is only valid during the call.
struct ForwardTap {
  std::function<void(int64_t layer, TapPoint point, const float* x, int64_t n_tokens, int64_t cols)> on_input;
  bool skip_output = false;  // stop after the last block: no final norm, no logits (an empty span returned)
};

Status check_numerics(const Weights& w, Numerics numerics, GgmlType cache_type);

Result<std::span<const float>> forward(const Config& c, const Weights& w, RunState& s, KvCache& kv,
                                       std::span<const int32_t> tokens, int64_t pos,
                                       const ForwardTap* tap = nullptr);

// The same pass over the tokens of several sequences (continuous batching): runs (1 <= size <=
// s.n_seqs, in token order, covering every token) say which cache and positions each stretch of
// `tokens` belongs to, each run a cache of its own. Every matmul is still one GEMM over all the tokens; RoPE,
// the cache stores and attention go per run. Logits: (size, n_vocab) when s.all_logits, else one row for the
// last token of each run whose `logits` is set, in run order (an empty span when none is). A token's logits
// have the same bits whatever else is in the batch (fast numerics); llama.cpp numerics take one run only. The
// single-sequence forward() above is this with one run.
Result<std::span<const float>> forward(const Config& c, const Weights& w, RunState& s,
                                       std::span<const int32_t> tokens, std::span<const SeqRun> runs,
                                       const ForwardTap* tap = nullptr);

}  // namespace qe::model
