// JSON Schema -> GBNF grammar, as llama.cpp's json_schema_to_grammar (common/json-schema-to-grammar.cpp),
// which llama-server's "json_schema" / response_format and llama-cli's -j use: the same rules under the
// same names, written the same way, so a schema constrains generation to what it does in llama.cpp
// (tests/python/test_json_schema_grammar.py compares the text with llama.cpp's converter).
//
// What it takes (llama.cpp's subset): type (one or a list), const, enum, anyOf / oneOf, allOf of objects,
// properties / required / additionalProperties, items / prefixItems / minItems / maxItems, minLength /
// maxLength, pattern (^...$, a regex subset), format (date, time, date-time, uuid), integer minimum /
// maximum (exclusive too), and $ref to "#/..." in the schema itself. Whitespace between tokens is
// bounded (one or two newlines and up to 20 blanks), so a model cannot run on in spaces.
// Refused with an Error (option "json_schema"): a $ref outside the schema (llama-server would fetch
// https:// ones; this library fetches nothing), and everything llama.cpp refuses. Where llama.cpp's
// converter would go wrong quietly it does not: a "$ref" inside what another names is resolved (llama.cpp
// takes it for any object), and a pattern with "(?", a stray ']' or '}', or a ')' that closes nothing
// is refused (llama.cpp reads on, loops for ever, or drops the rest); schemas nest at most 128 deep.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "formats/error.h"
#include "model/grammar.h"

namespace qe::model {

// Schemas nest at most this deep (and what the server writes out of a request's JSON: tool parameters,
// a past call's arguments).
inline constexpr size_t kMaxJsonDepth = 128;
// How deep a JSON value nests, counted without recursion (a hostile value may nest 100k levels: a
// recursive walk, or nlohmann's dump(), would overflow the stack); the count stops past `limit`.
size_t json_depth(const nlohmann::ordered_json& value, size_t limit);

// The schema in its own key order (properties are written in that order): nlohmann::ordered_json.
Result<std::string> json_schema_to_grammar(const nlohmann::ordered_json& schema);

// The schema's grammar, converted and parsed. Error (option "json_schema"): the conversion's, or the
// parser's on the grammar written (a pattern's \d, say, which llama.cpp's grammar parser refuses too).
Result<std::shared_ptr<const Grammar>> parse_json_schema(const nlohmann::ordered_json& schema);

}  // namespace qe::model
