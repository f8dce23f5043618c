// RoPE angles for every position of the context, computed once (llama.cpp's ggml_rope_cache_init per
// position, kernels::rope_cos_sin): theta_i(pos) = freq_scale * (pos * base^(-2i/n_rot)) / factor_i, where
// the power is built by repeated multiplication in float exactly as ggml does, so the angles match its
// bits. freq_scale is 1 / rope.scaling.factor ("linear"); factor_i are llama3's rope_freqs.weight (else 1).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/kernel_table.h"
#include "model/config.h"

namespace qe::model {

class RopeTable {
 public:
  RopeTable() = default;
  // Fills positions [0, n_ctx). freq_factors: (n_rot / 2) or nullptr.
  RopeTable(const Config& c, const float* freq_factors, int64_t n_ctx);

  int64_t n_ctx() const { return n_ctx_; }
  const float* cos(int64_t pos) const { return cos_.data() + pos * half_; }  // (n_rot / 2)
  const float* sin(int64_t pos) const { return sin_.data() + pos * half_; }  // (n_rot / 2)

  // RoPE on one token at `pos`, in place: its query row (n_heads heads) and key row (n_kv_heads) with
  // the table's kernel. The forward pass's RoPE pass and attention's owned tokens (attention.h) both
  // rotate through this, so a token gets the same bits either way.
  void rotate(const kernels::KernelTable& k, const Config& c, float* q, float* key, int64_t pos) const {
    k.rope(q, c.n_heads, c.head_dim, c.n_rot, cos(pos), sin(pos));
    k.rope(key, c.n_kv_heads, c.head_dim, c.n_rot, cos(pos), sin(pos));
  }

 private:
  int64_t n_ctx_ = 0, half_ = 0;
  std::vector<float> cos_, sin_;  // (n_ctx, n_rot / 2)
};

}  // namespace qe::model
