// Every activation buffer of the forward pass, allocated once for a batch of up to n_batch tokens:
// nothing is allocated in the token loop. Shapes are (tokens, features), row-major.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "formats/error.h"
#include "kernels/matmul.h"
#include "kernels/thread_team.h"
#include "model/config.h"
#include "model/rope_table.h"

namespace qe::model {

// Tokens per forward pass unless the caller says otherwise. The buffers below grow with it (1.1B: 11 MB
// per 128 tokens, the FFN's two n_ff-wide ones half of it), while the GEMMs already work through 64
// tokens at a time with each weight block staying in L2 across them, so a wider pass buys little: 1.1B
// q4_0 / f16 pp512 on a 2-core Zen 4, 2 threads, qbench -m -ub 128,256,512 -r 5: 278 / 247 / 254 and
// 98 / 100 / 96 t/s. The 1.1B's buffers: 45 MB at 512 tokens, 11 MB at 128, against the 5% over the
// model file + KV cache that peak RSS may take (33 MB for its q4_0 at 2048 positions).
inline constexpr int64_t kDefaultBatch = 128;

// fast: this engine's kernels (x16 layouts, its own summation orders). llamacpp: the bits llama.cpp's
// AVX2 CPU backend computes, for token-for-token agreement with it. The kernels own the choice (one
// table per numerics, kernels::kernels(numerics, n_tokens)); the model names it here too.
using Numerics = kernels::Numerics;

struct RunState {
  int64_t n_batch = 0;  // most tokens one forward() call takes
  int64_t n_ctx = 0;    // positions the RoPE table and the score scratch cover
  int64_t n_seqs = 1;   // most sequences (SeqRun) one forward() call takes
  int n_threads = 1;    // the team's size
  bool all_logits = false;
  Numerics numerics = Numerics::fast;

  std::vector<float> x;           // (n_batch, dim) residual stream
  std::vector<float> xb;          // (n_batch, dim) normalised input of a block
  std::vector<float> xb2;         // (n_batch, dim) output of a block before the residual add
  std::vector<float> q;           // (n_batch, n_heads * head_dim)
  std::vector<float> k;           // (n_batch, n_kv_heads * head_dim)
  std::vector<float> v;           // (n_batch, n_kv_heads * head_dim)
  std::vector<float> att;         // (n_batch, n_heads * head_dim) attention output, heads side by side
  std::vector<float> scores;      // (n_threads, n_ctx) one score row per attention thread
  std::vector<uint16_t> scores16; // (n_threads, n_ctx + head_dim) f16 weights and query (llama.cpp numerics)
  std::vector<float> attn;        // (n_threads, attention_scratch_floats) key/value blocks and query rows (fast attention)
  std::vector<float> hb;          // (n_batch, n_ff) gate, then silu(gate) * up
  std::vector<float> hb2;         // (n_batch, n_ff) up
  std::vector<float> logits;      // (n_batch, n_vocab) when all_logits, else (n_seqs, n_vocab)
  std::vector<int64_t> attn_items;  // (n_seqs + 1) first attention work item of each run (attention.cpp)
  kernels::ActivationBuffer act;  // the current matmul input, quantized once for every matmul that reads it
  RopeTable rope;                 // cos/sin for positions [0, n_ctx)
  std::unique_ptr<kernels::ThreadTeam> team;  // n_threads threads (the caller's included) for every parallel step

  // freq_factors: Weights::rope_freqs (or nullptr). all_logits: keep the logits of every token of a
  // batch (perplexity, tests) instead of only the last one. n_seqs: sequences per batch (BatchEngine).
  static Result<RunState> create(const Config& c, const float* freq_factors, int64_t n_batch, int64_t n_ctx,
                                 int n_threads, bool all_logits, int64_t n_seqs = 1);
};

}  // namespace qe::model
