#include "model/config.h"

#include <fmt/core.h>

#include <cmath>
#include <string_view>

namespace qe::model {
namespace {

// Integer metadata as llama.cpp reads it: any integer type, checked to be in [lo, hi].
Result<int64_t> get_count(const GgufFile& f, std::string_view key, int64_t lo, int64_t hi) {
  Result<int64_t> v = f.get_int(key);
  if (!v) return v.error();
  if (*v < lo || *v > hi) return Error{f.name(), "key " + std::string(key), fmt::format("{} is out of range [{}, {}]", *v, lo, hi)};
  return *v;
}

Result<int64_t> get_count_or(const GgufFile& f, std::string_view key, int64_t fallback, int64_t lo, int64_t hi) {
  if (!f.has(key)) return fallback;
  return get_count(f, key, lo, hi);
}

// A float64 past float's range becomes inf here, which every "> 1" / ">= 1" check below would let through
// into RoPE (and NaN would fail them silently): both are refused by name.
Result<float> get_float_or(const GgufFile& f, std::string_view key, float fallback) {
  if (!f.has(key)) return fallback;
  float v;
  // Some converters store these as float64.
  if (Result<float> v32 = f.get_f32(key)) {
    v = *v32;
  } else {
    Result<double> d = f.get_f64(key);
    if (!d) return v32.error();
    v = static_cast<float>(*d);
  }
  if (!std::isfinite(v)) return Error{f.name(), "key " + std::string(key), fmt::format("{} is not a finite float", v)};
  return v;
}

}  // namespace

Result<Config> load_config(const GgufFile& f) {
  Result<std::string> arch = f.get_string("general.architecture");
  if (!arch) return arch.error();
  if (*arch != "llama")
    return Error{f.name(), "key general.architecture",
                 fmt::format("architecture '{}' is not supported (only 'llama': Llama, Mistral, SmolLM, TinyLlama)", *arch)};

  constexpr int64_t kMaxDim = 1 << 20;  // far above any real model, low enough that products cannot overflow
  Config c;
  if (Result<std::string> name = f.get_string("general.name")) c.name = *name;
  auto dim = get_count(f, "llama.embedding_length", 1, kMaxDim);
  if (!dim) return dim.error();
  c.dim = *dim;
  auto layers = get_count(f, "llama.block_count", 1, 4096);
  if (!layers) return layers.error();
  c.n_layers = *layers;
  auto ff = get_count(f, "llama.feed_forward_length", 1, kMaxDim);
  if (!ff) return ff.error();
  c.n_ff = *ff;
  auto heads = get_count(f, "llama.attention.head_count", 1, 4096);
  if (!heads) return heads.error();
  c.n_heads = *heads;
  auto kv_heads = get_count_or(f, "llama.attention.head_count_kv", c.n_heads, 1, c.n_heads);
  if (!kv_heads) return kv_heads.error();
  c.n_kv_heads = *kv_heads;
  if (c.n_heads % c.n_kv_heads != 0)
    return Error{f.name(), "key llama.attention.head_count_kv",
                 fmt::format("{} query heads are not a multiple of {} KV heads", c.n_heads, c.n_kv_heads)};
  if (!f.has("llama.attention.key_length") && c.dim % c.n_heads != 0)
    return Error{f.name(), "key llama.attention.head_count",
                 fmt::format("embedding length {} is not a multiple of {} heads", c.dim, c.n_heads)};
  auto head_dim = get_count_or(f, "llama.attention.key_length", c.dim / c.n_heads, 2, 65536);
  if (!head_dim) return head_dim.error();
  c.head_dim = *head_dim;
  auto v_len = get_count_or(f, "llama.attention.value_length", c.head_dim, 1, 65536);
  if (!v_len) return v_len.error();
  if (*v_len != c.head_dim)
    return Error{f.name(), "key llama.attention.value_length",
                 fmt::format("{} differs from key_length {} (not a llama model)", *v_len, c.head_dim)};
  auto n_rot = get_count_or(f, "llama.rope.dimension_count", c.head_dim, 2, c.head_dim);
  if (!n_rot) return n_rot.error();
  if (*n_rot % 2 != 0)
    return Error{f.name(), "key llama.rope.dimension_count", fmt::format("{} is odd; RoPE rotates pairs", *n_rot)};
  c.n_rot = *n_rot;
  auto ctx = get_count_or(f, "llama.context_length", 2048, 1, int64_t{1} << 24);
  if (!ctx) return ctx.error();
  c.n_ctx_train = *ctx;

  auto eps = f.get_f32("llama.attention.layer_norm_rms_epsilon");
  if (!eps) return eps.error();
  if (!(*eps > 0.0f && *eps < 1.0f))
    return Error{f.name(), "key llama.attention.layer_norm_rms_epsilon", fmt::format("{} is not in (0, 1)", *eps)};
  c.rms_eps = *eps;
  auto base = get_float_or(f, "llama.rope.freq_base", 10000.0f);
  if (!base) return base.error();
  if (!(*base > 1.0f)) return Error{f.name(), "key llama.rope.freq_base", fmt::format("{} must be > 1", *base)};
  c.rope_freq_base = *base;

  if (f.has("llama.rope.scaling.type")) {
    auto type = f.get_string("llama.rope.scaling.type");
    if (!type) return type.error();
    if (*type == "linear") {
      auto factor = get_float_or(f, "llama.rope.scaling.factor", 1.0f);
      if (!factor) return factor.error();
      if (!(*factor >= 1.0f))
        return Error{f.name(), "key llama.rope.scaling.factor", fmt::format("{} must be >= 1", *factor)};
      c.rope_freq_scale = 1.0f / *factor;
    } else if (*type != "none" && *type != "llama3") {
      // llama3 scaling is carried by the rope_freqs.weight tensor; yarn/longrope are not llama-2/3 features.
      return Error{f.name(), "key llama.rope.scaling.type", fmt::format("'{}' is not supported (none, linear, llama3)", *type)};
    }
  }
  if (f.has("llama.rope.freq_scale")) {
    auto scale = get_float_or(f, "llama.rope.freq_scale", 1.0f);
    if (!scale) return scale.error();
    if (!(*scale > 0.0f))
      return Error{f.name(), "key llama.rope.freq_scale", fmt::format("{} must be > 0", *scale)};
    c.rope_freq_scale = *scale;
  }

  // Shapes decide what metadata only claims.
  const GgufTensorInfo* embd = f.find_tensor("token_embd.weight");
  if (!embd) return Error{f.name(), "tensor token_embd.weight", "missing"};
  if (embd->dims.size() != 2 || static_cast<int64_t>(embd->dims[0]) != c.dim)
    return Error{f.name(), "tensor token_embd.weight",
                 fmt::format("shape does not match embedding length {} (expected [{}, n_vocab])", c.dim, c.dim)};
  c.n_vocab = static_cast<int64_t>(embd->dims[1]);
  if (f.has("llama.vocab_size")) {
    auto vocab = get_count(f, "llama.vocab_size", 1, int64_t{1} << 24);
    if (!vocab) return vocab.error();
    if (*vocab != c.n_vocab)
      return Error{f.name(), "key llama.vocab_size",
                   fmt::format("{} differs from token_embd.weight's {} rows", *vocab, c.n_vocab)};
  }
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  c.has_rope_freqs = f.find_tensor("rope_freqs.weight") != nullptr;
  return c;
}

}  // namespace qe::model
