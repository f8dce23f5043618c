// The attention key/value cache: every layer's K and V for every position of the context, allocated
// once for n_ctx. f16 by default (llama.cpp's default, half the memory traffic), f32 selectable.
//
// Two layouts, one per attention data flow (same values, only their places differ):
//   rows (llama.cpp numerics: attention_llamacpp dots f16 rows as ggml does)
//     K: (n_layers, n_ctx, kv_dim)  row = one position; scores = K_h q, a dot per position row.
//     V: (n_layers, kv_dim, n_ctx)  transposed: row = one feature; out = V_h^T p, a dot per feature row.
//   tiles (fast numerics: the flash kernels take a block of kTile keys at a time)
//     K: (n_layers, n_ctx / kTile, kv_dim, kTile)  each block of kTile positions transposed: a head's
//        keys of one block are head_dim rows of kTile, the K^T tile attn_block reads.
//     V: (n_layers, n_ctx, kv_dim)  row = one position: a block's values are kTile rows of head_dim.
//   Reading a block is then a widening copy of rows; with `rows` it needs two transposes, which took
//   most of a batched decode step's attention (8 streams of SmolLM2-135M on a Zen 3).
// Either way one position's write is kv_dim strided stores; with tiles each key lands in a cache line of
// its own, so attention stores a step's keys itself where it can (attention_stores_kv, attention.h).
#pragma once

#include <cstdint>
#include <memory>

#include "formats/error.h"
#include "formats/ggml_type.h"
#include "kernels/kernel_table.h"
#include "model/config.h"

namespace qe::model {

enum class KvLayout { rows, tiles };

class KvCache {
 public:
  static constexpr int64_t kTile = kernels::kAttnBlock;

  KvCache() = default;
  // type: F16 or F32. Error when the cache would not fit in memory.
  static Result<KvCache> create(const Config& c, int64_t n_ctx, GgmlType type,
                                KvLayout layout = KvLayout::tiles);

  GgmlType type() const { return type_; }
  KvLayout layout() const { return layout_; }
  int64_t n_ctx() const { return n_ctx_; }
  int64_t kv_dim() const { return kv_dim_; }
  int64_t elem_bytes() const { return elem_; }
  int64_t bytes() const { return 2 * layer_elems_ * n_layers_ * elem_; }

  // Converts and stores one position's k and v (kv_dim floats each) for a layer; to_f16 converts a row
  // for an f16 cache (the kernel table's from_f32_f16: every level gives fp32_to_fp16's bits).
  void store(int64_t layer, int64_t pos, const float* k, const float* v, kernels::QuantizeRowFn to_f16);
  // The same for features [first, first + count) of k and v only (k[0], v[0] are feature `first`): one
  // KV head's part, for the attention that reads it next.
  void store(int64_t layer, int64_t pos, int64_t first, int64_t count, const float* k, const float* v,
             kernels::QuantizeRowFn to_f16);

  // A layer's K and V, position p, feature j at element
  //   rows:  K p * kv_dim + j,                          V j * n_ctx + p
  //   tiles: K (p / kTile * kv_dim + j) * kTile + p % kTile,  V p * kv_dim + j
  const uint8_t* k_layer(int64_t layer) const { return k_.get() + layer * layer_elems_ * elem_; }
  const uint8_t* v_layer(int64_t layer) const { return v_.get() + layer * layer_elems_ * elem_; }

 private:
  template <class T>
  void store_as(int64_t layer, int64_t pos, int64_t first, int64_t count, const float* k, const float* v,
                kernels::QuantizeRowFn to_f16);

  GgmlType type_ = GgmlType::F16;
  KvLayout layout_ = KvLayout::tiles;
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
