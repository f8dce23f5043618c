#include "model/forward.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "formats/blocks.h"
#include "kernels/interleaved.h"
#include "kernels/kernel_table.h"
#include "model/attention.h"

namespace qe::model {
namespace {

using kernels::MatmulJob;

// y_j = x W_j^T for every job j reading the same input x (n_tokens rows of cols floats). x is converted
// once per activation type (q8_0 / q8_1 / q8_K / f32) and the jobs that share it run in one parallel
// region: q/k/v and gate/up are one quantization and one barrier in the usual case where their types agree.
// make_x(t), when set, first writes token t's row of x, in the region of the first conversion.
Status project(RunState& s, const kernels::KernelTable& k, const float* x, int64_t n_tokens, int64_t cols,
               std::initializer_list<MatmulJob> jobs, kernels::RowHook make_x = {}) {
  bool done[4] = {};
  QE_CHECK(jobs.size() <= 4);
  const MatmulJob* all = jobs.begin();
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (done[i]) continue;
    const auto type = kernels::activation_type(all[i].w.type);
    if (!type)
      return Error{"", "matmul", fmt::format("no kernel for {} weights", ggml_type_name(all[i].w.type))};
    MatmulJob group[4];
    size_t n = 0;
    for (size_t j = i; j < jobs.size(); ++j) {
      if (!done[j] && kernels::activation_type(all[j].w.type) == type) {
        group[n++] = all[j];
        done[j] = true;
      }
    }
    if (Status st = s.act.prepare(*type, x, n_tokens, cols, cols, *s.team, k, make_x); !st) return st;
    make_x = {};
    if (Status st = kernels::matmul_group(std::span<const MatmulJob>(group, n), s.act, *s.team, k); !st)
      return st;
  }
  return {};
}

}  // namespace

Status check_numerics(const Weights& w, Numerics numerics, GgmlType cache_type) {
  if (numerics == Numerics::fast) return {};
  if (cache_type != GgmlType::F16)
    return Error{"", "cache type", "llama.cpp numerics need the f16 KV cache (llama.cpp's default)",
                 "cache_type"};
  // q4_0, q4_K and iq4_nl only as llama.cpp repacks them (rows % 8 == 0); their other paths are not
  // reproduced.
  auto covered = [](const WeightView& v) {
    if (v.interleave != 1) return false;
    switch (v.type) {
      case GgmlType::Q4_1:
      case GgmlType::Q8_0:
      case GgmlType::F16:
      case GgmlType::Q5_0:
      case GgmlType::Q5_1:
      case GgmlType::Q2_K:
      case GgmlType::Q3_K:
      case GgmlType::Q5_K:
      case GgmlType::Q6_K:
      case GgmlType::IQ4_XS:
        return true;
      case GgmlType::Q4_0:
      case GgmlType::Q4_K:
      case GgmlType::IQ4_NL:
        return v.rows % 8 == 0;
      default:
        return false;
    }
  };
  auto reject = [](const std::string& name, const WeightView& v) {
    const bool by_rows = v.type == GgmlType::Q4_0 || v.type == GgmlType::Q4_K || v.type == GgmlType::IQ4_NL;
    return Error{
        "", name,
        fmt::format("{} matrices{} are not covered by llama.cpp numerics (q4_0, q4_K, iq4_nl with rows % 8 "
                    "== 0; q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q5_K, q6_K, iq4_xs, f16)",
                    ggml_type_name(v.type), by_rows ? " of " + std::to_string(v.rows) + " rows" : ""),
        "numerics"};
  };
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& L = w.layers[l];
    const std::pair<const char*, const WeightView*> mats[] = {
        {"attn_q", &L.wq},       {"attn_k", &L.wk},   {"attn_v", &L.wv},      {"attn_output", &L.wo},
        {"ffn_gate", &L.w_gate}, {"ffn_up", &L.w_up}, {"ffn_down", &L.w_down}};
    for (const auto& [name, v] : mats)
      if (!covered(*v)) return reject(fmt::format("blk.{}.{}.weight", l, name), *v);
  }
  if (!covered(w.output)) return reject("output.weight", w.output);
  return {};
}

Result<std::span<const float>> forward(const Config& c, const Weights& w, RunState& s, KvCache& kv,
                                       std::span<const int32_t> tokens, int64_t pos, const ForwardTap* tap) {
  const SeqRun run{&kv, pos, static_cast<int64_t>(tokens.size()), /*logits=*/true};
  return forward(c, w, s, tokens, std::span<const SeqRun>(&run, 1), tap);
}

Result<std::span<const float>> forward(const Config& c, const Weights& w, RunState& s,
                                       std::span<const int32_t> tokens, std::span<const SeqRun> runs,
                                       const ForwardTap* tap) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t n_runs = static_cast<int64_t>(runs.size());
  if (n < 1 || n > s.n_batch)
    return Error{"", "forward", fmt::format("{} tokens in one batch (1 to {} allowed)", n, s.n_batch)};
  if (n_runs < 1 || n_runs > s.n_seqs)
    return Error{"", "forward", fmt::format("{} sequences in one batch (1 to {} allowed)", n_runs, s.n_seqs)};
  int64_t covered = 0;
  for (const SeqRun& r : runs) {
    QE_CHECK(r.kv != nullptr && r.n_tokens >= 1);
    if (r.pos < 0 || r.pos + r.n_tokens > std::min(r.kv->n_ctx(), s.n_ctx))
      return Error{"", "forward",
                   fmt::format("positions {}..{} are outside the context of {}", r.pos,
                               r.pos + r.n_tokens - 1, std::min(r.kv->n_ctx(), s.n_ctx))};
    covered += r.n_tokens;
    // A run's keys may be stored while its attention runs (attention_stores_kv), so no other run of the
    // step may read its cache.
    for (const SeqRun* o = runs.data(); o != &r; ++o)
      if (o->kv == r.kv) return Error{"", "forward", "two runs of one step share a KV cache"};
  }
  QE_CHECK(covered == n);
  for (int32_t id : tokens)
    if (id < 0 || id >= c.n_vocab)
      return Error{"", "forward", fmt::format("token id {} is outside the vocabulary of {}", id, c.n_vocab)};

  // The kernels, chosen once: this engine's numerics, or llama.cpp's (its activation quantizers, matmul
  // tiles and elementwise ops, with its one-token f16 paths when n == 1, as llama.cpp chooses them).
  // Their attention differs in data flow too: llama.cpp's rounds q and the weights to f16 and dots them
  // over its padded cache.
  const kernels::KernelTable& k = kernels::kernels(s.numerics, n);
  const bool fast = k.numerics == Numerics::fast;
  if (k.numerics == Numerics::llamacpp && n_runs > 1)
    return Error{"", "forward", "llama.cpp numerics run one sequence per forward pass", "numerics"};
  if (k.numerics == Numerics::llamacpp && runs[0].kv->layout() != KvLayout::rows)
    return Error{"", "forward", "llama.cpp numerics need the KV cache in rows layout", "numerics"};
  for (const SeqRun& r : runs)
    if (k.numerics == Numerics::fast && r.kv->layout() != KvLayout::tiles)
      return Error{"", "forward", "this engine's numerics need the KV cache in tiles layout", "numerics"};
  const int64_t dim = c.dim, q_dim = c.q_dim(), kv_dim = c.kv_dim(), n_ff = c.n_ff;
  float* x = s.x.data();      // (n, dim)
  float* xb = s.xb.data();    // (n, dim)
  float* xb2 = s.xb2.data();  // (n, dim)
  auto observe = [&](int64_t layer, TapPoint point, const float* v, int64_t cols) {
    if (tap && tap->on_input) tap->on_input(layer, point, v, n, cols);
  };

  // Token embeddings: x[t] = token_embd[tokens[t]], dequantized row by row
  const BlockTraits* embd = block_traits(w.token_embd.type);
  if (!embd)
    return Error{"", "token_embd.weight",
                 fmt::format("cannot dequantize {}", ggml_type_name(w.token_embd.type))};
  std::vector<uint8_t> plain_row(w.token_embd.interleave == 1 ? 0 : static_cast<size_t>(w.token_embd.row_stride));
  for (int64_t t = 0; t < n; ++t) {
    const uint8_t* row = static_cast<const uint8_t*>(w.token_embd.data) + tokens[t] * w.token_embd.row_stride;
    if (w.token_embd.interleave != 1) {  // a tied embedding, in x16 for the output matmul
      kernels::x16_plain_row(w.token_embd, tokens[t], plain_row.data());
      row = plain_row.data();
    }
    embd->to_float(row, x + t * dim, dim);
  }

  // The row-wise steps between two matmuls (a residual add, a norm, the SwiGLU product) run token by
  // token inside the next matmul's input conversion (kernels::RowHook), on every thread, instead of on
  // the caller alone while the others wait. Each row sees the same operations either way.
  // Token t entering a block: x[t] += xb2[t] (the previous block's output, when there is one), then
  // xb[t] = rmsnorm(x[t]) * norm.
  auto residual_norm = [&](int64_t t, const float* norm, bool add) {
    if (add) k.add(x + t * dim, xb2 + t * dim, x + t * dim, dim);
    k.rms_norm(x + t * dim, norm, xb + t * dim, dim, c.rms_eps);
  };
  // What RoPE's pass does for each run, the same in every layer: rotate and store its new keys and
  // values; only rotate (attention stores them: attention_stores_kv); or nothing (attention takes the
  // token whole: attention_owns_token).
  enum class RopePass : char { rotate_store, rotate, none };
  std::vector<RopePass> rope_pass(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto r = static_cast<int64_t>(i);
    rope_pass[i] = !fast                                           ? RopePass::rotate_store
                   : attention_owns_token(c, runs, r, s.n_threads) ? RopePass::none
                   : attention_stores_kv(c, runs, r, s.n_threads)  ? RopePass::rotate
                                                                   : RopePass::rotate_store;
  }
  const bool all_owned =
      std::all_of(rope_pass.begin(), rope_pass.end(), [](RopePass p) { return p == RopePass::none; });
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w.layers[static_cast<size_t>(l)];

    // ---- Attention block: x += Wo · attention(RoPE(Wq xb), RoPE(Wk xb), Wv xb), xb = rmsnorm(x) * attn_norm
    // (x first takes the previous layer's feed-forward output)
    auto attn_in = [&](int64_t t) { residual_norm(t, L.attn_norm, l > 0); };
    // q (n, q_dim), k (n, kv_dim), v (n, kv_dim) from one quantized xb
    if (Status st =
            project(s, k, xb, n, dim,
                    {{L.wq, s.q.data(), q_dim}, {L.wk, s.k.data(), kv_dim}, {L.wv, s.v.data(), kv_dim}},
                    kernels::RowHook::of(attn_in));
        !st)
      return st.error();
    observe(l, TapPoint::kAttnIn, xb, dim);
    // RoPE on adjacent pairs of every head at the token's position p in its run, then its k, v into the
    // run's cache (as rope_pass says)
    if (!all_owned)
      s.team->run(
          n,
          [&](int64_t t0, int64_t t1, int) {
            int64_t first = 0;  // the run's first token
            for (size_t i = 0; i < runs.size(); first += runs[i++].n_tokens) {
              const SeqRun& r = runs[i];
              if (rope_pass[i] == RopePass::none) continue;
              for (int64_t t = std::max(t0, first); t < std::min(t1, first + r.n_tokens); ++t) {
                const int64_t p = r.pos + t - first;
                float* kt = s.k.data() + t * kv_dim;
                s.rope.rotate(k, c, s.q.data() + t * q_dim, kt, p);
                if (rope_pass[i] == RopePass::rotate_store)
                  r.kv->store(l, p, kt, s.v.data() + t * kv_dim, k.from_f32_f16);
              }
            }
          },
          /*min_chunk=*/4);
    // s.att (n, q_dim). When attention takes every token whole, it also makes the output projection's
    // input row by row (no job for it between the two).
    const auto wo_in = kernels::activation_type(L.wo.type);
    const bool att_made = all_owned && wo_in && *wo_in != GgmlType::F32 && s.act.shape(*wo_in, n, q_dim).ok();
    if (!fast)
      attention_llamacpp(k, c, *runs[0].kv, l, s, n, runs[0].pos);
    else
      attention(k, c, runs, l, s, att_made ? &s.act : nullptr);
    observe(l, TapPoint::kAttnOut, s.att.data(), q_dim);
    if (Status st = att_made ? kernels::matmul(L.wo, s.act, xb2, *s.team, k)
                             : project(s, k, s.att.data(), n, q_dim, {{L.wo, xb2, dim}});
        !st)
      return st.error();

    // ---- Feed-forward block (SwiGLU): x += W_down (silu(W_gate xb) * (W_up xb)), xb = rmsnorm(x) * ffn_norm
    // (x first takes the attention output)
    auto ffn_in = [&](int64_t t) { residual_norm(t, L.ffn_norm, true); };
    if (Status st = project(s, k, xb, n, dim, {{L.w_gate, s.hb.data(), n_ff}, {L.w_up, s.hb2.data(), n_ff}},
                            kernels::RowHook::of(ffn_in));
        !st)
      return st.error();
    observe(l, TapPoint::kFfnIn, xb, dim);
    // (n, n_ff), row by row: a vector kernel's scalar tail must not fall on a token's row by its place
    // in the batch
    float* hb = s.hb.data();
    const float* hb2 = s.hb2.data();
    auto down_in = [&](int64_t t) { k.silu_mul(hb + t * n_ff, hb2 + t * n_ff, hb + t * n_ff, n_ff); };
    if (Status st = project(s, k, hb, n, n_ff, {{L.w_down, xb2, dim}}, kernels::RowHook::of(down_in)); !st)
      return st.error();
    observe(l, TapPoint::kFfnDownIn, hb, n_ff);
  }
  if (c.n_layers > 0) k.add(x, xb2, x, n * dim);  // the last feed-forward output

  if (tap && tap->skip_output) return std::span<const float>();

  // ---- Final norm and the output projection: logits (n_out, n_vocab) for every token, or for the last
  // token of each run that asks (their normalised rows packed at the front of xb)
  int64_t n_out = 0;
  if (s.all_logits) {
    for (n_out = 0; n_out < n; ++n_out)
      k.rms_norm(x + n_out * dim, w.output_norm, xb + n_out * dim, dim, c.rms_eps);
  } else {
    int64_t end = 0;
    for (const SeqRun& r : runs) {
      end += r.n_tokens;
      if (r.logits) k.rms_norm(x + (end - 1) * dim, w.output_norm, xb + n_out++ * dim, dim, c.rms_eps);
    }
  }
  if (n_out == 0) return std::span<const float>();
  if (Status st = project(s, k, xb, n_out, dim, {{w.output, s.logits.data(), c.n_vocab}}); !st) return st.error();
  return std::span<const float>(s.logits.data(), static_cast<size_t>(n_out * c.n_vocab));
}

}  // namespace qe::model
