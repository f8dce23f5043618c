// libFuzzer target: JSON schema -> GBNF (model/json_schema_grammar.h) on arbitrary bytes read as JSON, the
// grammar it writes parsed in turn. A request's "json_schema" / response_format reaches this code.
// Seeds: tests/fuzz/corpus/json_schema (objects, arrays, refs, patterns, integer ranges, formats).
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "fuzz_common.h"
#include "model/json_schema_grammar.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto schema = nlohmann::ordered_json::parse(qe::fuzz::as_text(data, size), nullptr, false);
  if (schema.is_discarded()) return 0;
  qe::Result<std::shared_ptr<const qe::model::Grammar>> g = qe::model::parse_json_schema(schema);
  qe::fuzz::sink(g ? (*g)->n_rules() : g.error().message().size());
  return 0;
}
