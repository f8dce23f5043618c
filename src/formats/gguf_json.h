// A GGUF file as JSON, for `qconvert --info --json [--hash]` and the interop tests:
//   {"metadata": {key: value}, "metadata_types": {key: "uint32" | "array[string]" | ...},
//    "tensors": [{"name", "type" (ggml name, "q4_0"), "shape" (innermost first, as on disk),
//                 "bytes", "offset" (absolute in the file), "xxh3" (with_hash only)}]}
// Values are exact: 64-bit integers as JSON integers, float32 widened to double (exact), bool as bool.
// Non-finite floats have no JSON form (nlohmann writes null), and strings are bytes, so dump with
// nlohmann::json::error_handler_t::replace if the file may hold invalid UTF-8.
#pragma once

#include <nlohmann/json.hpp>

#include "formats/gguf_reader.h"
#include "formats/gguf_value.h"

namespace qe {

nlohmann::json gguf_value_to_json(const GgufValue& value);
// with_hash adds each tensor's "xxh3" (xxh3_hex from formats/xxh3.h).
nlohmann::json gguf_to_json(const GgufFile& file, bool with_hash);

}  // namespace qe
