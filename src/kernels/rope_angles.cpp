// RoPE angles (kernel_table.h, rope_cos_sin): ggml_rope_cache_init for one position. The kernels' tests
// and qbench use the unscaled form, the model's RopeTable the scaled one: one definition for both.
#include <cmath>

#include "kernels/kernel_table.h"

namespace qe::kernels {

void rope_cos_sin(int64_t pos, int64_t n_rot, float freq_base, float freq_scale, const float* freq_factors,
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

}  // namespace qe::kernels
