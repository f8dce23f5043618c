// qconvert's type policy: which ggml type each output tensor gets, following llama.cpp's
// llama-quantize (llama_tensor_get_type in src/llama-quant.cpp) so our files look like its files:
//   - 1-D tensors (norms, rope_freqs) stay f32: ggml's norm and rope kernels read f32, and llama.cpp's
//     quantize skips every tensor with fewer than 2 dims.
//   - TypePolicy::overrides (REGEX=TYPE, llama-quantize's --tensor-type): first match wins.
//   - TypePolicy::pure: the target type everywhere else.
//   - otherwise, for a quantized target, the output projection (output.weight, or token_embd.weight when
//     the embeddings are tied and it doubles as the output) gets llama.cpp's choice: q6_K for q4_0/q4_1,
//     q8_0 kept for q8_0. We do not write q6_K, so q8_0 stands in for it (more bits, never fewer).
//   - a row length that is not a multiple of the type's block falls back to f16, as llama.cpp does for
//     types without a smaller-block sibling.
#pragma once

#include <cstdint>
#include <optional>
#include <regex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/error.h"
#include "formats/ggml_type.h"

namespace qe::convert {

// The types qconvert writes: f32 f16 bf16 q8_0 q4_0 q4_1 (case-insensitive); nullopt otherwise.
std::optional<GgmlType> parse_output_type(std::string_view name);
// "f32, f16, bf16, q8_0, q4_0, q4_1", for messages.
std::string_view output_type_names();

// llama.cpp's LLAMA_FTYPE_* value for general.file_type (ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_Q4_0 = 2,
// MOSTLY_Q4_1 = 3, MOSTLY_Q8_0 = 7, MOSTLY_BF16 = 32).
uint32_t llama_file_type(GgmlType target);
// The type a file_type value says the file mostly holds; nullopt for values we do not write.
std::optional<GgmlType> type_of_llama_file_type(uint32_t ftype);

struct TensorTypeOverride {
  std::string pattern;  // as given, for the log and the report
  std::regex regex;     // ECMAScript, matched against the whole output name (std::regex_search)
  GgmlType type;
};

// "REGEX=TYPE" (the last '=' splits, so a pattern may hold '='). Errors carry option "tensor_type".
Result<TensorTypeOverride> parse_tensor_type_override(std::string_view spec);
// "REGEX=type" as an override reads once parsed (the type's lower-case name), for logs and reports.
std::string tensor_type_override_spec(const TensorTypeOverride& o);

struct TypePolicy {
  GgmlType target = GgmlType::F16;
  bool pure = false;
  std::vector<TensorTypeOverride> overrides;
};

struct TypeChoice {
  GgmlType type;
  std::string reason;  // a rule's (1-D, output, fallback); empty for the target type or an override
  bool fallback = false;  // the preferred type could not hold this tensor's rows
  std::optional<size_t> override_index = {};  // the TypePolicy::overrides entry that chose the type
};

// `dims` innermost first (GGUF order). `model_has_output` is false for tied embeddings.
TypeChoice choose_tensor_type(const TypePolicy& policy, std::string_view name, std::span<const uint64_t> dims,
                              bool model_has_output);

bool is_quantized(GgmlType type);  // block types (q4_0, q6_K, ...), not f32/f16/bf16

}  // namespace qe::convert
