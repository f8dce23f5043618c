// llama.cpp's --override-kv KEY=TYPE:VALUE (common.cpp's string_parse_kv_override): TYPE is int, float,
// bool or str. llama.cpp keeps keys and string values in char[128] fields, so each is at most 127 bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "formats/error.h"
#include "formats/gguf_reader.h"

namespace qe::cli {

struct KvOverride {
  std::string key;
  std::variant<int64_t, double, bool, std::string> value;  // int, float, bool, str
};

// One spec; the error names it. Stricter than llama.cpp, which reads a bad number as 0 (atol, atof):
// a number must be the whole value.
Result<KvOverride> parse_kv_override(std::string_view spec);

// The key and value as llama-quantize writes an override into its output (llama-quant.cpp): int as u32
// of the absolute value (llama.cpp PR 14182; a magnitude past u32 is an error here, where llama-quantize
// truncates it), float as f32, bool, str.
Result<GgufKv> quantize_kv(const KvOverride& o);

}  // namespace qe::cli
