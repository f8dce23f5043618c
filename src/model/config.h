// Hyperparameters of a llama-architecture model, read from GGUF metadata and validated against the
// tensor shapes before anything runs. Every inconsistency is one Error naming the key or tensor.
#pragma once

#include <cstdint>
#include <string>

#include "formats/error.h"
#include "formats/gguf_reader.h"

namespace qe::model {

struct Config {
  int64_t n_vocab = 0;      // rows of token_embd
  int64_t dim = 0;          // llama.embedding_length (residual width)
  int64_t n_layers = 0;     // llama.block_count
  int64_t n_ff = 0;         // llama.feed_forward_length (SwiGLU hidden width)
  int64_t n_heads = 0;      // llama.attention.head_count (query heads)
  int64_t n_kv_heads = 0;   // llama.attention.head_count_kv (GQA: n_heads is a multiple of it)
  int64_t head_dim = 0;     // llama.attention.key_length, default dim / n_heads
  int64_t n_rot = 0;        // llama.rope.dimension_count, default head_dim
  int64_t n_ctx_train = 0;  // llama.context_length
  float rms_eps = 1e-5f;    // llama.attention.layer_norm_rms_epsilon
  float rope_freq_base = 10000.0f;  // llama.rope.freq_base
  float rope_freq_scale = 1.0f;     // 1 / llama.rope.scaling.factor for "linear" scaling
  bool has_rope_freqs = false;      // rope_freqs.weight present (llama3 scaling, as llama.cpp stores it)
  bool tied_embeddings = false;     // no output.weight: the output projection reuses token_embd
  std::string name;                 // general.name, for logs

  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
};

// Reads and checks the hyperparameters. Refuses an architecture other than "llama" (Mistral and
// SmolLM GGUFs say "llama" too) with a message naming general.architecture.
Result<Config> load_config(const GgufFile& file);

}  // namespace qe::model
