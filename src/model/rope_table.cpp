#include "model/rope_table.h"

#include "kernels/kernel_table.h"

namespace qe::model {

RopeTable::RopeTable(const Config& c, const float* freq_factors, int64_t n_ctx)
    : n_ctx_(n_ctx), half_(c.n_rot / 2) {
  cos_.resize(static_cast<size_t>(n_ctx * half_));
  sin_.resize(static_cast<size_t>(n_ctx * half_));
  for (int64_t p = 0; p < n_ctx; ++p)
    kernels::rope_cos_sin(p, c.n_rot, c.rope_freq_base, c.rope_freq_scale, freq_factors,
                          cos_.data() + p * half_, sin_.data() + p * half_);
}

}  // namespace qe::model
