#include "model/rope_table.h"

#include <cmath>

namespace qe::model {

void rope_angles(int64_t pos, int64_t n_rot, float freq_base, float freq_scale, const float* freq_factors,
                 float* cos, float* sin) {
  // ggml: theta_scale = powf(base, -2/n_dims); theta *= theta_scale per pair; the rope_yarn angle with
  // ext_factor 0 (llama, linear scaling) is freq_scale * (theta / ff) and mscale (attn_factor) is 1.
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_rot));
  float theta = static_cast<float>(pos);
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    const float ff = freq_factors ? freq_factors[i] : 1.0f;
    const float angle = freq_scale * (theta / ff);
    cos[i] = std::cos(angle);
    sin[i] = std::sin(angle);
    theta *= theta_scale;
  }
}

RopeTable::RopeTable(const Config& c, const float* freq_factors, int64_t n_ctx)
    : n_ctx_(n_ctx), half_(c.n_rot / 2) {
  cos_.resize(static_cast<size_t>(n_ctx * half_));
  sin_.resize(static_cast<size_t>(n_ctx * half_));
  for (int64_t p = 0; p < n_ctx; ++p)
    rope_angles(p, c.n_rot, c.rope_freq_base, c.rope_freq_scale, freq_factors, cos_.data() + p * half_,
                sin_.data() + p * half_);
}

}  // namespace qe::model
