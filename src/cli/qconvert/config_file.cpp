#include "cli/qconvert/config_file.h"

#include <fmt/core.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <set>
#include <string_view>
#include <vector>

namespace qe::cli {
namespace {

// Flags that choose what qconvert does this time rather than how it converts.
constexpr std::string_view kCommandLineOnly[] = {"config", "help", "version", "info", "json", "hash"};

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "'" + n.Scalar() + "'";
  }
}

bool is_integer(const std::string& s, bool is_unsigned) {
  const char* end = s.data() + s.size();
  std::from_chars_result r;
  if (is_unsigned) {
    uint64_t v = 0;
    r = std::from_chars(s.data(), end, v);
  } else {
    int64_t v = 0;
    r = std::from_chars(s.data(), end, v);
  }
  return !s.empty() && r.ec == std::errc() && r.ptr == end;
}

// The command-line strings for one option's value, or the reason the value does not fit the option.
Result<std::vector<std::string>> option_values(const CLI::Option& opt, const YAML::Node& v,
                                               const std::string& path, const std::string& key) {
  auto wrong = [&](std::string_view expected) {
    return Error{path, key, fmt::format("expected {}, got {}", expected, describe(v))};
  };
  if (opt.get_expected_max() == 0) {  // a flag: true sets it, false leaves it unset
    bool b = false;
    if (!v.IsScalar() || !YAML::convert<bool>::decode(v, b)) return wrong("true or false");
    return b ? std::vector<std::string>{"true"} : std::vector<std::string>{};
  }
  const std::string type = opt.get_type_name();
  const bool is_int = type.starts_with("INT") || type.starts_with("UINT");
  auto scalar = [&](const YAML::Node& n) -> Result<std::string> {
    if (!n.IsScalar()) return wrong(is_int ? "an integer" : "a value");
    if (is_int && !is_integer(n.Scalar(), type.starts_with("UINT")))
      return Error{
          path, key,
          fmt::format("expected {}, got {}",
                      type.starts_with("UINT") ? "a non-negative integer" : "an integer", describe(n))};
    return n.Scalar();
  };
  std::vector<std::string> out;
  if (v.IsSequence()) {
    if (opt.get_expected_max() <= 1) return wrong(is_int ? "one integer" : "one value");
    for (const YAML::Node& e : v) {
      Result<std::string> s = scalar(e);
      if (!s) return s.error();
      out.push_back(std::move(*s));
    }
    return out;
  }
  if (v.IsNull()) return wrong(is_int ? "an integer" : "a value");
  Result<std::string> s = scalar(v);
  if (!s) return s.error();
  out.push_back(std::move(*s));
  return out;
}

// CLI11's messages start with the option's name ("--awq-grid: Value 0 ..."); the key already says it.
std::string without_option_name(const std::string& what, const CLI::Option& opt) {
  const std::string prefix = opt.get_name() + ": ";
  return what.starts_with(prefix) ? what.substr(prefix.size()) : what;
}

}  // namespace

Status apply_config_file(CLI::App& app, const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return Error{path, "", "cannot open the config file"};
  } catch (const YAML::Exception& e) {
    const std::string where =
        e.mark.is_null() ? "" : fmt::format("line {}, column {}", e.mark.line + 1, e.mark.column + 1);
    return Error{path, where, "not valid YAML: " + e.msg};
  }
  if (root.IsNull()) return {};  // an empty file sets nothing
  if (!root.IsMap())
    return Error{path, "", "must be a YAML mapping of flag names to values (e.g. `type: q4_0`)"};

  std::set<std::string> seen;
  for (const auto& kv : root) {
    if (!kv.first.IsScalar())
      return Error{path, fmt::format("line {}", kv.first.Mark().line + 1), "a key must be a flag name"};
    const std::string key = kv.first.Scalar();
    if (!seen.insert(key).second) return Error{path, key, "given twice"};
    for (std::string_view only : kCommandLineOnly)
      if (key == only)
        return Error{path, key,
                     fmt::format("cannot be set in a config file (give --{} on the command line)", key)};
    CLI::Option* opt = nullptr;
    if (!key.empty() && key[0] != '-') opt = app.get_option_no_throw(key == "input" ? key : "--" + key);
    if (opt == nullptr)
      return Error{
          path, key,
          "unknown key (keys are qconvert's long flag names without dashes, e.g. type, awq-samples)"};
    Result<std::vector<std::string>> values = option_values(*opt, kv.second, path, key);
    if (!values) return values.error();
    if (opt->count() > 0 || values->empty()) continue;  // the command line wins; `flag: false` sets nothing
    try {
      opt->add_result(*values);
      opt->run_callback();
    } catch (const CLI::Error& e) {
      return Error{path, key, without_option_name(e.what(), *opt)};
    }
  }
  return {};
}

}  // namespace qe::cli
