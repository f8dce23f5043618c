// The tensor plan of a conversion: for every output tensor, where its bytes come from (a zero-copy span
// of the memory-mapped input, or values computed here such as llama3's rope_freqs), the output name,
// shape and type with the reason for that type, and the row reordering. Plans are checked whole before
// a byte is written, so a bad input fails without leaving anything behind.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "formats/error.h"
#include "formats/ggml_type.h"
#include "formats/gguf_reader.h"
#include "formats/hf_model_dir.h"
#include "convert/llama_config.h"
#include "convert/rows.h"
#include "convert/types.h"

namespace qe::convert {

struct TensorPlan {
  std::string name;                 // output name
  std::string source_name;          // name in the input; empty for computed tensors
  std::vector<uint64_t> dims;       // output dims, innermost first (GGUF order)
  GgmlType src_type = GgmlType::F32;
  GgmlType out_type = GgmlType::F32;
  std::span<const std::byte> src;   // source bytes inside the input's mapping
  std::vector<float> computed;      // the values of a computed tensor (src is empty then)
  RowOrder order;                   // q/k RoPE row permutation (identity for other tensors)
  bool copy = false;                // same type, same order: the bytes are copied unchanged
  std::string reason;               // why out_type, when a rule (not the target type or an override) chose it
  bool fallback = false;            // out_type is a fallback for rows the preferred type cannot hold
  std::optional<size_t> override_index;  // the TypePolicy::overrides entry that chose out_type
  // One importance weight per column (the imatrix row), owned by the run; q4_0 / q4_1 outputs are then
  // rounded with ggml's importance-weighted quantizers. Empty: plain rounding. Other types ignore it.
  std::span<const float> importance;
  // The output bytes, already made (ConvertJob::prequantized), owned by the job: written as they are.
  std::span<const std::byte> prequantized;

  uint64_t n_elements() const;
  uint64_t src_bytes() const;
  uint64_t out_bytes() const;
};

// What llama-quantize's per-tensor rules read from the model (convert/types.h).
ModelShape model_shape(const LlamaHparams& hp, bool has_output);
ModelShape model_shape(const GgufFile& gguf);

// HF directory -> llama GGUF tensors: names mapped, q/k permuted, types from the policy. Every tensor the
// config implies must be present with its shape; tensors we do not know are an Error, except
// rotary_emb.inv_freq (recomputed by every runtime; llama.cpp's converter drops it too).
Result<std::vector<TensorPlan>> plan_hf_to_gguf(const HfModelDir& dir, const LlamaHparams& hp,
                                                const TypePolicy& policy);

// GGUF -> GGUF with new types. A source type that is already quantized below 8 bits (q4_0, q4_1, q6_K, ...)
// may only be converted to another type with allow_requantize (llama-quantize's --allow-requantize):
// its error would compound. The same type is a byte copy.
Result<std::vector<TensorPlan>> plan_requantize(const GgufFile& gguf, const TypePolicy& policy, bool allow_requantize);

// llama GGUF -> HF tensors (HF names, permutation undone, every tensor dequantized to out_type, which is
// f32, f16 or bf16). rope_freqs.weight becomes config (hp.rope_scaling); other unknown tensors are
// skipped with a warning.
Result<std::vector<TensorPlan>> plan_gguf_to_hf(const GgufFile& gguf, LlamaHparams& hp, GgmlType out_type,
                                                std::vector<std::string>& warnings);

}  // namespace qe::convert
