// JSON Schema -> GBNF: llama.cpp's converter's rules, names and text (see the header), on nlohmann's
// ordered_json as llama.cpp's, so that dump() of a constant and the order of properties are its own.
#include "model/json_schema_grammar.h"

#include <fmt/format.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <vector>

#include "model/json_schema_parts.h"

namespace qe::model {
namespace {

using json = nlohmann::ordered_json;
using namespace schema;

// Bounds the whitespace a model may write between tokens (it would run on in it otherwise).
const char* const kSpaceRule = R"(| " " | "\n"{1,2} [ \t]{0,20})";

struct Builtin {
  std::string content;
  std::vector<std::string> deps;
};

const std::map<std::string, Builtin>& primitive_rules() {
  static const std::map<std::string, Builtin> rules = {
      {"boolean", {R"(("true" | "false") space)", {}}},
      {"decimal-part", {"[0-9]{1,16}", {}}},
      {"integral-part", {"[0] | [1-9] [0-9]{0,15}", {}}},
      {"number",
       {R"(("-"? integral-part) ("." decimal-part)? ([eE] [-+]? integral-part)? space)",
        {"integral-part", "decimal-part"}}},
      {"integer", {R"(("-"? integral-part) space)", {"integral-part"}}},
      {"value",
       {"object | array | string | number | boolean | null",
        {"object", "array", "string", "number", "boolean", "null"}}},
      {"object",
       {R"("{" space ( string ":" space value ("," space string ":" space value)* )? "}" space)",
        {"string", "value"}}},
      {"array", {R"("[" space ( value ("," space value)* )? "]" space)", {"value"}}},
      {"uuid",
       {R"("\"" [0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} )"
        R"("-" [0-9a-fA-F]{12} "\"" space)",
        {}}},
      {"char", {R"([^"\\\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" [0-9a-fA-F]{4}))", {}}},
      {"string", {R"("\"" char* "\"" space)", {"char"}}},
      {"null", {R"("null" space)", {}}},
  };
  return rules;
}

const std::map<std::string, Builtin>& string_format_rules() {
  static const std::map<std::string, Builtin> rules = {
      {"date", {R"([0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] ))", {}}},
      {"time",
       {R"(([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? )"
        R"(( "Z" | ( "+" | "-" ) ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ))",
        {}}},
      {"date-time", {R"(date "T" time)", {"date", "time"}}},
      {"date-string", {R"("\"" date "\"" space)", {"date"}}},
      {"time-string", {R"("\"" time "\"" space)", {"time"}}},
      {"date-time-string", {R"("\"" date-time "\"" space)", {"date-time"}}},
  };
  return rules;
}

bool reserved(const std::string& name) {
  return name == "root" || primitive_rules().count(name) || string_format_rules().count(name);
}

// A GBNF string literal: only \r, \n and " need escaping (llama.cpp's format_literal).
std::string format_literal(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '\r')
      out += "\\r";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"')
      out += "\\\"";
    else
      out += c;
  }
  return out + "\"";
}

// A rule name from anything: each run of characters other than letters, digits and '-' becomes one '-'.
std::string rule_name_of(std::string_view s) {
  std::string out;
  bool in_run = false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (ok)
      out += c;
    else if (!in_run)
      out += '-';
    in_run = !ok;
  }
  return out;
}

int int_of(const json& v, const char* key) {
  if (!v.is_number()) throw Refused{fmt::format("'{}' must be a number", key)};
  const double d = v.get<double>();
  if (!(d >= INT_MIN && d <= INT_MAX)) throw Refused{fmt::format("'{}' is out of the 32-bit range", key)};
  return v.get<int>();
}

class Converter {
 public:
  Converter() { rules_["space"] = kSpaceRule; }

  // Every "$ref" llama.cpp's converter resolves up front (it does not look beside a "$ref" nor into
  // what it names), checked as it checks them: a bad one is an error even where nothing uses it.
  void resolve_refs(const json& root) {
    root_ = &root;
    std::function<void(const json&)> walk = [&](const json& n) {
      if (n.is_array()) {
        for (const json& x : n) walk(x);
      } else if (n.is_object()) {
        const auto it = n.find("$ref");
        if (it == n.end()) {
          for (const auto& kv : n.items()) walk(kv.value());
          return;
        }
        if (!it->is_string()) throw Refused{"'$ref' must be a string"};
        target_of(it->get_ref<const std::string&>());
      }
    };
    walk(root);
  }

  std::string visit(const json& schema, const std::string& name) {
    if (++depth_ > kMaxDepth) throw Refused{fmt::format("the schema nests deeper than {} levels", kMaxDepth)};
    std::string r = visit_schema(schema, name);
    --depth_;
    return r;
  }

  std::string grammar() const {
    std::string out;
    for (const auto& [name, rule] : rules_) out += name + " ::= " + rule + "\n";
    return out;
  }

 private:
  std::map<std::string, std::string> rules_;  // by name, in byte order: the order they are written
  const json* root_ = nullptr;
  std::map<std::string, const json*> refs_;
  std::set<std::string> resolving_;
  int depth_ = 0;

  std::string add_rule(const std::string& name, const std::string& rule) {
    const std::string esc = rule_name_of(name);
    auto taken = [&](const std::string& key) {
      const auto it = rules_.find(key);
      return it != rules_.end() && it->second != rule;
    };
    std::string key = esc;
    for (int i = 0; taken(key); ++i) key = esc + std::to_string(i);
    rules_[key] = rule;
    return key;
  }

  std::string add_primitive(const std::string& name, const Builtin& rule) {
    const std::string n = add_rule(name, rule.content);
    for (const std::string& dep : rule.deps) {
      const auto p = primitive_rules().find(dep);
      const Builtin& d = p != primitive_rules().end() ? p->second : string_format_rules().at(dep);
      if (!rules_.count(dep)) add_primitive(dep, d);
    }
    return n;
  }

  std::string union_rule(const std::string& name, const std::vector<json>& alternatives) {
    std::vector<std::string> rules;
    for (size_t i = 0; i < alternatives.size(); ++i)
      rules.push_back(
          visit(alternatives[i], name + (name.empty() ? "alternative-" : "-") + std::to_string(i)));
    return join(rules, " | ");
  }

  // The part of the schema a "$ref" names (kept as a pointer: the schema does not change meanwhile).
  // Found when first asked for: a "$ref" inside what another names is resolved too, where llama.cpp
  // would take an unresolved one for {} (any object).
  const json& target_of(const std::string& ref) {
    if (const auto it = refs_.find(ref); it != refs_.end()) return *it->second;
    if (ref.rfind("https://", 0) == 0)
      throw Refused{fmt::format("$ref {} is outside the schema (remote schemas are not fetched)", ref)};
    if (ref.rfind("#/", 0) != 0) throw Refused{"Unsupported ref: " + ref};
    const json* target = root_;
    const std::vector<std::string> parts = split(ref.substr(ref.find('#') + 1), '/');
    for (size_t i = 1; i < parts.size(); ++i) {
      if (target->is_null() || !target->contains(parts[i]))
        throw Refused{"Error resolving ref " + ref + ": " + parts[i] + " not in the schema"};
      target = &(*target)[parts[i]];
    }
    refs_[ref] = target;
    return *target;
  }

  std::string resolve_ref(const std::string& ref) {
    std::string ref_name = ref.substr(ref.find_last_of('/') + 1);
    if (!rules_.count(ref_name) && !resolving_.count(ref)) {
      resolving_.insert(ref);
      ref_name = visit(target_of(ref), ref_name);
      resolving_.erase(ref);
    }
    return ref_name;
  }

  // A string that is none of `strings`: a trie of their bytes, each level saying which byte comes next
  // or any other (llama.cpp's _not_strings).
  std::string not_strings(const std::vector<std::string>& strings) {
    struct Node {
      std::map<char, Node> children;  // by char, as llama.cpp's std::map<char, TrieNode>
      bool end = false;
    };
    Node trie;
    for (const std::string& s : strings) {
      Node* n = &trie;
      for (char c : s) n = &n->children[c];
      n->end = true;
    }
    const std::string char_rule = add_primitive("char", primitive_rules().at("char"));
    std::string out = "[\"] ( ";
    std::function<void(const Node&)> walk = [&](const Node& node) {
      std::string rejects;
      bool first = true;
      for (const auto& [c, child] : node.children) {
        rejects += c;
        if (!first) out += " | ";
        first = false;
        ((out += "[") += c) += "]";
        if (!child.children.empty()) {
          out += " (";
          walk(child);
          out += ")";
        } else if (child.end) {
          out += " " + char_rule + "+";
        }
      }
      if (!node.children.empty()) {
        if (!first) out += " | ";
        out += "[^\"" + rejects + "] " + char_rule + "*";
      }
    };
    walk(trie);
    out += " )";
    if (!trie.end) out += "?";
    return out + " [\"] space";
  }

  std::string object_rule(const std::vector<std::pair<std::string, json>>& properties,
                          const std::set<std::string>& required, const std::string& name,
                          const json& additional) {
    std::vector<std::string> required_props, optional_props, names;
    std::map<std::string, std::string> kv_rules;
    const std::string prefix = name + (name.empty() ? "" : "-");
    for (const auto& [prop, prop_schema] : properties) {
      const std::string value_rule = visit(prop_schema, prefix + prop);
      kv_rules[prop] = add_rule(fmt::format("{}{}-kv", prefix, prop),
                                format_literal(json(prop).dump()) + " space \":\" space " + value_rule);
      (required.count(prop) ? required_props : optional_props).push_back(prop);
      names.push_back(prop);
    }
    if ((additional.is_boolean() && additional.get<bool>()) || additional.is_object()) {
      const std::string sub = prefix + "additional";
      const std::string value_rule = additional.is_object()
                                         ? visit(additional, fmt::format("{}-value", sub))
                                         : add_primitive("value", primitive_rules().at("value"));
      const std::string key_rule = names.empty() ? add_primitive("string", primitive_rules().at("string"))
                                                 : add_rule(fmt::format("{}-k", sub), not_strings(names));
      kv_rules["*"] = add_rule(fmt::format("{}-kv", sub), key_rule + " \":\" space " + value_rule);
      optional_props.push_back("*");
    }
    std::string rule = "\"{\" space ";
    for (size_t i = 0; i < required_props.size(); ++i) {
      if (i) rule += " \",\" space ";
      rule += kv_rules[required_props[i]];
    }
    if (!optional_props.empty()) {
      rule += " (";
      if (!required_props.empty()) rule += " \",\" space ( ";
      // The optional properties from `from` on, in order, each at most once ("*": any number of others).
      std::function<std::string(size_t, bool)> rest = [&](size_t from, bool first_optional) {
        const std::string& k = optional_props[from];
        const std::string& kv = kv_rules[k];
        const std::string comma = "( \",\" space " + kv + " )";
        std::string res =
            first_optional ? comma + (k == "*" ? "*" : "?") : kv + (k == "*" ? " " + comma + "*" : "");
        if (from + 1 < optional_props.size())
          res += " " + add_rule(fmt::format("{}{}-rest", prefix, k), rest(from + 1, true));
        return res;
      };
      for (size_t i = 0; i < optional_props.size(); ++i) {
        if (i) rule += " | ";
        rule += rest(i, false);
      }
      if (!required_props.empty()) rule += " )";
      rule += " )?";
    }
    return rule + " \"}\" space";
  }

  std::string visit_schema(const json& schema, const std::string& name);
};

std::string Converter::visit_schema(const json& schema, const std::string& name) {
  const bool object = schema.is_object();
  auto has = [&](const char* key) { return object && schema.contains(key); };
  const json type = has("type") ? schema["type"] : json();
  std::string format;
  if (has("format")) {
    if (!schema["format"].is_string()) throw Refused{"'format' must be a string"};
    format = schema["format"].get<std::string>();
  }
  const std::string rule_name = reserved(name) ? name + "-" : name.empty() ? "root" : name;
  const bool maybe_object = type.is_null() || type == "object";
  const bool maybe_string = type.is_null() || type == "string";

  if (has("$ref")) {
    if (!schema["$ref"].is_string()) throw Refused{"'$ref' must be a string"};
    return add_rule(rule_name, resolve_ref(schema["$ref"].get<std::string>()));
  }
  if (has("oneOf") || has("anyOf")) {
    const json& alts = has("oneOf") ? schema["oneOf"] : schema["anyOf"];
    if (!alts.is_array()) throw Refused{"'oneOf' / 'anyOf' must be an array"};
    return add_rule(rule_name, union_rule(name, alts.get<std::vector<json>>()));
  }
  if (type.is_array()) {
    std::vector<json> alts;
    for (const json& t : type) {
      json copy = schema;
      copy["type"] = t;
      alts.push_back(std::move(copy));
    }
    return add_rule(rule_name, union_rule(name, alts));
  }
  if (has("const")) return add_rule(rule_name, format_literal(schema["const"].dump()) + " space");
  if (has("enum")) {
    std::vector<std::string> values;
    for (const json& v : schema["enum"]) values.push_back(format_literal(v.dump()));
    return add_rule(rule_name, "(" + join(values, " | ") + ") space");
  }
  if (maybe_object &&
      (has("properties") || (has("additionalProperties") && schema["additionalProperties"] != true))) {
    std::set<std::string> required;
    if (has("required") && schema["required"].is_array())
      for (const json& r : schema["required"])
        if (r.is_string()) required.insert(r.get<std::string>());
    std::vector<std::pair<std::string, json>> properties;
    if (has("properties"))
      for (const auto& p : schema["properties"].items()) properties.emplace_back(p.key(), p.value());
    return add_rule(rule_name,
                    object_rule(properties, required, name,
                                has("additionalProperties") ? schema["additionalProperties"] : json()));
  }
  if (maybe_object && has("allOf")) {
    std::set<std::string> required;
    std::vector<std::pair<std::string, json>> properties;
    std::function<void(const json&, bool, int)> add = [&](const json& part, bool is_required, int hops) {
      if (!part.is_object()) return;
      if (part.contains("$ref") && part["$ref"].is_string()) {
        if (hops < kMaxDepth) add(target_of(part["$ref"].get<std::string>()), is_required, hops + 1);
      } else if (part.contains("properties")) {
        for (const auto& p : part["properties"].items()) {
          properties.emplace_back(p.key(), p.value());
          if (is_required) required.insert(p.key());
        }
      }
    };
    for (const json& t : schema["allOf"]) {
      if (t.is_object() && t.contains("anyOf")) {
        for (const json& tt : t["anyOf"]) add(tt, false, 0);
      } else {
        add(t, true, 0);
      }
    }
    return add_rule(rule_name, object_rule(properties, required, name, json()));
  }
  if ((type.is_null() || type == "array") && (has("items") || has("prefixItems"))) {
    const json& items = has("items") ? schema["items"] : schema["prefixItems"];
    const std::string prefix = name + (name.empty() ? "" : "-");
    if (items.is_array()) {
      std::string rule = "\"[\" space ";
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) rule += " \",\" space ";
        rule += visit(items[i], prefix + "tuple-" + std::to_string(i));
      }
      return add_rule(rule_name, rule + " \"]\" space");
    }
    const std::string item_rule = visit(items, prefix + "item");
    const int lo = has("minItems") ? int_of(schema["minItems"], "minItems") : 0;
    const int hi = has("maxItems") && schema["maxItems"].is_number_integer()
                       ? int_of(schema["maxItems"], "maxItems")
                       : kNone;
    return add_rule(rule_name,
                    "\"[\" space " + repetition(item_rule, lo, hi, "\",\" space") + " \"]\" space");
  }
  if (maybe_string && has("pattern")) {
    if (!schema["pattern"].is_string()) throw Refused{"'pattern' must be a string"};
    return pattern_rule(schema["pattern"].get<std::string>(), rule_name,
                        [this](const std::string& n, const std::string& r) { return add_rule(n, r); });
  }
  if (maybe_string && std::regex_match(format, std::regex("^uuid[1-5]?$")))
    return add_primitive(rule_name == "root" ? "root" : format, primitive_rules().at("uuid"));
  if (const std::string prim = fmt::format("{}-string", format);
      maybe_string && string_format_rules().count(prim)) {
    return add_rule(rule_name, add_primitive(prim, string_format_rules().at(prim)));
  }
  if (type == "string" && (has("minLength") || has("maxLength"))) {
    const std::string char_rule = add_primitive("char", primitive_rules().at("char"));
    const int lo = has("minLength") ? int_of(schema["minLength"], "minLength") : 0;
    const int hi = has("maxLength") ? int_of(schema["maxLength"], "maxLength") : kNone;
    return add_rule(rule_name, "\"\\\"\" " + repetition(char_rule, lo, hi) + " \"\\\"\" space");
  }
  if (type == "integer" &&
      (has("minimum") || has("exclusiveMinimum") || has("maximum") || has("exclusiveMaximum"))) {
    // In 64 bits first: an exclusive bound at the edge of the range must not wrap.
    int64_t lo = kNoMin, hi = kNone;
    if (has("minimum"))
      lo = int_of(schema["minimum"], "minimum");
    else if (has("exclusiveMinimum"))
      lo = int64_t{int_of(schema["exclusiveMinimum"], "exclusiveMinimum")} + 1;
    if (has("maximum"))
      hi = int_of(schema["maximum"], "maximum");
    else if (has("exclusiveMaximum"))
      hi = int64_t{int_of(schema["exclusiveMaximum"], "exclusiveMaximum")} - 1;
    if (lo > INT_MAX || hi < INT_MIN) throw Refused{"an exclusive bound past the 32-bit range"};
    return add_rule(rule_name, "(" + int_range(static_cast<int>(lo), static_cast<int>(hi)) + ") space");
  }
  if (schema.empty() || type == "object")
    return add_rule(rule_name, add_primitive("object", primitive_rules().at("object")));
  if (!type.is_string() || !primitive_rules().count(type.get<std::string>()))
    throw Refused{"Unrecognized schema: " + schema.dump()};
  const std::string t = type.get<std::string>();
  return add_primitive(rule_name == "root" ? "root" : t, primitive_rules().at(t));
}

}  // namespace

size_t json_depth(const nlohmann::ordered_json& root, size_t limit) {
  size_t deepest = 0;
  std::vector<std::pair<const json*, size_t>> todo{{&root, 1}};
  while (!todo.empty()) {
    const auto [n, d] = todo.back();
    todo.pop_back();
    deepest = std::max(deepest, d);
    if (d > limit) break;
    if (n->is_structured())
      for (const json& child : *n) todo.push_back({&child, d + 1});
  }
  return deepest;
}

Result<std::string> json_schema_to_grammar(const nlohmann::ordered_json& schema) {
  if (json_depth(schema, kMaxJsonDepth) > kMaxJsonDepth)
    return Error{
        "", "",
        fmt::format("JSON schema conversion failed: the schema nests deeper than {} levels", kMaxJsonDepth),
        "json_schema"};
  try {
    Converter c;
    c.resolve_refs(schema);
    c.visit(schema, "");
    return c.grammar();
  } catch (const Refused& r) {
    return Error{"", "", "JSON schema conversion failed: " + r.reason, "json_schema"};
  } catch (const nlohmann::json::exception& e) {
    return Error{"", "", fmt::format("JSON schema conversion failed: {}", e.what()), "json_schema"};
  }
}

Result<std::shared_ptr<const Grammar>> parse_json_schema(const nlohmann::ordered_json& schema) {
  Result<std::string> text = json_schema_to_grammar(schema);
  if (!text) return text.error();
  Result<std::shared_ptr<const Grammar>> g = Grammar::parse(*text);
  if (!g)
    return Error{"", "",
                 fmt::format("the grammar written for the schema does not parse: {}: {}", g.error().field,
                             g.error().reason),
                 "json_schema"};
  return g;
}

}  // namespace qe::model
