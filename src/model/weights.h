// The weights of a llama model as non-owning views into the mapped GGUF file (zero copy). Shapes in
// the comments are (rows, cols) = (output features, input features), i.e. ggml's (ne[1], ne[0]).
#pragma once

#include <memory>
#include <vector>

#include "formats/error.h"
#include "formats/gguf_reader.h"
#include "kernels/matmul.h"
#include "model/config.h"

namespace qe::model {

using kernels::WeightView;

struct LayerWeights {
  const float* attn_norm = nullptr;  // (dim)
  WeightView wq;                     // (n_heads * head_dim, dim), rows permuted per head for pair RoPE
  WeightView wk;                     // (n_kv_heads * head_dim, dim), likewise
  WeightView wv;                     // (n_kv_heads * head_dim, dim)
  WeightView wo;                     // (dim, n_heads * head_dim)
  const float* ffn_norm = nullptr;   // (dim)
  WeightView w_gate;                 // (n_ff, dim)
  WeightView w_up;                   // (n_ff, dim)
  WeightView w_down;                 // (dim, n_ff)
};

struct Weights {
  WeightView token_embd;                // (n_vocab, dim): rows are looked up, one per token
  const float* output_norm = nullptr;   // (dim)
  WeightView output;                    // (n_vocab, dim): token_embd itself when embeddings are tied
  const float* rope_freqs = nullptr;    // (n_rot / 2) llama3 frequency factors, or nullptr
  std::vector<LayerWeights> layers;     // n_layers
  // The x16 copies of the interleaved matrices (kernels/interleaved.h), shared so a copy of Weights
  // stays valid; the views above point into it. Empty when nothing was interleaved.
  std::shared_ptr<uint8_t[]> interleaved;
  int64_t interleaved_bytes = 0;
  int64_t f16_as_bf16 = 0;  // f16 matrices stored as bf16 x16 (load_weights' f16_as_bf16)
};

// Every tensor present, of the shape the config implies, of a type we have kernels for, and aligned
// for its element type; otherwise an Error naming the tensor.
// interleave: layer matrices (and an untied output) of the x16 types (kernels/interleaved.h: q4_0, q4_1,
// q8_0, the k-quants q4_K..q6_K, f16, bf16) whose rows are a multiple of 16 are copied into the x16
// layout, one tensor at a time, and the file pages they came from are released, so memory stays about
// one model's size. The norm vectors are then copied into the same buffer and their pages released
// too (weights.cpp says why). An untied token_embd stays in the map: its rows are looked up.
// f16_as_bf16 (with interleave): f16 matrices become bf16 x16 (lossy, see ModelOptions::f16_as_bf16).
Result<Weights> load_weights(const GgufFile& file, const Config& config, bool interleave = true, int n_threads = 0,
                             bool f16_as_bf16 = false);

}  // namespace qe::model
