// Causal multi-head attention with grouped KV heads over the KV cache, for the n_tokens queries of a
// forward step (s.q after RoPE, at positions pos .. pos + n_tokens - 1, whose own K/V the cache already
// holds; except where attention_stores_kv / attention_owns_token below say attention does that itself):
//   att[t, h] = softmax(K_g[0..pos+t] q[t, h] / sqrt(head_dim)) · V_g[0..pos+t],
//   g = h / (n_heads / n_kv_heads)
// The result of each (token, head) does not depend on n_tokens or the thread count, so a prompt
// evaluated as one batch gives the same bits as token by token.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/kernel_table.h"
#include "kernels/matmul.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/run_state.h"

namespace qe::model {

// This engine's attention (fast numerics), f16 or f32 cache: flash-style, over blocks of
// kernels::kAttnBlock keys with an online softmax (attention.cpp). The step's rows of s.q are split into
// runs, one per sequence (each over its own cache, the formula above with its own pos and n_tokens, the
// runs' rows one after the other), all in one parallel region; a (token, head) gets the same bits
// whatever the other runs are. Writes s.att (sum of n_tokens, q_dim).
// out: when every run is owned (attention_owns_token), the caller may pass the next matmul's input,
// shaped for the step's tokens and q_dim columns (ActivationBuffer::shape); each token's row of s.att is
// then also converted into it, by the thread that made the row.
void attention(const kernels::KernelTable& k, const Config& c, std::span<const SeqRun> runs, int64_t layer,
               RunState& s, kernels::ActivationBuffer* out = nullptr);

// Whether attention() takes runs[r] whole: a decode token (one token) in a step of at least two runs a
// thread, whose keys are no more than a thread's share of the step's. One work item then does all of
// that token's attention: RoPE on its rows of s.q and s.k (RopeTable::rotate, as the caller's RoPE
// pass), the store of its K and V, every head's attention (a key block at a time, all KV heads of it
// before the next: 8 streams of SmolLM2-135M, 5% less attention time than an item per KV head), and the
// conversion of its output row when asked (`out` above). For 8 streams on 2 threads that leaves two
// team jobs a layer fewer (RoPE, the output projection's input). The caller then neither rotates nor
// stores the run's token.
bool attention_owns_token(const Config& c, std::span<const SeqRun> runs, int64_t r, int n_threads);

// Whether attention() itself writes runs[r]'s new K and V (rows of s.k and s.v) into its cache. True
// when the run's split gives one work item per KV head (a decode token, or a short prompt chunk among
// several runs): that item is then the only reader of the head's new positions in the layer, and writes
// them just before reading their block, whose lines the kernel has already requested. The scattered
// 2-byte stores of a K^T tile otherwise miss the cache line by line (8 streams of SmolLM2-135M: ~6% of
// a decode step). When false, the caller stores them before attention(). (True for an owned run too.)
bool attention_stores_kv(const Config& c, std::span<const SeqRun> runs, int64_t r, int n_threads);

// Floats of per-thread scratch attention() needs: RunState::attn holds n_threads of them.
int64_t attention_scratch_floats(const Config& c);

// llama.cpp's numerics (f16 cache): q rounded to f16; scores by the table's f16 dot (tinyBLAS's for a
// batch, ggml_vec_dot_f16 for one token); ggml's scaled softmax; the weights rounded to f16 and dotted
// with V^T the same way, over llama.cpp's KV length (positions padded to 32, zeros past the last one).
void attention_llamacpp(const kernels::KernelTable& k, const Config& c, const KvCache& kv, int64_t layer,
                        RunState& s, int64_t n_tokens, int64_t pos);

}  // namespace qe::model
