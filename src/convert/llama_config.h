// The Llama hyperparameters qconvert moves between a Hugging Face config.json and GGUF `llama.*`
// metadata, in both directions, plus the tensor-name map and llama3 RoPE factors. The key names, types
// and defaults follow llama.cpp's convert_hf_to_gguf.py (LlamaModel) so llama.cpp loads our files.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/error.h"
#include "formats/gguf_reader.h"

namespace qe::convert {

struct LlamaHparams {
  std::string architecture = "LlamaForCausalLM";  // the HF class (LlamaForCausalLM, MistralForCausalLM)
  int64_t hidden_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  bool head_dim_explicit = false;  // config.json had head_dim (written as llama.attention.key_length)
  int64_t n_ff = 0;
  int64_t n_ctx = 0;                // max_position_embeddings
  int64_t vocab_size = 0;
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool tie_embeddings = false;
  // rope_scaling: "" (none), "linear" (factor) or "llama3" (factor, low/high freq factors, original ctx).
  std::string rope_scaling;
  float rope_factor = 1.0f;
  float rope_low_freq_factor = 1.0f;
  float rope_high_freq_factor = 4.0f;
  int64_t rope_original_ctx = 8192;
  std::optional<int64_t> bos_token_id, eos_token_id;
};

// Reads config.json (`file` is its path, for messages). Unsupported architectures, missing or mistyped
// fields, and inconsistent head counts are Errors naming the field.
Result<LlamaHparams> hparams_from_hf_config(const nlohmann::json& config, const std::string& file);

// Reads a llama GGUF's metadata (via load_config, so the same checks as qrun) plus the rope scaling
// keys and tokenizer bos/eos ids.
Result<LlamaHparams> hparams_from_gguf(const GgufFile& gguf);

// llama.* keys (and general.architecture) as convert_hf_to_gguf.py writes them.
std::vector<GgufKv> llama_gguf_kvs(const LlamaHparams& hp);

// config.json for LlamaForCausalLM as transformers writes it; torch_dtype "float32"/"float16"/"bfloat16".
nlohmann::ordered_json hf_config_json(const LlamaHparams& hp, std::string_view torch_dtype);

// rope_freqs.weight for llama3 scaling: head_dim/2 factors, computed as convert_hf_to_gguf.py does.
std::vector<float> llama3_rope_factors(const LlamaHparams& hp);
// Recovers llama3 rope_scaling parameters from a rope_freqs.weight tensor: tries the published Llama 3.x
// settings (low 1, high 4, original 8192, factor = the largest value) and accepts them when they
// reproduce the tensor. Error when they do not.
Status llama3_scaling_from_factors(LlamaHparams& hp, const std::vector<float>& factors, const std::string& file);

// Tensor names. HF "model.layers.3.self_attn.q_proj.weight" <-> GGUF "blk.3.attn_q.weight".
struct LlamaTensorName {
  std::string gguf;
  int rope_permute = 0;  // 0: none, 1: q (n_heads), 2: k (n_kv_heads)
};
std::optional<LlamaTensorName> gguf_name_for_hf(std::string_view hf_name);
std::optional<std::string> hf_name_for_gguf(std::string_view gguf_name);

// The GGUF names of a model, in the order we write them (llama.cpp's order: token_embd, then each block,
// then output_norm, output).
std::vector<std::string> llama_tensor_order(int64_t n_layers, bool with_output);

// The expected shape of each tensor, outermost first (PyTorch order); nullopt for names we do not know.
std::optional<std::vector<uint64_t>> llama_tensor_shape(const LlamaHparams& hp, std::string_view gguf_name);

// The layer of a llama tensor name ("blk.N.*" -> N), -1 for the others (token_embd, output, ...).
int64_t llama_layer_of(std::string_view name);
// llama.cpp's model loader order (weight_name_comparer): tensors outside the layers first, then by layer,
// by name within each; llama-quantize writes its tensors in this order and counts attn_v / ffn_down in it.
bool llama_loader_before(std::string_view a, std::string_view b);

}  // namespace qe::convert
