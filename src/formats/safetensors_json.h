// JSON in and out of the safetensors world.
// In: a strict parser for the JSON files of a model (safetensors headers, model.safetensors.index.json,
// config.json) that reports duplicate keys (nlohmann silently keeps the last one; the safetensors spec
// forbids them) and never lets an exception escape.
// Out: the machine-readable description `qconvert --info --json` prints:
//   {"metadata": {...__metadata__..., "config": <config.json> (directories only)},
//    "tensors": [{"name", "type", "shape", "bytes", "offset", "file" (directories only),
//                 "xxh3" (with_hash only: XXH3-64 of the bytes, 16 lowercase hex digits)}]}
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>

#include "formats/error.h"
#include "formats/xxh3.h"

namespace qe {

class SafetensorsFile;
class HfModelDir;

// Parses `text` as one JSON value. Errors (syntax, invalid UTF-8, a key repeated in one object, nesting
// deeper than max_depth) name `file` and `what` (e.g. "header").
Result<nlohmann::json> parse_json_strict(std::string_view text, const std::string& file,
                                         const std::string& what, size_t max_depth = 256);
// Same, keeping object keys in the order of the text.
Result<nlohmann::ordered_json> parse_ordered_json_strict(std::string_view text, const std::string& file,
                                                         const std::string& what, size_t max_depth = 256);

nlohmann::json safetensors_to_json(const SafetensorsFile& file, bool with_hash);
nlohmann::json safetensors_to_json(const HfModelDir& dir, bool with_hash);

}  // namespace qe
