#include "convert/plan.h"

#include <fmt/core.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "formats/blocks.h"

namespace qe::convert {
namespace {

std::string shape_str(const std::vector<uint64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += fmt::format("{}{}", i ? ", " : "", s[i]);
  return out + "]";
}

std::vector<uint64_t> reversed(std::span<const uint64_t> s) { return {s.rbegin(), s.rend()}; }

GgmlType ggml_of(SafetensorsFloatType t) {
  switch (t) {
    case SafetensorsFloatType::F32: return GgmlType::F32;
    case SafetensorsFloatType::F16: return GgmlType::F16;
    case SafetensorsFloatType::BF16: return GgmlType::BF16;
  }
  return GgmlType::F32;
}

bool dequantizable(GgmlType t) {
  const BlockTraits* b = block_traits(t);
  return b != nullptr && b->to_float != nullptr;
}

// f32/f16/bf16/q8_0 hold (nearly) the original weights; anything coarser is a lossy intermediate.
bool high_precision(GgmlType t) {
  return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16 || t == GgmlType::Q8_0;
}

void finish_plan(TensorPlan& p) {
  p.copy = p.out_type == p.src_type && p.order.head_dim == 0 && p.computed.empty();
}

// The policy's choice for p (its name and dims set), then finish_plan.
void choose_type(TensorPlan& p, const TypePolicy& policy, const ModelShape& model) {
  if (policy.leave_output && p.name == "output.weight" && p.dims.size() > 1) {  // llama-quantize: not (re)quantized
    p.out_type = p.src_type;
    p.reason = "output tensor left as it is";
    finish_plan(p);
    return;
  }
  TypeChoice c = choose_tensor_type(policy, p.name, p.dims, model);
  p.out_type = c.type;
  p.reason = std::move(c.reason);
  p.fallback = c.fallback;
  p.override_index = c.override_index;
  finish_plan(p);
}

}  // namespace

ModelShape model_shape(const LlamaHparams& hp, bool has_output) {
  return ModelShape{has_output, hp.n_layers, hp.n_heads, hp.n_kv_heads};
}

ModelShape model_shape(const GgufFile& g) {
  ModelShape m;
  m.has_output = g.find_tensor("output.weight") != nullptr;
  // A file qrun could not load keeps no layer counts: only the rules without layers then apply.
  if (Result<LlamaHparams> hp = hparams_from_gguf(g)) m = model_shape(*hp, m.has_output);
  return m;
}

uint64_t TensorPlan::n_elements() const {
  uint64_t n = 1;
  for (uint64_t d : dims) n *= d;
  return n;
}
uint64_t TensorPlan::src_bytes() const { return computed.empty() ? src.size() : computed.size() * sizeof(float); }
uint64_t TensorPlan::out_bytes() const { return ggml_row_bytes(out_type, dims[0]) * (n_elements() / dims[0]); }

Result<std::vector<TensorPlan>> plan_hf_to_gguf(const HfModelDir& dir, const LlamaHparams& hp,
                                                const TypePolicy& policy) {
  // Map every HF tensor first: an unknown one is refused before anything is planned.
  std::map<std::string, const HfTensor*> by_gguf;
  std::map<std::string, int> rope_of;
  for (const HfTensor& t : dir.tensors()) {
    const std::string& name = t.info->name;
    if (name.ends_with("rotary_emb.inv_freq")) continue;
    if (name == "lm_head.weight" && hp.tie_embeddings) continue;  // a saved copy of the embeddings
    std::optional<LlamaTensorName> g = gguf_name_for_hf(name);
    if (!g)
      return Error{dir.shard_path(t), "tensor " + name,
                   name.ends_with(".bias") ? "biases are not part of the llama architecture"
                                           : "is not a tensor of a Llama model"};
    by_gguf[g->gguf] = &t;
    rope_of[g->gguf] = g->rope_permute;
  }
  const bool has_output = by_gguf.count("output.weight") != 0;
  if (!hp.tie_embeddings && !has_output)
    return Error{dir.dir(), "tensor lm_head.weight", "missing (config.json says tie_word_embeddings is false)"};

  std::vector<TensorPlan> plans;
  if (hp.rope_scaling == "llama3") {
    TensorPlan p;
    p.name = "rope_freqs.weight";
    p.computed = llama3_rope_factors(hp);
    p.dims = {p.computed.size()};
    p.reason = "computed from rope_scaling (llama3), as convert_hf_to_gguf.py writes it";
    plans.push_back(std::move(p));
  }
  for (const std::string& name : llama_tensor_order(hp.n_layers, has_output)) {
    auto it = by_gguf.find(name);
    const std::string hf = *hf_name_for_gguf(name);
    if (it == by_gguf.end()) return Error{dir.dir(), "tensor " + hf, "missing"};
    Result<FloatTensorView> view = dir.float_tensor(hf);
    if (!view) return view.error();
    const std::vector<uint64_t> shape(view->shape.begin(), view->shape.end());
    const std::vector<uint64_t> want = *llama_tensor_shape(hp, name);
    if (shape != want)
      return Error{dir.shard_path(*it->second), "tensor " + hf,
                   fmt::format("shape {} does not match config.json (expected {})", shape_str(shape), shape_str(want))};
    TensorPlan p;
    p.name = name;
    p.source_name = hf;
    p.dims = reversed(shape);
    p.src_type = ggml_of(view->type);
    p.src = view->data;
    const int rope = rope_of[name];
    if (rope != 0) p.order.head_dim = hp.head_dim;
    choose_type(p, policy, model_shape(hp, has_output));
    plans.push_back(std::move(p));
    by_gguf.erase(it);
  }
  if (!by_gguf.empty()) {
    // Names that map but are beyond the config (e.g. model.layers.40 in a 30-layer config).
    const HfTensor& t = *by_gguf.begin()->second;
    return Error{dir.shard_path(t), "tensor " + t.info->name,
                 fmt::format("is beyond the {} layers of config.json num_hidden_layers", hp.n_layers)};
  }
  return plans;
}

Result<std::vector<TensorPlan>> plan_requantize(const GgufFile& g, const TypePolicy& policy, bool allow_requantize) {
  const ModelShape model = model_shape(g);
  std::vector<TensorPlan> plans;
  for (const GgufTensorInfo& t : g.tensors()) {
    TensorPlan p;
    p.name = t.name;
    p.source_name = t.name;
    p.dims = t.dims;
    p.src_type = t.type;
    p.src = t.data;
    choose_type(p, policy, model);
    if (!p.copy) {
      if (!dequantizable(t.type))
        return Error{g.name(), "tensor " + t.name,
                     fmt::format("type {} cannot be converted (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K..q6_K, iq4_nl, iq4_xs can)",
                                 ggml_type_name(t.type))};
      if (!high_precision(t.type) && !allow_requantize)
        return Error{g.name(), "tensor " + t.name,
                     fmt::format("is already {}; requantizing it to {} compounds the error",
                                 ggml_type_name(t.type), ggml_type_name(p.out_type)),
                     "allow_requantize"};
    }
    plans.push_back(std::move(p));
  }
  return plans;
}

Result<std::vector<TensorPlan>> plan_gguf_to_hf(const GgufFile& g, LlamaHparams& hp, GgmlType out_type,
                                                std::vector<std::string>& warnings) {
  std::set<std::string> used;
  if (const GgufTensorInfo* rf = g.find_tensor("rope_freqs.weight")) {
    if (rf->type != GgmlType::F32 || rf->n_elements != static_cast<uint64_t>(hp.head_dim / 2))
      return Error{g.name(), "tensor rope_freqs.weight", fmt::format("expected f32 [{}]", hp.head_dim / 2)};
    std::vector<float> f(rf->n_elements);
    std::memcpy(f.data(), rf->data.data(), rf->data.size());
    Status s = llama3_scaling_from_factors(hp, f, g.name());
    if (!s) return s.error();
    used.insert(rf->name);
  }
  std::vector<TensorPlan> plans;
  for (const std::string& name : llama_tensor_order(hp.n_layers, !hp.tie_embeddings)) {
    Result<const GgufTensorInfo*> t = g.get_tensor(name);
    if (!t) return t.error();
    const GgufTensorInfo& info = **t;
    const std::vector<uint64_t> want = *llama_tensor_shape(hp, name);
    if (reversed(info.dims) != want)
      return Error{g.name(), "tensor " + name,
                   fmt::format("shape {} does not match the metadata (expected {})", shape_str(info.dims),
                               shape_str(reversed(want)))};
    if (!dequantizable(info.type))
      return Error{g.name(), "tensor " + name,
                   fmt::format("type {} cannot be dequantized (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K..q6_K, iq4_nl, iq4_xs can)",
                               ggml_type_name(info.type))};
    TensorPlan p;
    p.name = *hf_name_for_gguf(name);
    p.source_name = name;
    p.dims = info.dims;
    p.src_type = info.type;
    p.out_type = out_type;
    p.src = info.data;
    if (name.ends_with("attn_q.weight") || name.ends_with("attn_k.weight")) p.order = {hp.head_dim, true};
    finish_plan(p);
    plans.push_back(std::move(p));
    used.insert(name);
  }
  for (const GgufTensorInfo& t : g.tensors())
    if (!used.count(t.name)) warnings.push_back(fmt::format("tensor {} has no place in a LlamaForCausalLM: skipped", t.name));
  return plans;
}

}  // namespace qe::convert
