#include "model/kv_cache.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "formats/blocks.h"

namespace qe::model {

Result<KvCache> KvCache::create(const Config& c, int64_t n_ctx, GgmlType type, KvLayout layout) {
  if (type != GgmlType::F16 && type != GgmlType::F32)
    return Error{"", "cache type", fmt::format("{} is not supported (f16, f32)", ggml_type_name(type))};
  if (n_ctx <= 0) return Error{"", "context", fmt::format("{} positions", n_ctx)};
  KvCache kv;
  kv.type_ = type;
  kv.layout_ = layout;
  kv.n_ctx_ = n_ctx;
  kv.n_layers_ = c.n_layers;
  kv.kv_dim_ = c.kv_dim();
  kv.elem_ = type == GgmlType::F16 ? 2 : 4;
  // tiles: whole tiles of positions (the last one partly unused).
  kv.layer_elems_ = (layout == KvLayout::tiles ? (n_ctx + kTile - 1) / kTile * kTile : n_ctx) * c.kv_dim();
  const int64_t per_tensor = kv.layer_elems_ * kv.n_layers_ * kv.elem_;
  // Positions never written are never used (attention stops at the current position; with tiles the
  // kernels may read the rest of a block's keys, but mask them by replacement), so the memory is left
  // uninitialised: the OS hands out pages as the context fills.
  kv.k_.reset(new (std::nothrow) uint8_t[static_cast<size_t>(per_tensor)]);
  kv.v_.reset(new (std::nothrow) uint8_t[static_cast<size_t>(per_tensor)]);
  if (!kv.k_ || !kv.v_)
    return Error{
        "", "kv cache",
        fmt::format("cannot allocate 2 x {:.1f} MiB for {} positions", per_tensor / 1048576.0, n_ctx)};
  return kv;
}

template <class T>
void KvCache::store_as(int64_t layer, int64_t pos, int64_t first, int64_t count, const float* k,
                       const float* v, kernels::QuantizeRowFn to_f16) {
  auto* kd = reinterpret_cast<T*>(k_.get()) + layer * layer_elems_;
  auto* vd = reinterpret_cast<T*>(v_.get()) + layer * layer_elems_;
  auto convert = [&](const float* x, T* y, int64_t n) {
    if constexpr (sizeof(T) == 2) to_f16(x, y, n);
    else std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
  };
  // x's count values to y[j * stride]: in place when contiguous, else through a buffer.
  auto put = [&](const float* x, T* y, int64_t stride) {
    if (stride == 1) return convert(x, y, count);
    constexpr int64_t kChunk = 256;
    T buf[kChunk];
    for (int64_t j0 = 0; j0 < count; j0 += kChunk) {
      const int64_t m = std::min(kChunk, count - j0);
      convert(x + j0, buf, m);
      for (int64_t j = 0; j < m; ++j) y[(j0 + j) * stride] = buf[j];
    }
  };
  if (layout_ == KvLayout::rows) {
    put(k, kd + pos * kv_dim_ + first, 1);
    put(v, vd + first * n_ctx_ + pos, n_ctx_);
  } else {
    put(k, kd + (pos / kTile * kv_dim_ + first) * kTile + pos % kTile, kTile);
    put(v, vd + pos * kv_dim_ + first, 1);
  }
}

void KvCache::store(int64_t layer, int64_t pos, const float* k, const float* v, kernels::QuantizeRowFn to_f16) {
  store(layer, pos, 0, kv_dim_, k, v, to_f16);
}

void KvCache::store(int64_t layer, int64_t pos, int64_t first, int64_t count, const float* k, const float* v,
                    kernels::QuantizeRowFn to_f16) {
  QE_CHECK(layer >= 0 && layer < n_layers_ && pos >= 0 && pos < n_ctx_);
  QE_CHECK(first >= 0 && count >= 1 && first + count <= kv_dim_);
  if (type_ == GgmlType::F32) {
    store_as<float>(layer, pos, first, count, k, v, to_f16);
  } else {
    QE_CHECK(to_f16 != nullptr);
    store_as<uint16_t>(layer, pos, first, count, k, v, to_f16);
  }
}

}  // namespace qe::model
