// The JSON schema converter's regex, integer-range and repetition pieces (json_schema_parts.h), as
// llama.cpp's common/json-schema-to-grammar.cpp writes them.
#include "model/json_schema_parts.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <map>

namespace qe::model::schema {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t end = s.find(sep); end != std::string::npos; end = s.find(sep, start)) {
    parts.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  parts.push_back(s.substr(start));
  return parts;
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

std::string repetition(const std::string& item, int lo, int hi, const std::string& separator) {
  const bool has_max = hi != kNone;
  if (hi == 0) return "";
  if (lo == 0 && hi == 1) return item + "?";
  if (separator.empty()) {
    if (lo == 1 && !has_max) return item + "+";
    if (lo == 0 && !has_max) return item + "*";
    return item + "{" + std::to_string(lo) + "," + (has_max ? std::to_string(hi) : "") + "}";
  }
  std::string out =
      item + " " +
      repetition("(" + separator + " " + item + ")", lo == 0 ? 0 : lo - 1, has_max ? hi - 1 : hi);
  return lo == 0 ? "(" + out + ")?" : out;
}

// std::stoi's reading: leading blanks, a sign, digits, anything after ignored; no digits or out of
// range: an error.
int stoi_like(const std::string& s, const char* what) {
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (end == s.c_str()) throw Refused{fmt::format("Invalid number in {}", what)};
  if (errno == ERANGE || v < INT_MIN || v > INT_MAX)
    throw Refused{fmt::format("a number out of range in {}", what)};
  return static_cast<int>(v);
}

// Digits of an integer in [lo, hi] (kNoMin / kNone: unbounded), llama.cpp's _build_min_max_int.
class IntRange {
 public:
  explicit IntRange(std::string& out) : out_(out) {}

  void build(int lo, int hi, int decimals_left = 16, bool top_level = true) {
    const bool has_min = lo != kNoMin, has_max = hi != kNone;
    if (has_min && has_max) {
      if (lo < 0 && hi < 0) {
        out_ += "\"-\" (";
        build(-hi, -lo, decimals_left, true);
        out_ += ")";
        return;
      }
      if (lo < 0) {
        out_ += "\"-\" (";
        build(0, -lo, decimals_left, true);
        out_ += ") | ";
        lo = 0;
      }
      std::string lo_s = std::to_string(lo);
      const std::string hi_s = std::to_string(hi);
      for (size_t digits = lo_s.size(); digits < hi_s.size(); ++digits) {
        uniform_range(lo_s, std::string(digits, '9'));
        lo_s.assign(digits + 1, '0');  // 10...0
        lo_s[0] = '1';
        out_ += " | ";
      }
      uniform_range(lo_s, hi_s);
      return;
    }
    const int less_decimals = std::max(decimals_left - 1, 1);
    if (has_min) {
      if (lo < 0) {
        out_ += "\"-\" (";
        build(kNoMin, -lo, decimals_left, false);
        out_ += ") | [0] | [1-9] ";
        more_digits(0, decimals_left - 1);
      } else if (lo == 0) {
        if (top_level) {
          out_ += "[0] | [1-9] ";
          more_digits(0, less_decimals);
        } else {
          more_digits(1, decimals_left);
        }
      } else if (lo <= 9) {
        const char c = static_cast<char>('0' + lo);
        const char start = top_level ? '1' : '0';
        if (c > start) {
          digit_range(start, static_cast<char>(c - 1));
          out_ += " ";
          more_digits(1, less_decimals);
          out_ += " | ";
        }
        digit_range(c, '9');
        out_ += " ";
        more_digits(0, less_decimals);
      } else {
        const std::string lo_s = std::to_string(lo);
        const auto len = static_cast<int>(lo_s.size());
        const char c = lo_s[0];
        if (c > '1') {
          digit_range(top_level ? '1' : '0', static_cast<char>(c - 1));
          out_ += " ";
          more_digits(len, less_decimals);
          out_ += " | ";
        }
        digit_range(c, c);
        out_ += " (";
        build(std::stoi(lo_s.substr(1)), kNone, less_decimals, false);
        out_ += ")";
        if (c < '9') {
          out_ += " | ";
          digit_range(static_cast<char>(c + 1), '9');
          out_ += " ";
          more_digits(len - 1, less_decimals);
        }
      }
      return;
    }
    if (has_max) {
      if (hi >= 0) {
        if (top_level) {
          out_ += "\"-\" [1-9] ";
          more_digits(0, less_decimals);
          out_ += " | ";
        }
        build(0, hi, decimals_left, true);
      } else {
        out_ += "\"-\" (";
        build(-hi, kNone, decimals_left, false);
        out_ += ")";
      }
      return;
    }
    throw Refused{"At least one of min_value or max_value must be set"};
  }

 private:
  std::string& out_;

  void digit_range(char from, char to) {
    out_ += "[";
    out_ += from;
    if (from != to) (out_ += "-") += to;
    out_ += "]";
  }
  void more_digits(int lo, int hi) {
    out_ += "[0-9]";
    if (lo == hi && lo == 1) return;
    out_ += '{';
    out_ += std::to_string(lo);
    if (hi != lo) {
      out_ += ",";
      if (hi != kNone) out_ += std::to_string(hi);
    }
    out_ += "}";
  }
  void uniform_range(std::string_view from, std::string_view to) {
    size_t i = 0;
    while (i < from.size() && i < to.size() && from[i] == to[i]) ++i;
    if (i > 0) out_ += fmt::format("\"{}\"", from.substr(0, i));
    if (i >= from.size() || i >= to.size()) return;
    if (i > 0) out_ += " ";
    const size_t sub_len = from.size() - i - 1;
    if (sub_len == 0) {
      out_ += fmt::format("[{}-{}]", from[i], to[i]);
      return;
    }
    const std::string_view from_sub = from.substr(i + 1), to_sub = to.substr(i + 1);
    const std::string zeros(sub_len, '0'), nines(sub_len, '9');
    bool to_reached = false;
    out_ += "(";
    if (from_sub == zeros) {
      digit_range(from[i], static_cast<char>(to[i] - 1));
      out_ += " ";
      more_digits(static_cast<int>(sub_len), static_cast<int>(sub_len));
    } else {
      out_ += fmt::format("[{}] (", from[i]);
      uniform_range(from_sub, nines);
      out_ += ")";
      if (from[i] < to[i] - 1) {
        out_ += " | ";
        if (to_sub == nines) {
          digit_range(static_cast<char>(from[i] + 1), to[i]);
          to_reached = true;
        } else {
          digit_range(static_cast<char>(from[i] + 1), static_cast<char>(to[i] - 1));
        }
        out_ += " ";
        more_digits(static_cast<int>(sub_len), static_cast<int>(sub_len));
      }
    }
    if (!to_reached) {
      out_ += " | ";
      digit_range(to[i], to[i]);
      out_ += " ";
      uniform_range(zeros, to_sub);
    }
    out_ += ")";
  }
};

std::string int_range(int lo, int hi) {
  std::string out;
  IntRange(out).build(lo, hi);
  return out;
}

// A regex (^...$) as a grammar for the JSON string it matches, llama.cpp's _visit_pattern: literals,
// '.', classes, groups, '|', * + ? and {m,n}; lookarounds and the like are not understood.
std::string pattern_rule(const std::string& pattern, const std::string& name, const AddRule& add_rule) {
  if (pattern.size() < 2 || pattern.front() != '^' || pattern.back() != '$')
    throw Refused{"Pattern must start with '^' and end with '$'"};
  const std::string sub = pattern.substr(1, pattern.size() - 2);
  static const std::string kNonLiteral = "|.()[]{}*+?";
  static const std::string kEscapedInRegexOnly = "^$.[]()|{}*+?";
  std::map<std::string, std::string> sub_rule_ids;
  size_t i = 0;
  const size_t n = sub.size();
  using Part = std::pair<std::string, bool>;  // text, and whether it is a literal's content
  auto to_rule = [](const Part& p) { return p.second ? "\"" + p.first + "\"" : p.first; };
  int nesting = 0;

  std::function<Part()> transform = [&]() -> Part {
    if (++nesting > kMaxDepth)
      throw Refused{fmt::format("the pattern nests deeper than {} groups", kMaxDepth)};
    const size_t start = i;
    std::vector<Part> seq;
    // The sequence with consecutive literals merged.
    auto joined = [&]() -> Part {
      std::vector<std::string> out;
      std::string literal;
      for (const Part& p : seq) {
        if (p.second) {
          literal += p.first;
          continue;
        }
        if (!literal.empty()) out.push_back(to_rule({literal, true}));
        literal.clear();
        out.push_back(p.first);
      }
      if (!literal.empty()) out.push_back(to_rule({literal, true}));
      --nesting;
      return {join(out, " "), false};
    };
    while (i < n) {
      const char c = sub[i];
      if (c == '.') {
        seq.emplace_back(add_rule("dot", "[^\\x0A\\x0D]"), false);
        ++i;
      } else if (c == '(') {
        ++i;
        // (?...) is not understood: llama.cpp warns and reads on; the result is not that regex.
        if (i < n && sub[i] == '?') throw Refused{"Unsupported pattern syntax '(?' in " + pattern};
        seq.emplace_back(fmt::format("({})", to_rule(transform())), false);
      } else if (c == ')') {
        ++i;
        // At the top, llama.cpp would drop the rest of the pattern.
        if (start == 0) throw Refused{"Unbalanced parentheses"};
        return joined();
      } else if (c == '[') {
        std::string cls(1, c);
        ++i;
        while (i < n && sub[i] != ']') {
          if (sub[i] == '\\') {
            cls += sub.substr(i, 2);
            i += 2;
          } else {
            cls += sub[i++];
          }
        }
        if (i >= n) throw Refused{"Unbalanced square brackets"};
        cls += ']';
        ++i;
        seq.emplace_back(cls, false);
      } else if (c == '|') {
        seq.emplace_back("|", false);
        ++i;
      } else if (c == '*' || c == '+' || c == '?') {
        if (seq.empty()) throw Refused{"nothing to repeat in pattern " + pattern};
        seq.back() = {to_rule(seq.back()) + c, false};
        ++i;
      } else if (c == '{') {
        std::string curly(1, c);
        ++i;
        while (i < n && sub[i] != '}') curly += sub[i++];
        if (i >= n) throw Refused{"Unbalanced curly brackets"};
        curly += '}';
        ++i;
        const std::vector<std::string> nums = split(curly.substr(1, curly.size() - 2), ',');
        int lo = 0, hi = kNone;
        if (nums.size() == 1) {
          lo = hi = stoi_like(nums[0], "curly brackets");
        } else if (nums.size() != 2) {
          throw Refused{"Wrong number of values in curly brackets"};
        } else {
          if (!nums[0].empty()) lo = stoi_like(nums[0], "curly brackets");
          if (!nums[1].empty()) hi = stoi_like(nums[1], "curly brackets");
        }
        if (seq.empty()) throw Refused{"nothing to repeat in pattern " + pattern};
        auto& [text, literal] = seq.back();
        if (!literal) {
          std::string& id = sub_rule_ids[text];
          if (id.empty()) id = add_rule(name + "-" + std::to_string(sub_rule_ids.size()), text);
          text = id;
        }
        text = repetition(literal ? "\"" + text + "\"" : text, lo, hi);
        literal = false;
      } else {
        std::string literal;
        auto non_literal = [&](char x) { return kNonLiteral.find(x) != std::string::npos; };
        while (i < n) {
          if (sub[i] == '\\' && i < n - 1) {
            if (kEscapedInRegexOnly.find(sub[i + 1]) != std::string::npos) {
              literal += sub[i + 1];
            } else {
              literal += sub.substr(i, 2);
            }
            i += 2;
          } else if (sub[i] == '"') {
            literal += "\\\"";
            ++i;
          } else if (!non_literal(sub[i]) &&
                     (i == n - 1 || literal.empty() || sub[i + 1] == '.' || !non_literal(sub[i + 1]))) {
            literal += sub[i++];
          } else {
            break;
          }
        }
        // Only a stray ']' or '}' leaves nothing read here (llama.cpp would loop on it for ever).
        if (literal.empty()) throw Refused{fmt::format("unbalanced '{}' in pattern {}", sub[i], pattern)};
        seq.emplace_back(literal, true);
      }
    }
    return joined();
  };
  return add_rule(name, "\"\\\"\" (" + to_rule(transform()) + ") \"\\\"\" space");
}

}  // namespace qe::model::schema
