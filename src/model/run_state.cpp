#include "model/run_state.h"

#include <fmt/core.h>

#include <algorithm>
#include <new>

#include "formats/blocks.h"
#include "model/attention.h"

namespace qe::model {

Result<RunState> RunState::create(const Config& c, const float* freq_factors, int64_t n_batch, int64_t n_ctx,
                                  int n_threads, bool all_logits, int64_t n_seqs) {
  if (n_batch <= 0 || n_ctx <= 0 || n_threads <= 0 || n_seqs <= 0)
    return Error{
        "", "run state",
        fmt::format("batch {}, context {}, threads {}, sequences {}", n_batch, n_ctx, n_threads, n_seqs)};
  RunState s;
  s.n_batch = n_batch;
  s.n_ctx = n_ctx;
  s.n_seqs = n_seqs;
  s.n_threads = n_threads;
  s.all_logits = all_logits;
  s.team = std::make_unique<kernels::ThreadTeam>(n_threads);
  auto size = [](int64_t a, int64_t b) { return static_cast<size_t>(a * b); };
  try {
    s.x.resize(size(n_batch, c.dim));
    s.xb.resize(size(n_batch, c.dim));
    s.xb2.resize(size(n_batch, c.dim));
    s.q.resize(size(n_batch, c.q_dim()));
    s.k.resize(size(n_batch, c.kv_dim()));
    s.v.resize(size(n_batch, c.kv_dim()));
    s.att.resize(size(n_batch, c.q_dim()));
    s.scores.resize(size(n_threads, n_ctx));
    s.scores16.resize(size(n_threads, n_ctx + c.head_dim));
    s.attn.resize(size(n_threads, attention_scratch_floats(c)));
    s.hb.resize(size(n_batch, c.n_ff));
    s.hb2.resize(size(n_batch, c.n_ff));
    s.logits.resize(size(all_logits ? std::max(n_batch, n_seqs) : n_seqs, c.n_vocab));
    s.attn_items.resize(static_cast<size_t>(n_seqs + 1));
    s.rope = RopeTable(c, freq_factors, n_ctx);
    // Room for the activation buffer's largest size (n_batch rows of the widest input in the widest
    // activation type), so the token loop never reallocates it; reserved, not touched, so a decode-only
    // run keeps its pages out of memory.
    const int64_t widest = std::max(c.dim, std::max(c.q_dim(), c.n_ff));
    s.act.reserve(n_batch * kernels::activation_row_bytes_max(widest));
  } catch (const std::bad_alloc&) {
    return Error{"", "run state", fmt::format("cannot allocate buffers for a batch of {} tokens", n_batch)};
  }
  return s;
}

}  // namespace qe::model
