#include "model/kv_cache.h"

#include <fmt/core.h>

#include <cstring>
#include <new>

#include "formats/blocks.h"

namespace qe::model {

Result<KvCache> KvCache::create(const Config& c, int64_t n_ctx, GgmlType type) {
  if (type != GgmlType::F16 && type != GgmlType::F32)
    return Error{"", "cache type", fmt::format("{} is not supported (f16, f32)", ggml_type_name(type))};
  if (n_ctx <= 0) return Error{"", "context", fmt::format("{} positions", n_ctx)};
  KvCache kv;
  kv.type_ = type;
  kv.n_ctx_ = n_ctx;
  kv.n_layers_ = c.n_layers;
  kv.kv_dim_ = c.kv_dim();
  kv.elem_ = type == GgmlType::F16 ? 2 : 4;
  kv.layer_elems_ = n_ctx * c.kv_dim();
  const int64_t per_tensor = kv.layer_elems_ * kv.n_layers_ * kv.elem_;
  // Positions never written are never read (attention stops at the current position), so the memory
  // is left uninitialised: the OS hands out pages as the context fills.
  kv.k_.reset(new (std::nothrow) uint8_t[static_cast<size_t>(per_tensor)]);
  kv.v_.reset(new (std::nothrow) uint8_t[static_cast<size_t>(per_tensor)]);
  if (!kv.k_ || !kv.v_)
    return Error{
        "", "kv cache",
        fmt::format("cannot allocate 2 x {:.1f} MiB for {} positions", per_tensor / 1048576.0, n_ctx)};
  return kv;
}

void KvCache::store(int64_t layer, int64_t pos, const float* k, const float* v) {
  QE_CHECK(layer >= 0 && layer < n_layers_ && pos >= 0 && pos < n_ctx_);
  const int64_t base = layer * layer_elems_;
  if (type_ == GgmlType::F32) {
    auto* kd = reinterpret_cast<float*>(k_.get()) + base + pos * kv_dim_;
    std::memcpy(kd, k, static_cast<size_t>(kv_dim_) * sizeof(float));
    auto* vd = reinterpret_cast<float*>(v_.get()) + base + pos;
    for (int64_t j = 0; j < kv_dim_; ++j) vd[j * n_ctx_] = v[j];
  } else {
    auto* kd = reinterpret_cast<uint16_t*>(k_.get()) + base + pos * kv_dim_;
    for (int64_t j = 0; j < kv_dim_; ++j) kd[j] = fp32_to_fp16(k[j]);
    auto* vd = reinterpret_cast<uint16_t*>(v_.get()) + base + pos;
    for (int64_t j = 0; j < kv_dim_; ++j) vd[j * n_ctx_] = fp32_to_fp16(v[j]);
  }
}

}  // namespace qe::model
