// json_schema_tool: our JSON schema -> GBNF conversion, for tests/python/test_json_schema_grammar.py.
// Reads a JSON schema on stdin and writes the grammar to stdout (exit 0), or the error to stderr (exit 1).
// Also parses the grammar it wrote (exit 3 when that fails: the converter wrote a grammar the engine
// cannot read).
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "model/grammar.h"
#include "model/json_schema_grammar.h"

int main() {
  const std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  const nlohmann::ordered_json schema = nlohmann::ordered_json::parse(input, nullptr, false);
  if (schema.is_discarded()) {
    std::fprintf(stderr, "json_schema_tool: bad JSON on stdin\n");
    return 2;
  }
  qe::Result<std::string> g = qe::model::json_schema_to_grammar(schema);
  if (!g) {
    std::fprintf(stderr, "%s\n", g.error().message().c_str());
    return 1;
  }
  std::fwrite(g->data(), 1, g->size(), stdout);
  qe::Result<std::shared_ptr<const qe::model::Grammar>> parsed = qe::model::Grammar::parse(*g);
  if (!parsed) {
    std::fprintf(stderr, "the grammar does not parse: %s\n", parsed.error().message().c_str());
    return 3;
  }
  return 0;
}
