// qconvert's type policy: which ggml type each output tensor gets, following llama.cpp's
// llama-quantize (llama_tensor_get_type in src/llama-quant.cpp) so that our files hold the same tensor
// types as its files for the same source and file type:
//   - 1-D tensors (norms, rope_freqs) stay f32: ggml's norm and rope kernels read f32, and llama.cpp's
//     quantize skips every tensor with fewer than 2 dims.
//   - TypePolicy::output_type / token_embd_type (llama-quantize's --output-tensor-type and
//     --token-embedding-type): those two tensors' types, over everything below.
//   - TypePolicy::overrides (REGEX=TYPE, llama-quantize's --tensor-type): the last match wins.
//   - TypePolicy::pure: the target type everywhere else.
//   - otherwise, for a quantized file type, llama-quantize's rules: the output projection (output.weight,
//     or token_embd.weight when the embeddings are tied) gets q6_K (q8_0 for a q8_0 file); the k-quant
//     mixes give attn_v, ffn_down and attn_output more bits in chosen layers (file_type_rule in types.cpp).
//   - a row length that is not a multiple of the chosen type's block falls back as llama.cpp does: q2_K,
//     q3_K, iq4_xs -> iq4_nl; q4_K -> q5_0; q5_K -> q5_1; q6_K -> q8_0; then f16 if still not a multiple
//     (llama.cpp refuses the other types there; we write f16).
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

// The tensor types qconvert writes (case-insensitive ggml names: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1
// q2_K q3_K q4_K q5_K q6_K iq4_nl iq4_xs); nullopt otherwise. For --tensor-type overrides.
std::optional<GgmlType> parse_output_type(std::string_view name);
std::string_view output_type_names();

// llama.cpp's file types (LLAMA_FTYPE_*, general.file_type) that qconvert writes: a base tensor type
// and, for the quantized ones, llama-quantize's per-tensor rules.
struct FileType {
  std::string_view name;  // llama-quantize's name: "Q4_K_M", "Q8_0", "F16"
  uint32_t id;            // the LLAMA_FTYPE_* value
  GgmlType base;          // the type of every tensor no rule changes
};
// llama-quantize's names, case-insensitive: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M
// Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL IQ4_XS, and its aliases Q3_K, Q4_K, Q5_K (the _M
// mixes); nullopt otherwise.
std::optional<FileType> parse_file_type(std::string_view name);
std::optional<FileType> file_type_by_id(uint32_t id);
// The name of llama.cpp's enum value without its prefix: "MOSTLY_Q4_1", "ALL_F32" (LLAMA_FTYPE_*).
std::string ftype_enum_name(const FileType& f);
// The plain file type whose base is `type` (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q6_K, IQ4_NL,
// IQ4_XS; the k-quants other than q6_K have only mixes: Q2_K, Q3_K_M, Q4_K_M, Q5_K_M).
FileType file_type_of(GgmlType type);
std::string_view file_type_names();  // for messages

// llama.cpp's LLAMA_FTYPE_* value for general.file_type of a plain target (file_type_of(target).id).
uint32_t llama_file_type(GgmlType target);

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
  GgmlType target = GgmlType::F16;  // the file type's base
  bool pure = false;
  std::vector<TensorTypeOverride> overrides;
  // The llama-quantize file type whose rules apply and whose id general.file_type gets; unset: the
  // plain file type of target.
  std::optional<FileType> file_type = std::nullopt;
  // An imatrix is given: llama-quantize then spares q4_0 / q5_0 files' first ffn_down layers (q4_1 /
  // q5_1) and the iq4 files' (q5_K without one).
  bool has_imatrix = false;
  // llama-quantize's --output-tensor-type / --token-embedding-type: the type of output.weight /
  // token_embd.weight over every rule and override (llama-quantize sets them last). With tied embeddings
  // token_embd.weight is the output projection and takes the output type, unless a token type is given
  // or the policy is pure (llama-quantize's rules then do not run).
  std::optional<GgmlType> output_type = std::nullopt, token_embd_type = std::nullopt;
  // --leave-output-tensor: output.weight keeps its source type (TensorPlan decides: it knows the source).
  bool leave_output = false;

  FileType effective_file_type() const { return file_type ? *file_type : file_type_of(target); }
};

// What llama-quantize's rules read from the model besides the tensor itself.
struct ModelShape {
  bool has_output = true;  // false: tied embeddings, token_embd.weight is the output projection
  int64_t n_layers = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
};

struct TypeChoice {
  GgmlType type;
  std::string reason;  // a rule's (1-D, output, fallback); empty for the target type or an override
  bool fallback = false;  // the preferred type could not hold this tensor's rows
  std::optional<size_t> override_index = {};  // the TypePolicy::overrides entry that chose the type
};

// `dims` innermost first (GGUF order).
TypeChoice choose_tensor_type(const TypePolicy& policy, std::string_view name, std::span<const uint64_t> dims,
                              const ModelShape& model);

bool is_quantized(GgmlType type);  // block types (q4_0, q6_K, ...), not f32/f16/bf16

}  // namespace qe::convert
