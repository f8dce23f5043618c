// GBNF text -> Grammar: llama.cpp's grammar syntax, parsed into the same rule elements its parser
// builds (repetitions rewritten into helper rules), so that matching gives the same verdicts.
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <string>

#include "model/grammar.h"
#include "tokenizer/utf8.h"

namespace qe::model {
namespace {

using Rule = std::vector<GrammarElement>;

// Where a parse failed: an offset into the text and why.
struct Failure {
  size_t at;
  std::string reason;
};

constexpr int kMaxNesting = 256;  // parentheses within parentheses: the parser recurses on each

bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

class Parser {
 public:
  explicit Parser(std::string_view src) : s_(src) {}

  std::shared_ptr<const Grammar> parse() {
    skip_space(true);
    while (!at_end()) parse_rule();
    for (const auto& [name, id] : ids_)
      if (rules_[id].empty()) throw Failure{first_use_.at(id), fmt::format("rule '{}' is not defined", name)};
    const auto root = ids_.find("root");
    if (root == ids_.end()) throw Failure{s_.size(), "there is no 'root' rule (the start symbol)"};
    check_left_recursion();
    return std::make_shared<const Grammar>(std::move(rules_), root->second);
  }

 private:
  std::string_view s_;
  size_t p_ = 0;
  std::map<std::string, uint32_t, std::less<>> ids_;  // rule names, written and generated
  std::vector<Rule> rules_;                           // by id; empty until defined
  std::map<uint32_t, size_t> first_use_;              // where each rule was first named
  size_t n_elements_ = 0;
  int nesting_ = 0;

  bool at_end() const { return p_ >= s_.size(); }
  char peek(size_t ahead = 0) const { return p_ + ahead < s_.size() ? s_[p_ + ahead] : '\0'; }
  [[noreturn]] void fail(std::string reason) const { throw Failure{p_, std::move(reason)}; }

  // Spaces, tabs and '#' comments; newlines too where a rule may go on (inside parentheses, after
  // '::=' and '|').
  void skip_space(bool newline_ok) {
    while (!at_end()) {
      const char c = peek();
      if (c == '#') {
        while (!at_end() && peek() != '\r' && peek() != '\n') ++p_;
      } else if (c == ' ' || c == '\t' || (newline_ok && (c == '\r' || c == '\n'))) {
        ++p_;
      } else {
        break;
      }
    }
  }

  uint32_t symbol(std::string_view name, size_t at) {
    const auto it = ids_.find(name);
    if (it != ids_.end()) return it->second;
    const auto id = static_cast<uint32_t>(rules_.size());
    ids_.emplace(std::string(name), id);
    rules_.emplace_back();
    first_use_.emplace(id, at);
    return id;
  }
  // A helper rule for a group or a repetition, named after the rule it serves (llama.cpp's
  // generate_symbol_id).
  uint32_t helper(const std::string& base) { return symbol(fmt::format("{}_{}", base, rules_.size()), p_); }

  void add_rule(uint32_t id, Rule rule) {
    n_elements_ += rule.size();
    if (n_elements_ > kMaxGrammarElements)
      fail(fmt::format("the grammar grows past {} elements once its repetitions are written out",
                       kMaxGrammarElements));
    rules_[id] = std::move(rule);  // a rule written twice keeps its last definition, as in llama.cpp
  }

  std::string_view name() {
    const size_t start = p_;
    while (!at_end() && is_word_char(peek())) ++p_;
    if (p_ == start) fail("expected a rule name (letters, digits, '-')");
    return s_.substr(start, p_ - start);
  }

  void parse_rule() {
    const size_t at = p_;
    const std::string_view n = name();
    const uint32_t id = symbol(n, at);
    skip_space(false);
    if (s_.substr(p_, 3) != "::=") fail("expected '::=' after the rule name");
    p_ += 3;
    skip_space(true);
    parse_alternates(std::string(n), id, false);
    if (peek() == '\r') {
      p_ += peek(1) == '\n' ? 2 : 1;
    } else if (peek() == '\n') {
      ++p_;
    } else if (!at_end()) {
      fail(fmt::format("unexpected '{}': expected the end of the rule (a newline)",
                       printable(s_.substr(p_, 1))));
    }
    skip_space(true);
  }

  void parse_alternates(const std::string& rule_name, uint32_t id, bool nested) {
    Rule rule;
    parse_sequence(rule_name, rule, nested);
    while (peek() == '|') {
      rule.push_back({GrammarOp::alt, 0});
      ++p_;
      skip_space(true);
      parse_sequence(rule_name, rule, nested);
    }
    rule.push_back({GrammarOp::end, 0});
    add_rule(id, std::move(rule));
  }

  uint32_t hex(int digits) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      const char c = peek();
      int d = -1;
      if (c >= '0' && c <= '9') d = c - '0';
      if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      if (d < 0) fail(fmt::format("expected {} hex digits", digits));
      v = v << 4 | static_cast<uint32_t>(d);
      ++p_;
    }
    return v;
  }

  // One character of a literal or a class: an escape or one UTF-8 code point.
  uint32_t character() {
    if (at_end()) fail("unexpected end of the grammar");
    if (peek() == '\\') {
      const char e = peek(1);
      p_ += 2;
      switch (e) {
        case 'x':
          return hex(2);
        case 'u':
          return hex(4);
        case 'U':
          return hex(8);
        case 't':
          return '\t';
        case 'r':
          return '\r';
        case 'n':
          return '\n';
        case '\\':
        case '"':
        case '[':
        case ']':
          return static_cast<uint8_t>(e);
        default:
          p_ -= 2;
          fail("unknown escape (\\x \\u \\U \\t \\r \\n \\\\ \\\" \\[ \\] are known)");
      }
    }
    const int len = tokenizer::utf8_valid_len(s_.substr(p_, 4));
    if (len == 0) fail("not valid UTF-8");
    const auto lead = static_cast<uint8_t>(peek());
    uint32_t cp = len == 1 ? lead : lead & (0x7Fu >> len);
    for (int i = 1; i < len; ++i) cp = cp << 6 | (static_cast<uint8_t>(peek(static_cast<size_t>(i))) & 0x3Fu);
    p_ += static_cast<size_t>(len);
    return cp;
  }

  void parse_sequence(const std::string& rule_name, Rule& rule, bool nested) {
    size_t last_start = rule.size();
    while (!at_end()) {
      const char c = peek();
      if (c == '"') {
        ++p_;
        last_start = rule.size();
        while (peek() != '"') {
          if (at_end()) fail("unterminated string literal");
          rule.push_back({GrammarOp::chr, character()});
        }
        ++p_;
        skip_space(nested);
      } else if (c == '[') {
        ++p_;
        GrammarOp first = GrammarOp::chr;
        if (peek() == '^') {
          ++p_;
          first = GrammarOp::chr_not;
        }
        last_start = rule.size();
        if (peek() == ']') fail("empty character class");
        while (peek() != ']') {
          if (at_end()) fail("unterminated character class");
          const uint32_t lo = character();
          rule.push_back({last_start < rule.size() ? GrammarOp::chr_alt : first, lo});
          if (peek() == '-' && peek(1) != ']') {
            ++p_;
            if (at_end()) fail("unterminated character class");
            rule.push_back({GrammarOp::chr_range, character()});
          }
        }
        ++p_;
        skip_space(nested);
      } else if (is_word_char(c)) {
        const size_t at = p_;
        const uint32_t id = symbol(name(), at);
        skip_space(nested);
        last_start = rule.size();
        rule.push_back({GrammarOp::rule_ref, id});
      } else if (c == '(') {
        if (++nesting_ > kMaxNesting) fail(fmt::format("parentheses nested deeper than {}", kMaxNesting));
        ++p_;
        skip_space(true);
        const uint32_t sub = helper(rule_name);
        parse_alternates(rule_name, sub, true);
        --nesting_;
        last_start = rule.size();
        rule.push_back({GrammarOp::rule_ref, sub});
        if (peek() != ')') fail("expected ')'");
        ++p_;
        skip_space(nested);
      } else if (c == '.') {
        last_start = rule.size();
        rule.push_back({GrammarOp::chr_any, 0});
        ++p_;
        skip_space(nested);
      } else if (c == '*' || c == '+' || c == '?') {
        ++p_;
        skip_space(nested);
        repeat(rule_name, rule, last_start, c == '+' ? 1 : 0, c == '?' ? 1 : -1);
      } else if (c == '{') {
        ++p_;
        skip_space(nested);
        const int lo = count();
        skip_space(nested);
        int hi = -1;
        if (peek() == '}') {
          hi = lo;
        } else if (peek() == ',') {
          ++p_;
          skip_space(nested);
          if (is_digit(peek())) {
            hi = count();
            skip_space(nested);
          }
          if (peek() != '}') fail("expected '}'");
          if (hi >= 0 && hi < lo) fail(fmt::format("{{{},{}}}: the most is fewer than the least", lo, hi));
        } else {
          fail("expected ',' or '}'");
        }
        ++p_;
        skip_space(nested);
        repeat(rule_name, rule, last_start, lo, hi);
      } else {
        break;
      }
    }
  }

  int count() {
    if (!is_digit(peek())) fail("expected a number");
    long v = 0;
    while (is_digit(peek())) {
      v = v * 10 + (peek() - '0');
      if (v > kMaxGrammarRepetitions)
        fail(fmt::format("a repetition count above {}", kMaxGrammarRepetitions));
      ++p_;
    }
    return static_cast<int>(v);
  }

  // The item at rule[last_start..] repeated lo..hi times (hi -1: no bound), as llama.cpp rewrites it:
  //   S{m,n} -> S (m times) S'(n-m), S'(x) ::= S S'(x-1) |, S'(1) ::= S |
  //   S{m,}  -> S (m times) S',      S'    ::= S S' |
  void repeat(const std::string& rule_name, Rule& rule, size_t last_start, int lo, int hi) {
    if (last_start == rule.size()) fail("nothing before the repetition operator to repeat");
    const Rule item(rule.begin() + static_cast<std::ptrdiff_t>(last_start), rule.end());
    // Counted before anything is written: the copies of a long item could take gigabytes.
    const size_t copies = lo == 0 ? 0 : static_cast<size_t>(lo) - 1;
    if (n_elements_ + rule.size() + copies * item.size() > kMaxGrammarElements)
      fail(fmt::format("the grammar grows past {} elements once its repetitions are written out",
                       kMaxGrammarElements));
    if (lo == 0) {
      rule.resize(last_start);
    } else {
      for (size_t i = 0; i < copies; ++i) rule.insert(rule.end(), item.begin(), item.end());
    }
    const int n_opt = hi < 0 ? 1 : hi - lo;
    uint32_t last = 0;
    for (int i = 0; i < n_opt; ++i) {
      Rule rec = item;
      const uint32_t id = helper(rule_name);
      if (i > 0 || hi < 0) rec.push_back({GrammarOp::rule_ref, hi < 0 ? id : last});
      rec.push_back({GrammarOp::alt, 0});
      rec.push_back({GrammarOp::end, 0});
      add_rule(id, std::move(rec));
      last = id;
    }
    if (n_opt > 0) rule.push_back({GrammarOp::rule_ref, last});
  }

  // Refuses a rule that can reach itself before reading a character: the matcher's expansion of it
  // would never end. "Before a character" counts every rule that can match the empty text, however
  // deep (llama.cpp's check sees only an alternative written empty).
  void check_left_recursion() const {
    const size_t n = rules_.size();
    std::vector<bool> nullable(n, false);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < n; ++r) {
        if (nullable[r]) continue;
        bool all_nullable = true;  // the current alternative so far
        for (const GrammarElement& e : rules_[r]) {
          if (e.op == GrammarOp::end || e.op == GrammarOp::alt) {
            if (all_nullable) {
              nullable[r] = changed = true;
              break;
            }
            all_nullable = true;
          } else if (e.op != GrammarOp::rule_ref || !nullable[e.value]) {
            all_nullable = false;
          }
        }
      }
    }
    // Edges: the rules each rule can start with (after rules that may be empty).
    std::vector<std::vector<uint32_t>> first(n);
    for (size_t r = 0; r < n; ++r) {
      bool open = true;
      for (const GrammarElement& e : rules_[r]) {
        if (e.op == GrammarOp::end || e.op == GrammarOp::alt) {
          open = true;
        } else if (open && e.op == GrammarOp::rule_ref) {
          first[r].push_back(e.value);
          open = nullable[e.value];
        } else {
          open = false;
        }
      }
    }
    // Iterative depth-first search for a cycle (a deep grammar must not overflow the stack).
    std::vector<uint8_t> state(n, 0);  // 0 new, 1 on the path, 2 done
    std::vector<std::pair<uint32_t, size_t>> path;
    for (uint32_t start = 0; start < n; ++start) {
      if (state[start]) continue;
      path.push_back({start, 0});
      state[start] = 1;
      while (!path.empty()) {
        auto& [r, next] = path.back();
        if (next == first[r].size()) {
          state[r] = 2;
          path.pop_back();
          continue;
        }
        const uint32_t to = first[r][next++];
        if (state[to] == 1) {
          const auto name =
              std::find_if(ids_.begin(), ids_.end(), [&](const auto& kv) { return kv.second == to; });
          throw Failure{first_use_.at(to),
                        fmt::format("rule '{}' is left-recursive (it can reach itself before "
                                    "any character), which this grammar engine does not take",
                                    name->first)};
        }
        if (state[to] == 0) {
          state[to] = 1;
          path.push_back({to, 0});
        }
      }
    }
  }
};

}  // namespace

Result<std::shared_ptr<const Grammar>> Grammar::parse(std::string_view text) {
  if (text.find('\0') != std::string_view::npos)
    return Error{"", fmt::format("offset {}", text.find('\0')), "the grammar holds a NUL byte", "grammar"};
  Parser parser(text);
  try {
    return parser.parse();
  } catch (const Failure& f) {
    const size_t at = std::min(f.at, text.size());
    const std::string_view before = text.substr(0, at);
    const size_t line = static_cast<size_t>(std::count(before.begin(), before.end(), '\n')) + 1;
    const size_t line_start = before.rfind('\n') == std::string_view::npos ? 0 : before.rfind('\n') + 1;
    return Error{"", fmt::format("line {}, column {}", line, at - line_start + 1), f.reason, "grammar"};
  }
}

}  // namespace qe::model
