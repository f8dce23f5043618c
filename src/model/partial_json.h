// JSON cut short, read as llama.cpp reads a reply that stopped midway (common/json-partial.cpp): the open
// string, key, array and objects are closed around a marker string put where the text stops, so that
// what was written so far parses, and the marker says where the real text ended once it is written
// out again (the marker's place in a compact dump of the value, or in a string).
//
//   Result: {"a": [1, "xy   ->  {"a": [1, "xy<marker>"]}   (dump_marker "<marker>")
//           {"a": 1,        ->  {"a": 1, "<marker>": 1}     (dump_marker ",\"<marker>")
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace qe::model {

struct PartialJson {
  nlohmann::ordered_json value;
  // Where the text stopped in value.dump() ("" when the text was whole JSON): the marker, with the
  // characters the healing put before it (an opening quote, a comma).
  std::string dump_marker;
  // The bytes of the text that were read: all of it, or up to an error that is not a cut (text after
  // a whole value).
  size_t consumed = 0;
};

// The value of `text` (leading JSON, whitespace around it allowed), healed around `marker` (a string
// the text does not hold) where the text is cut; nullopt where llama.cpp cannot heal it either (a cut
// at the top level outside any array or object, or no JSON at all).
std::optional<PartialJson> parse_partial_json(std::string_view text, const std::string& marker);

}  // namespace qe::model
