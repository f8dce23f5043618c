// The attention key/value cache: every layer's K and V for every position of the context, allocated
// once for n_ctx. f16 by default (llama.cpp's default, half the memory traffic), f32 selectable.
//
// Layout, chosen so that both attention products are row dot products for the matmul tile kernels:
//   K: (n_layers, n_ctx, kv_dim)  row = one position; scores = K_h q is a tile over position rows,
//                                  each row read at stride kv_dim with the head's offset.
//   V: (n_layers, kv_dim, n_ctx)  transposed: row = one feature; out = V_h^T p is a tile over feature
//                                  rows, each a dot over positions with the softmax weights p.
// Storing V transposed costs a strided write of kv_dim values per token (cheap) and makes the read
// side, which touches every cached position for every generated token, a contiguous stream.
#pragma once

#include <cstdint>
#include <memory>

#include "formats/error.h"
#include "formats/ggml_type.h"
#include "model/config.h"

namespace qe::model {

class KvCache {
 public:
  KvCache() = default;
  // type: F16 or F32. Error when the cache would not fit in memory.
  static Result<KvCache> create(const Config& c, int64_t n_ctx, GgmlType type);

  GgmlType type() const { return type_; }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t kv_dim() const { return kv_dim_; }
  int64_t elem_bytes() const { return elem_; }
  int64_t bytes() const { return 2 * layer_elems_ * n_layers_ * elem_; }

  // Converts and stores one position's k and v (kv_dim floats each) for a layer.
  void store(int64_t layer, int64_t pos, const float* k, const float* v);

  // K rows of a layer: position p, feature j at element p * kv_dim + j.
  const uint8_t* k_layer(int64_t layer) const { return k_.get() + layer * layer_elems_ * elem_; }
  // V^T rows of a layer: feature j, position p at element j * n_ctx + p.
  const uint8_t* v_layer(int64_t layer) const { return v_.get() + layer * layer_elems_ * elem_; }

 private:
  GgmlType type_ = GgmlType::F16;
  int64_t n_ctx_ = 0, n_layers_ = 0, kv_dim_ = 0, elem_ = 2, layer_elems_ = 0;
  std::unique_ptr<uint8_t[]> k_, v_;
};

// One sequence's part of a batched forward step (forward.h): the next n_tokens tokens of the batch go to
// `kv` at positions [pos, pos + n_tokens) and attend only to that cache. logits: the step returns the
// logits of the run's last token (a prompt chunk that does not end its prompt needs none).
struct SeqRun {
  KvCache* kv = nullptr;
  int64_t pos = 0;
  int64_t n_tokens = 0;
  bool logits = true;
};

}  // namespace qe::model
