// Pieces of the JSON schema converter (json_schema_grammar.cpp), written as llama.cpp's converter
// writes them: a repetition of an item, the digits of an integer range, a regex pattern as a rule.
// Internal to the model library.
#pragma once

#include <climits>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "model/json_schema_grammar.h"

namespace qe::model::schema {

inline constexpr int kNone = INT_MAX;   // no upper bound (a repetition's max, an integer's maximum)
inline constexpr int kNoMin = INT_MIN;  // no lower bound
// Nested schemas and pattern groups: the converter recurses on each.
inline constexpr int kMaxDepth = static_cast<int>(kMaxJsonDepth);

// Thrown when the conversion cannot go on: the first error, in llama.cpp's words where it has them.
struct Refused {
  std::string reason;
};

std::vector<std::string> split(const std::string& s, char sep);  // common's string_split: empty parts kept
std::string join(const std::vector<std::string>& parts, std::string_view sep);

// item repeated lo..hi times (hi kNone: no bound), with `separator` between: build_repetition.
std::string repetition(const std::string& item, int lo, int hi, const std::string& separator = "");

// The digits of an integer in [lo, hi] (kNoMin / kNone: unbounded): _build_min_max_int.
std::string int_range(int lo, int hi);

// Adds a rule (under a free name near `name`) and returns its name: the converter's _add_rule.
using AddRule = std::function<std::string(const std::string& name, const std::string& rule)>;
// A regex (^...$) as the rule for the JSON string it matches, added as `name`: _visit_pattern.
std::string pattern_rule(const std::string& pattern, const std::string& name, const AddRule& add_rule);

}  // namespace qe::model::schema
