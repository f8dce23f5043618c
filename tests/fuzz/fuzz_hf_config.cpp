// libFuzzer target: a Hugging Face config.json as qconvert reads it: the strict JSON parser the model
// directory uses (parse_json_strict: duplicate keys, depth, UTF-8) and hparams_from_hf_config. What it
// accepts must survive the rest of the converter's uses: the GGUF keys, the tensor shapes and names,
// llama3 RoPE factors, and config.json written back (hf_config_json), which must read back to the same
// hyperparameters. Seeds: tests/fuzz/corpus/hf_config (SmolLM2's config.json, Llama 3, Mistral, ...).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "convert/llama_config.h"
#include "formats/safetensors_json.h"
#include "fuzz_common.h"

namespace {

using qe::convert::LlamaHparams;

bool same(const LlamaHparams& a, const LlamaHparams& b) {
  // head_dim_explicit is not compared: hf_config_json always writes head_dim.
  return a.architecture == b.architecture && a.hidden_size == b.hidden_size && a.n_layers == b.n_layers &&
         a.n_heads == b.n_heads && a.n_kv_heads == b.n_kv_heads && a.head_dim == b.head_dim &&
         a.n_ff == b.n_ff && a.n_ctx == b.n_ctx && a.vocab_size == b.vocab_size && a.rms_eps == b.rms_eps &&
         a.rope_theta == b.rope_theta && a.tie_embeddings == b.tie_embeddings &&
         a.rope_scaling == b.rope_scaling && a.rope_factor == b.rope_factor &&
         a.rope_low_freq_factor == b.rope_low_freq_factor &&
         a.rope_high_freq_factor == b.rope_high_freq_factor && a.rope_original_ctx == b.rope_original_ctx &&
         a.bos_token_id == b.bos_token_id && a.eos_token_id == b.eos_token_id;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qe::Result<nlohmann::json> cfg = qe::parse_json_strict(qe::fuzz::as_text(data, size), "config.json", "");
  if (!cfg) {
    qe::fuzz::sink(cfg.error().message().size());
    return 0;
  }
  qe::Result<LlamaHparams> hp = qe::convert::hparams_from_hf_config(*cfg, "config.json");
  if (!hp) {
    qe::fuzz::sink(hp.error().message().size());
    return 0;
  }
  uint64_t sum = qe::convert::llama_gguf_kvs(*hp).size();
  if (hp->rope_scaling == "llama3") {
    const std::vector<float> factors = qe::convert::llama3_rope_factors(*hp);
    QE_CHECK(factors.size() == static_cast<size_t>(hp->head_dim / 2));
    LlamaHparams recovered = *hp;
    sum += qe::convert::llama3_scaling_from_factors(recovered, factors, "config.json").ok();
  }
  // Every tensor of the first layers (a 4096-layer config would make this the whole run).
  const int64_t layers = std::min<int64_t>(hp->n_layers, 2);
  for (const std::string& name : qe::convert::llama_tensor_order(layers, !hp->tie_embeddings)) {
    QE_CHECK(qe::convert::llama_tensor_shape(*hp, name).has_value());
    const std::optional<std::string> hf = qe::convert::hf_name_for_gguf(name);
    QE_CHECK(hf.has_value() && qe::convert::gguf_name_for_hf(*hf)->gguf == name);
    sum += qe::convert::llama_layer_of(name) + 1;
  }
  for (const char* dtype : {"float32", "bfloat16"}) {
    const std::string text = qe::convert::hf_config_json(*hp, dtype).dump();
    qe::Result<nlohmann::json> again = qe::parse_json_strict(text, "written config.json", "");
    QE_CHECK(again.ok());
    qe::Result<LlamaHparams> hp2 = qe::convert::hparams_from_hf_config(*again, "written config.json");
    if (!hp2) {
      std::fprintf(stderr, "fuzz_hf_config: %s\n", hp2.error().message().c_str());
      QE_CHECK(hp2.ok());
    }
    QE_CHECK(same(*hp, *hp2));
  }
  qe::fuzz::sink(sum);
  return 0;
}
