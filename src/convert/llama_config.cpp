#include "convert/llama_config.h"

#include <fmt/core.h>

#include <charconv>
#include <cmath>
#include <string>

#include "model/config.h"

namespace qe::convert {
namespace {

using nlohmann::json;

constexpr int64_t kMaxDim = int64_t{1} << 20;  // as model/config.cpp: far above real models, no overflow

struct Fields {
  const json& cfg;
  const std::string& file;

  Error err(std::string_view field, std::string reason) const { return Error{file, std::string(field), std::move(reason)}; }

  Result<int64_t> integer(std::string_view key, std::optional<int64_t> fallback, int64_t lo, int64_t hi) const {
    auto it = cfg.find(key);
    if (it == cfg.end() || it->is_null()) {
      if (fallback) return *fallback;
      return err(key, "missing");
    }
    if (!it->is_number_integer()) return err(key, fmt::format("{} is not an integer", it->dump()));
    // Unsigned values above int64 read as negative here and are refused by the range check.
    const int64_t v = it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX) ? -1 : it->get<int64_t>();
    if (v < lo || v > hi) return err(key, fmt::format("{} is out of range [{}, {}]", v, lo, hi));
    return v;
  }

  Result<float> number(std::string_view key, std::optional<float> fallback) const {
    auto it = cfg.find(key);
    if (it == cfg.end() || it->is_null()) {
      if (fallback) return *fallback;
      return err(key, "missing");
    }
    if (!it->is_number()) return err(key, fmt::format("{} is not a number", it->dump()));
    const double v = it->get<double>();
    if (!std::isfinite(v)) return err(key, "is not finite");
    // Past float's range the cast gives inf, which "> 1" checks let through and JSON cannot write back.
    if (!std::isfinite(static_cast<float>(v))) return err(key, fmt::format("{} is out of float range", v));
    return static_cast<float>(v);
  }
};

// A float as the shortest decimal that reads back to it, so 1e-5f becomes 1e-05 in JSON, not
// 9.999999747378752e-06 (what a plain float->double conversion prints).
double shortest(float f) {
  const std::string s = fmt::format("{}", f);
  double d = 0;
  std::from_chars(s.data(), s.data() + s.size(), d);
  return d;
}

std::optional<int64_t> token_id(const json& v) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int64_t>();  // eos lists
  return std::nullopt;
}

struct BlockName {
  std::string_view hf, gguf;
  int rope;
};
constexpr BlockName kBlockNames[] = {
    {"input_layernorm", "attn_norm", 0},        {"self_attn.q_proj", "attn_q", 1},
    {"self_attn.k_proj", "attn_k", 2},          {"self_attn.v_proj", "attn_v", 0},
    {"self_attn.o_proj", "attn_output", 0},     {"post_attention_layernorm", "ffn_norm", 0},
    {"mlp.gate_proj", "ffn_gate", 0},           {"mlp.up_proj", "ffn_up", 0},
    {"mlp.down_proj", "ffn_down", 0},
};
constexpr std::pair<std::string_view, std::string_view> kGlobalNames[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

// "<prefix>N.<rest>" -> (N, rest); nullopt otherwise.
std::optional<std::pair<int64_t, std::string_view>> split_layer(std::string_view name, std::string_view prefix) {
  if (!name.starts_with(prefix)) return std::nullopt;
  name.remove_prefix(prefix.size());
  int64_t n = -1;
  auto [p, ec] = std::from_chars(name.data(), name.data() + name.size(), n);
  if (ec != std::errc() || n < 0 || p == name.data() + name.size() || *p != '.') return std::nullopt;
  return std::pair{n, name.substr(static_cast<size_t>(p - name.data()) + 1)};
}

}  // namespace

Result<LlamaHparams> hparams_from_hf_config(const json& cfg, const std::string& file) {
  if (!cfg.is_object()) return Error{file, "", "is not a JSON object"};
  Fields f{cfg, file};
  LlamaHparams hp;

  // The class decides the tensor layout; model_type is the fallback for configs without "architectures".
  std::string arch;
  if (auto it = cfg.find("architectures"); it != cfg.end() && !it->is_null()) {
    if (!it->is_array() || it->empty() || !(*it)[0].is_string())
      return f.err("architectures", fmt::format("{} is not a list of class names", it->dump()));
    arch = (*it)[0].get<std::string>();
  } else if (auto mt = cfg.find("model_type"); mt != cfg.end() && mt->is_string()) {
    const std::string t = mt->get<std::string>();
    arch = t == "llama" ? "LlamaForCausalLM" : t == "mistral" ? "MistralForCausalLM" : t;
  } else {
    return f.err("architectures", "missing (and no model_type)");
  }
  if (arch != "LlamaForCausalLM" && arch != "MistralForCausalLM")
    return f.err("architectures",
                 fmt::format("'{}' is not supported (LlamaForCausalLM, MistralForCausalLM)", arch));
  hp.architecture = arch;

  auto hidden = f.integer("hidden_size", {}, 1, kMaxDim);
  if (!hidden) return hidden.error();
  hp.hidden_size = *hidden;
  auto layers = f.integer("num_hidden_layers", {}, 1, 4096);
  if (!layers) return layers.error();
  hp.n_layers = *layers;
  auto heads = f.integer("num_attention_heads", {}, 1, 4096);
  if (!heads) return heads.error();
  hp.n_heads = *heads;
  auto kv = f.integer("num_key_value_heads", hp.n_heads, 1, 4096);
  if (!kv) return kv.error();
  hp.n_kv_heads = *kv;
  if (hp.n_heads % hp.n_kv_heads != 0)
    return f.err("num_key_value_heads", fmt::format("{} does not divide num_attention_heads {}", hp.n_kv_heads, hp.n_heads));
  hp.head_dim_explicit = cfg.contains("head_dim") && !cfg["head_dim"].is_null();
  if (!hp.head_dim_explicit && hp.hidden_size % hp.n_heads != 0)
    return f.err("num_attention_heads",
                 fmt::format("{} does not divide hidden_size {} (and there is no head_dim)", hp.n_heads, hp.hidden_size));
  auto head_dim = f.integer("head_dim", hp.hidden_size / hp.n_heads, 2, 65536);
  if (!head_dim) return head_dim.error();
  if (*head_dim % 2 != 0) return f.err("head_dim", fmt::format("{} is odd; RoPE rotates pairs", *head_dim));
  hp.head_dim = *head_dim;
  auto ff = f.integer("intermediate_size", {}, 1, kMaxDim);
  if (!ff) return ff.error();
  hp.n_ff = *ff;
  auto ctx = f.integer("max_position_embeddings", {}, 1, int64_t{1} << 24);
  if (!ctx) return ctx.error();
  hp.n_ctx = *ctx;
  auto vocab = f.integer("vocab_size", {}, 1, int64_t{1} << 24);
  if (!vocab) return vocab.error();
  hp.vocab_size = *vocab;
  auto eps = f.number("rms_norm_eps", {});
  if (!eps) return eps.error();
  if (!(*eps > 0.0f && *eps < 1.0f)) return f.err("rms_norm_eps", fmt::format("{} is not in (0, 1)", *eps));
  hp.rms_eps = *eps;
  auto theta = f.number("rope_theta", 10000.0f);
  if (!theta) return theta.error();
  if (!(*theta > 1.0f)) return f.err("rope_theta", fmt::format("{} must be > 1", *theta));
  hp.rope_theta = *theta;
  if (auto it = cfg.find("tie_word_embeddings"); it != cfg.end() && !it->is_null()) {
    if (!it->is_boolean()) return f.err("tie_word_embeddings", fmt::format("{} is not true/false", it->dump()));
    hp.tie_embeddings = it->get<bool>();
  }
  for (const char* key : {"attention_bias", "mlp_bias"})
    if (cfg.contains(key) && cfg[key].is_boolean() && cfg[key].get<bool>())
      return f.err(key, "biases are not part of the llama architecture");

  if (auto it = cfg.find("rope_scaling"); it != cfg.end() && !it->is_null()) {
    if (!it->is_object()) return f.err("rope_scaling", "is not an object");
    Fields rs{*it, file};
    std::string type;
    for (const char* key : {"rope_type", "type"})
      if (it->contains(key) && (*it)[key].is_string()) type = (*it)[key].get<std::string>();
    if (type == "linear" || type == "llama3") {
      auto factor = rs.number("factor", type == "llama3" ? std::optional<float>(8.0f) : std::nullopt);
      if (!factor) return Error{file, "rope_scaling.factor", factor.error().reason};
      if (!(*factor >= 1.0f)) return f.err("rope_scaling.factor", fmt::format("{} must be >= 1", *factor));
      hp.rope_scaling = type;
      hp.rope_factor = *factor;
    } else if (type != "default" && !type.empty()) {
      return f.err("rope_scaling", fmt::format("type '{}' is not supported (linear, llama3)", type));
    }
    if (type == "llama3") {
      auto low = rs.number("low_freq_factor", 1.0f), high = rs.number("high_freq_factor", 4.0f);
      auto orig = rs.integer("original_max_position_embeddings", 8192, 1, int64_t{1} << 24);
      if (!low) return Error{file, "rope_scaling.low_freq_factor", low.error().reason};
      if (!high) return Error{file, "rope_scaling.high_freq_factor", high.error().reason};
      if (!orig) return Error{file, "rope_scaling.original_max_position_embeddings", orig.error().reason};
      if (!(*high > *low))
        return f.err("rope_scaling.high_freq_factor", fmt::format("{} must exceed low_freq_factor {}", *high, *low));
      hp.rope_low_freq_factor = *low;
      hp.rope_high_freq_factor = *high;
      hp.rope_original_ctx = *orig;
    }
  }
  if (auto it = cfg.find("bos_token_id"); it != cfg.end()) hp.bos_token_id = token_id(*it);
  if (auto it = cfg.find("eos_token_id"); it != cfg.end()) hp.eos_token_id = token_id(*it);
  return hp;
}

Result<LlamaHparams> hparams_from_gguf(const GgufFile& g) {
  Result<model::Config> c = model::load_config(g);
  if (!c) return c.error();
  LlamaHparams hp;
  hp.hidden_size = c->dim;
  hp.n_layers = c->n_layers;
  hp.n_heads = c->n_heads;
  hp.n_kv_heads = c->n_kv_heads;
  hp.head_dim = c->head_dim;
  hp.head_dim_explicit = g.has("llama.attention.key_length");
  hp.n_ff = c->n_ff;
  hp.n_ctx = c->n_ctx_train;
  hp.vocab_size = c->n_vocab;
  hp.rms_eps = c->rms_eps;
  hp.rope_theta = c->rope_freq_base;
  hp.tie_embeddings = c->tied_embeddings;
  if (c->n_rot != c->head_dim)
    return Error{g.name(), "key llama.rope.dimension_count",
                 fmt::format("{} differs from the head size {}: not expressible in a HF LlamaConfig", c->n_rot, c->head_dim)};
  if (c->rope_freq_scale != 1.0f) {
    hp.rope_scaling = "linear";
    hp.rope_factor = 1.0f / c->rope_freq_scale;
  }
  if (auto bos = g.get_int("tokenizer.ggml.bos_token_id")) hp.bos_token_id = *bos;
  if (auto eos = g.get_int("tokenizer.ggml.eos_token_id")) hp.eos_token_id = *eos;
  return hp;
}

std::vector<GgufKv> llama_gguf_kvs(const LlamaHparams& hp) {
  auto u32 = [](int64_t v) { return GgufValue::u32(static_cast<uint32_t>(v)); };
  std::vector<GgufKv> kv = {
      {"general.architecture", GgufValue::str("llama")},
      {"llama.block_count", u32(hp.n_layers)},
      {"llama.context_length", u32(hp.n_ctx)},
      {"llama.embedding_length", u32(hp.hidden_size)},
      {"llama.feed_forward_length", u32(hp.n_ff)},
      {"llama.attention.head_count", u32(hp.n_heads)},
      {"llama.attention.head_count_kv", u32(hp.n_kv_heads)},
      {"llama.rope.freq_base", GgufValue::f32(hp.rope_theta)},
      {"llama.attention.layer_norm_rms_epsilon", GgufValue::f32(hp.rms_eps)},
  };
  if (hp.head_dim_explicit) {
    kv.push_back({"llama.attention.key_length", u32(hp.head_dim)});
    kv.push_back({"llama.attention.value_length", u32(hp.head_dim)});
  }
  kv.push_back({"llama.vocab_size", u32(hp.vocab_size)});
  kv.push_back({"llama.rope.dimension_count", u32(hp.head_dim)});
  if (hp.rope_scaling == "linear") {
    kv.push_back({"llama.rope.scaling.type", GgufValue::str("linear")});
    kv.push_back({"llama.rope.scaling.factor", GgufValue::f32(hp.rope_factor)});
  }
  return kv;
}

nlohmann::ordered_json hf_config_json(const LlamaHparams& hp, std::string_view torch_dtype) {
  nlohmann::ordered_json j;
  j["architectures"] = {hp.architecture};
  j["model_type"] = hp.architecture == "MistralForCausalLM" ? "mistral" : "llama";
  j["hidden_size"] = hp.hidden_size;
  j["intermediate_size"] = hp.n_ff;
  j["num_hidden_layers"] = hp.n_layers;
  j["num_attention_heads"] = hp.n_heads;
  j["num_key_value_heads"] = hp.n_kv_heads;
  j["head_dim"] = hp.head_dim;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = hp.n_ctx;
  j["rms_norm_eps"] = shortest(hp.rms_eps);
  j["rope_theta"] = shortest(hp.rope_theta);
  if (hp.rope_scaling == "linear") {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", shortest(hp.rope_factor)}};
  } else if (hp.rope_scaling == "llama3") {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", shortest(hp.rope_factor)},
                         {"low_freq_factor", shortest(hp.rope_low_freq_factor)},
                         {"high_freq_factor", shortest(hp.rope_high_freq_factor)},
                         {"original_max_position_embeddings", hp.rope_original_ctx}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["tie_word_embeddings"] = hp.tie_embeddings;
  j["vocab_size"] = hp.vocab_size;
  if (hp.bos_token_id) j["bos_token_id"] = *hp.bos_token_id;
  if (hp.eos_token_id) j["eos_token_id"] = *hp.eos_token_id;
  j["torch_dtype"] = torch_dtype;
  j["use_cache"] = true;
  return j;
}

std::vector<float> llama3_rope_factors(const LlamaHparams& hp) {
  // convert_hf_to_gguf.py works in torch float32: freqs = 1 / base^(arange(0, dim, 2) / dim).
  const int64_t dim = hp.head_dim;
  const float base = hp.rope_theta, factor = hp.rope_factor;
  const float low = hp.rope_low_freq_factor, high = hp.rope_high_freq_factor;
  const float old_ctx = static_cast<float>(hp.rope_original_ctx);
  const float low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
  std::vector<float> out;
  for (int64_t i = 0; i < dim; i += 2) {
    const float freq = 1.0f / std::pow(base, static_cast<float>(i) / static_cast<float>(dim));
    const float wavelen = 2.0f * static_cast<float>(M_PI) / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(factor);
    } else {
      const float smooth = (old_ctx / wavelen - low) / (high - low);
      out.push_back(1.0f / ((1.0f - smooth) / factor + smooth));
    }
  }
  return out;
}

Status llama3_scaling_from_factors(LlamaHparams& hp, const std::vector<float>& factors, const std::string& file) {
  float max = 1.0f;
  for (float v : factors) max = std::max(max, v);
  LlamaHparams trial = hp;
  trial.rope_scaling = "llama3";
  trial.rope_factor = max;
  trial.rope_low_freq_factor = 1.0f;
  trial.rope_high_freq_factor = 4.0f;
  trial.rope_original_ctx = 8192;
  const std::vector<float> expect = llama3_rope_factors(trial);
  bool same = expect.size() == factors.size();
  for (size_t i = 0; same && i < expect.size(); ++i)
    same = std::fabs(expect[i] - factors[i]) <= 1e-4f * std::fabs(expect[i]);
  if (!same)
    return Error{file, "tensor rope_freqs.weight",
                 "does not match llama3 rope scaling (low 1, high 4, original context 8192); cannot write rope_scaling"};
  hp = trial;
  return {};
}

std::optional<LlamaTensorName> gguf_name_for_hf(std::string_view hf) {
  for (auto [h, g] : kGlobalNames)
    if (hf == h) return LlamaTensorName{std::string(g), 0};
  auto layer = split_layer(hf, "model.layers.");
  if (!layer) return std::nullopt;
  for (const BlockName& b : kBlockNames)
    if (layer->second == std::string(b.hf) + ".weight")
      return LlamaTensorName{fmt::format("blk.{}.{}.weight", layer->first, b.gguf), b.rope};
  return std::nullopt;
}

std::optional<std::string> hf_name_for_gguf(std::string_view gguf) {
  for (auto [h, g] : kGlobalNames)
    if (gguf == g) return std::string(h);
  auto layer = split_layer(gguf, "blk.");
  if (!layer) return std::nullopt;
  for (const BlockName& b : kBlockNames)
    if (layer->second == std::string(b.gguf) + ".weight")
      return fmt::format("model.layers.{}.{}.weight", layer->first, b.hf);
  return std::nullopt;
}

std::vector<std::string> llama_tensor_order(int64_t n_layers, bool with_output) {
  std::vector<std::string> names = {"token_embd.weight"};
  for (int64_t i = 0; i < n_layers; ++i)
    for (const BlockName& b : kBlockNames) names.push_back(fmt::format("blk.{}.{}.weight", i, b.gguf));
  names.push_back("output_norm.weight");
  if (with_output) names.push_back("output.weight");
  return names;
}

std::optional<std::vector<uint64_t>> llama_tensor_shape(const LlamaHparams& hp, std::string_view name) {
  auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
  const uint64_t d = u(hp.hidden_size), q = u(hp.n_heads * hp.head_dim), kv = u(hp.n_kv_heads * hp.head_dim);
  const uint64_t ff = u(hp.n_ff), vocab = u(hp.vocab_size);
  if (name == "token_embd.weight" || name == "output.weight") return std::vector{vocab, d};
  if (name == "output_norm.weight") return std::vector{d};
  if (name == "rope_freqs.weight") return std::vector{u(hp.head_dim / 2)};
  auto layer = split_layer(name, "blk.");
  if (!layer || layer->first >= hp.n_layers) return std::nullopt;
  const std::string_view t = layer->second;
  if (t == "attn_norm.weight" || t == "ffn_norm.weight") return std::vector{d};
  if (t == "attn_q.weight") return std::vector{q, d};
  if (t == "attn_k.weight" || t == "attn_v.weight") return std::vector{kv, d};
  if (t == "attn_output.weight") return std::vector{d, q};
  if (t == "ffn_gate.weight" || t == "ffn_up.weight") return std::vector{ff, d};
  if (t == "ffn_down.weight") return std::vector{d, ff};
  return std::nullopt;
}

int64_t llama_layer_of(std::string_view name) {
  if (!name.starts_with("blk.")) return -1;
  int64_t n = 0;
  size_t i = 4;
  for (; i < name.size() && i < 14 && name[i] >= '0' && name[i] <= '9'; ++i) n = n * 10 + (name[i] - '0');
  return i > 4 && i < name.size() && name[i] == '.' ? n : -1;
}

bool llama_loader_before(std::string_view a, std::string_view b) {
  const int64_t la = llama_layer_of(a), lb = llama_layer_of(b);
  return la != lb ? la < lb : a < b;
}

}  // namespace qe::convert
