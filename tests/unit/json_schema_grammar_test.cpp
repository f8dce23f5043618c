// JSON schema -> GBNF (model/json_schema_grammar.h): what llama.cpp's Python twin cannot be asked
// (a "$ref" at the root) and where this converter refuses what llama.cpp would loop on, drop or fetch.
// The grammar text itself is llama.cpp's converter's: tests/python/test_json_schema_grammar.py.
#include "model/json_schema_grammar.h"

#include <gtest/gtest.h>

#include <string>

namespace qe::model {
namespace {

using json = nlohmann::ordered_json;

std::string refused(const std::string& schema_text) {
  Result<std::string> g = json_schema_to_grammar(json::parse(schema_text));
  if (g.ok()) return "converted:\n" + *g;
  EXPECT_EQ(g.error().option, "json_schema");
  EXPECT_EQ(g.error().message().find('\n'), std::string::npos) << g.error().message();
  return g.error().message();
}

TEST(JsonSchemaGrammar, ARefAtTheRootResolves) {
  Result<std::string> g = json_schema_to_grammar(json::parse(R"({"$ref": "#/$defs/node", "$defs": {"node":
      {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#/$defs/node"},
                                                           {"type": "null"}]}}}}})"));
  ASSERT_TRUE(g.ok()) << g.error().message();
  EXPECT_NE(g->find("root ::= node\n"), std::string::npos) << *g;
  EXPECT_NE(g->find("next-0 ::= node\n"), std::string::npos) << *g;  // the recursion by name
  Result<std::shared_ptr<const Grammar>> parsed = parse_json_schema(json::parse(R"({"$ref": "#/definitions/a",
      "definitions": {"a": {"type": "array", "items": {"$ref": "#/definitions/a"}}}})"));
  EXPECT_TRUE(parsed.ok()) << parsed.error().message();
}

TEST(JsonSchemaGrammar, RefusesWhatItCannotDoWithOneLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"$ref": "https://example.com/s.json"})", "outside the schema (remote schemas are not fetched)"},
      {R"({"$ref": "#/$defs/missing", "$defs": {}})", "Error resolving ref #/$defs/missing"},
      {R"({"$ref": 5})", "'$ref' must be a string"},
      {R"({"type": "string", "pattern": "^ab]c$"})", "unbalanced ']'"},
      {R"({"type": "string", "pattern": "^a}$"})", "unbalanced '}'"},
      {R"({"type": "string", "pattern": "^(?=a)b$"})", "Unsupported pattern syntax '(?'"},
      {R"({"type": "string", "pattern": "^a)b$"})", "Unbalanced parentheses"},
      {R"({"type": "string", "pattern": "^[ab$"})", "Unbalanced square brackets"},
      {R"({"type": "string", "pattern": "^a{2$"})", "Unbalanced curly brackets"},
      {R"({"type": "string", "pattern": "^a{x}$"})", "Invalid number in curly brackets"},
      {R"({"type": "string", "pattern": "^a{99999999999}$"})", "out of range"},
      {R"({"type": "string", "pattern": "^*a$"})", "nothing to repeat"},
      {R"({"type": "string", "pattern": ""})", "Pattern must start with '^' and end with '$'"},
      {R"({"type": "string", "format": 7})", "'format' must be a string"},
      {R"({"type": "integer", "minimum": 1e12})", "out of the 32-bit range"},
      {R"({"type": "integer", "exclusiveMaximum": -2147483648})", "past the 32-bit range"},
      {R"({"type": "array", "items": {}, "minItems": "2"})", "'minItems' must be a number"},
      {R"({"anyOf": {"type": "string"}})", "must be an array"},
      {R"({"type": "nonsense"})", "Unrecognized schema"},
      {R"({"items": true, "type": "array"})", "Unrecognized schema: true"},
      {std::string(200, '[') + std::string(200, ']'), "nests deeper than 128 levels"},
  };
  for (const auto& [schema, want] : cases)
    EXPECT_NE(refused(schema).find(want), std::string::npos) << schema << " gave: " << refused(schema);
}

TEST(JsonSchemaGrammar, ARefChainDeeperThanTheBoundIsRefused) {
  json defs = json::object();
  for (int i = 0; i < 300; ++i)
    defs["d" + std::to_string(i)] = {{"$ref", "#/$defs/d" + std::to_string(i + 1)}};
  defs["d300"] = {{"type", "string"}};
  const json schema = {{"$ref", "#/$defs/d0"}, {"$defs", defs}};
  Result<std::string> g = json_schema_to_grammar(schema);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.error().message().find("nests deeper than 128"), std::string::npos) << g.error().message();
}

TEST(JsonSchemaGrammar, AGrammarItWritesThatDoesNotParseIsAnError) {
  // llama.cpp copies a pattern's \d into a literal, which its grammar parser then refuses too.
  Result<std::shared_ptr<const Grammar>> g =
      parse_json_schema(json::parse(R"({"type": "string", "pattern": "^\\d$"})"));
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.error().message().find("the grammar written for the schema does not parse"), std::string::npos);
}

}  // namespace
}  // namespace qe::model
