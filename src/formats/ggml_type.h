// ggml tensor types as they appear in GGUF files: ids, block geometry, names. Values are ggml's and
// must never change (they are on disk).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace qe {

enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3,
  // 4 (Q4_2) and 5 (Q4_3) were removed from ggml.
  Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  // 31..33 (Q4_0_4_4, Q4_0_4_8, Q4_0_8_8) and 36..38 (IQ4_NL_4_x) were removed from ggml.
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40, Q1_0 = 41,
};

inline constexpr uint32_t kGgmlTypeCount = 42;  // one past the highest id

struct GgmlTypeInfo {
  std::string_view name;  // ggml's name, lower case ("q4_0", "f16", "bf16")
  uint32_t block_size;    // elements per block (1 for plain types)
  uint32_t type_size;     // bytes per block
};

// Info for a type id read from a file; nullopt for ids that never existed or were removed.
std::optional<GgmlTypeInfo> ggml_type_info(uint32_t id);
// Same for a known enum value (always present).
GgmlTypeInfo ggml_type_info(GgmlType type);
std::string_view ggml_type_name(GgmlType type);
// "q4_0" / "Q4_0" -> GgmlType; nullopt when unknown.
std::optional<GgmlType> ggml_type_from_name(std::string_view name);

// Bytes for n elements (n must be a multiple of the block size; checked by callers that read files).
uint64_t ggml_row_bytes(GgmlType type, uint64_t n);

}  // namespace qe
