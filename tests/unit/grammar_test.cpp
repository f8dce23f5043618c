// GBNF grammars (model/grammar.h): the parser's errors, the language the matcher accepts against
// std::regex on every short string, the token checks (mask = allows, pieces cut inside a UTF-8
// character, end-of-generation), the bounds on hostile grammars, and the sampler's use of them. That
// the verdicts are llama.cpp's own is tests/python/test_llamacpp_parity.py's (test_llamacpp_grammar).
#include "model/grammar.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <initializer_list>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "model/sampler.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab.h"

namespace qe::model {
namespace {

// A byte-level BPE vocabulary: ids 0..255 are the bytes, then a few multi-byte tokens and an
// end-of-generation token.
tokenizer::Vocab byte_vocab() {
  tokenizer::Vocab v = tokenizer::default_vocab(tokenizer::VocabModel::kBpe, "gpt2");
  for (int b = 0; b < 256; ++b) v.tokens.push_back(tokenizer::gpt2_byte_to_utf8(static_cast<uint8_t>(b)));
  return v;
}

// v's tokenizer: `eos` its only end-of-generation token, every token normal but `control`.
std::shared_ptr<const tokenizer::Tokenizer> tokenizer_of(tokenizer::Vocab v, int32_t eos,
                                                         std::initializer_list<int32_t> control = {}) {
  v.eos = eos;
  tokenizer::resolve_special_tokens(v);
  v.types.resize(v.tokens.size(), tokenizer::TokenType::kNormal);
  for (const int32_t id : control) v.types[static_cast<size_t>(id)] = tokenizer::TokenType::kControl;
  Result<tokenizer::Tokenizer> t = tokenizer::Tokenizer::create(std::move(v));
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message());
  return std::make_shared<const tokenizer::Tokenizer>(std::move(t).value());
}

constexpr int32_t kAb = 256, kEAcute = 257, kEmptyIsh = 258, kImEnd = 259, kXyz = 260, kLong = 261;
std::shared_ptr<const tokenizer::Tokenizer> byte_tokenizer() {
  tokenizer::Vocab v = byte_vocab();
  v.tokens.push_back("ab");
  v.tokens.push_back(tokenizer::gpt2_byte_to_utf8(0xC3) + tokenizer::gpt2_byte_to_utf8(0xA9));  // é
  v.tokens.push_back("<pad>");  // a control token: its piece is its text to the grammar
  v.tokens.push_back("<|im_end|>");
  v.tokens.push_back("xyz");
  v.tokens.push_back(std::string(3000, 'a'));  // past kMaxTokenCodePoints
  return tokenizer_of(std::move(v), kImEnd, {kEmptyIsh});  // (the BPE default eos, 11, is a byte here)
}

struct Fixture {
  std::shared_ptr<const tokenizer::Tokenizer> tok = byte_tokenizer();
  std::shared_ptr<const GrammarVocab> vocab = std::make_shared<const GrammarVocab>(*tok);

  GrammarMatcher matcher(std::string_view gbnf) const {
    Result<std::shared_ptr<const Grammar>> g = Grammar::parse(gbnf);
    EXPECT_TRUE(g.ok()) << (g.ok() ? "" : g.error().message());
    return GrammarMatcher(*g, vocab);
  }
};
const Fixture& fx() {
  static const Fixture f;
  return f;
}

int32_t byte(char c) {
  return static_cast<uint8_t>(c);
}

// Feeds `text` byte token by byte token; false as soon as a byte is not allowed.
bool feed(GrammarMatcher& m, std::string_view text) {
  for (char c : text) {
    if (!m.allows(byte(c))) return false;
    EXPECT_TRUE(m.accept(byte(c)));
  }
  return true;
}

std::string parse_error(std::string_view gbnf) {
  Result<std::shared_ptr<const Grammar>> g = Grammar::parse(gbnf);
  if (g.ok()) return "parsed";
  EXPECT_EQ(g.error().option, "grammar");
  return g.error().field + ": " + g.error().reason;
}

TEST(GrammarParse, ErrorsNameTheLineColumnAndWhat) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "there is no 'root' rule"},
      {"a ::= \"x\"", "there is no 'root' rule"},
      {"root ::= a", "line 1, column 10: rule 'a' is not defined"},
      {"root ::= \"abc", "unterminated string literal"},
      {"root ::= [abc", "unterminated character class"},
      {"root ::= []", "empty character class"},
      {"root ::= \"\\q\"", "line 1, column 11: unknown escape"},
      {"root ::= \"\\x4\"", "expected 2 hex digits"},
      {"root ::= * \"a\"", "nothing before the repetition operator"},
      {"root ::= \"\"*", "nothing before the repetition operator"},
      {"root ::= \"a\"{3,1}", "the most is fewer than the least"},
      {"root ::= \"a\"{2001}", "a repetition count above 2000"},
      {"root ::= \"a\"{x}", "expected a number"},
      {"root ::= \"a\"{1;2}", "expected ',' or '}'"},
      {"root ::= (\"a\"", "expected ')'"},
      {"root ::= \"a\"\n| \"b\"", "line 2, column 1: expected a rule name"},
      {"root \"a\"", "expected '::=' after the rule name"},
      {"root ::= \"a\" )", "expected the end of the rule"},
      {"root ::= root \"a\" | \"b\"", "rule 'root' is left-recursive"},
      {"root ::= e root \"a\" | \"b\"\ne ::= f\nf ::= \"x\" | ", "rule 'root' is left-recursive"},
      {"root ::= x\nx ::= (\"y\"?)* \"z\"", "left-recursive"},
      {std::string("root ::= \"a\0\"", 13), "offset 11: the grammar holds a NUL byte"},
      {"root ::= \"\xC3\"", "not valid UTF-8"},
      {"root ::= (((a)))\na ::= " + std::string(300, '(') + "\"x\"" + std::string(300, ')'),
       "parentheses nested deeper than 256"},
      {"root ::= \"" + std::string(1000, 'a') + "\"{1000,2000}", "the grammar grows past 65536 elements"},
      {"root ::= \"" + std::string(200000, 'a') + "\"{2000}", "the grammar grows past 65536 elements"},
      {"root ::= " +
           [] {
             std::string many;
             for (int i = 0; i < 100; ++i) many += "\"ab\"{2000} ";
             return many;
           }(),
       "the grammar grows past 65536 elements"},
  };
  for (const auto& [gbnf, want] : cases) {
    EXPECT_NE(parse_error(gbnf).find(want), std::string::npos)
        << printable(gbnf) << " gave: " << parse_error(gbnf);
  }
}

TEST(GrammarParse, TakesLlamaCppsSyntax) {
  for (const char* gbnf : {
           "root ::= \"a\"",
           "# a comment\nroot ::= item+ # another\nitem ::= [a-z0-9_] | \"\\u00e9\"\n",
           "root ::= (\n  \"a\" |\n  \"b\"\n)\r\n",
           "root ::= [^\\n\\]\\\\] . \"\\x41\\U0001F600\\t\\r\\\"\"",
           "root ::= \"a\"{2} \"b\"{1,} \"c\"{0,3} \"d\"{ 1 , 2 }",
           "root ::= my-rule2\nmy-rule2 ::= \"x\"\nmy-rule2 ::= \"y\"",  // the last definition stands
           "root ::= \"\" | \"a\"",
       })
    EXPECT_EQ(parse_error(gbnf), "parsed") << gbnf;
}

// Every string over `alphabet` up to `len` characters: the matcher takes each byte exactly while the
// text is a prefix of a sentence, and says complete exactly on a sentence (the regex says which; its
// sentences of up to `longest` characters must be all those whose prefixes are that short).
void expect_language(std::string_view gbnf, const std::string& regex, std::string_view alphabet, size_t len,
                     size_t longest) {
  const std::regex re(regex);
  std::vector<std::string> all = {""};
  for (size_t n = 0, from = 0; n < longest; ++n) {
    const size_t to = all.size();
    for (size_t i = from; i < to; ++i)
      for (char c : alphabet) all.push_back(all[i] + c);
    from = to;
  }
  std::set<std::string> viable;  // prefixes of sentences (the languages here have no longer sentences)
  for (const std::string& s : all)
    if (std::regex_match(s, re))
      for (size_t n = 0; n <= s.size(); ++n) viable.insert(s.substr(0, n));
  ASSERT_FALSE(viable.empty());
  for (const std::string& s : all) {
    if (s.size() > len) break;
    GrammarMatcher m = fx().matcher(gbnf);
    const bool fed = feed(m, s);
    EXPECT_EQ(fed, viable.count(s) == 1) << gbnf << " on '" << s << "'";
    if (fed) {
      EXPECT_EQ(m.complete(), std::regex_match(s, re)) << gbnf << " on '" << s << "'";
    }
  }
}

TEST(GrammarMatcher, AcceptsItsLanguageExactly) {
  expect_language("root ::= (\"ab\" | \"c\"){2,3} \"d\"?", "(ab|c){2,3}d?", "abcd", 7, 7);
  expect_language("root ::= x \"-\" x\nx ::= [a-b]+ | \"c\"?", "([a-b]+|c?)-([a-b]+|c?)", "abc-", 5, 7);
  expect_language("root ::= [^a-b-] [ab]* \"c\"{0}", "[^a-b\\-][ab]*", "abcd-", 5, 5);
  expect_language("root ::= \"(\" root \")\" | \"x\"",
                  "x|\\(x\\)|\\(\\(x\\)\\)|\\({3}x\\){3}|\\({4}x\\){4}|\\({5}x\\){5}", "()x", 5, 11);
  expect_language("root ::= \"a\" . \"b\"", "a.b", "ab(", 4, 4);
  expect_language("root ::= (\"a\" | \"ab\") (\"bc\" | \"c\")", "abc|abbc|ac", "abc", 5, 5);
}

// mask() and allows() say the same of every token, and what they allow is what accept() takes (a token
// without a cut character: accept() checks every code point, one at a time, with no look-ahead).
TEST(GrammarMatcher, MaskAllowsAndAcceptAgreeOnEveryToken) {
  const Fixture& f = fx();
  for (const char* gbnf :
       {"root ::= \"ab\" [a-z]* \"é\"? \"<pad>\"?", "root ::= [^a] \"é\" | \"xyz\"",
        "root ::= ([\\u00e0-\\u00ff] | \"a\")+", "root ::= \"é\"", "root ::= \"ax\" | \"ab\"",
        "root ::= (\"ab\" | \"xy\" | \"a\") \"z\"", "root ::= (\"x\" \"y\"{0,2}){1,2} \"yz\"?"}) {
    GrammarMatcher m = f.matcher(gbnf);
    bool cut = false;  // the last token ended inside a character
    for (int step = 0; step < 4; ++step) {
      std::vector<float> row(f.vocab->n_vocab(), 1.0f);
      m.mask(row);
      int32_t first = -1;
      for (size_t i = 0; i < row.size(); ++i) {
        const auto id = static_cast<int32_t>(i);
        EXPECT_EQ(row[i] == 1.0f, m.allows(id)) << gbnf << " token " << id << " step " << step;
        if (!cut && !f.vocab->is_eog(id) && f.vocab->tail(id).n_remain == 0 &&
            !f.vocab->code_points(id).empty()) {
          GrammarMatcher copy = m;
          EXPECT_EQ(copy.accept(id), m.allows(id)) << gbnf << " token " << id << " step " << step;
        }
        if (row[i] == 1.0f && first < 0 && !f.vocab->is_eog(id)) first = id;
      }
      if (first < 0) break;
      ASSERT_TRUE(m.accept(first));
      cut = f.vocab->tail(first).n_remain != 0;
    }
  }
}

TEST(GrammarMatcher, PiecesCutInsideACharacter) {
  const Fixture& f = fx();
  GrammarMatcher m = f.matcher("root ::= \"é\" | \"x\"");  // é = C3 A9
  EXPECT_TRUE(m.allows(0xC3));                             // may become é
  EXPECT_FALSE(m.allows(0xC2));                            // U+0080..U+00BF: not é
  EXPECT_FALSE(m.allows(0xA9));                            // a continuation byte cannot begin a character
  EXPECT_TRUE(m.allows(kEAcute));
  ASSERT_TRUE(m.accept(0xC3));
  EXPECT_FALSE(m.complete());
  EXPECT_TRUE(m.allows(0xA9));
  EXPECT_FALSE(m.allows(0xAA));
  EXPECT_FALSE(m.allows(byte('x')));  // the character begun must go on
  ASSERT_TRUE(m.accept(0xA9));
  EXPECT_TRUE(m.complete());
  // llama.cpp's bounds test: a negated class refuses a cut piece whose possible characters meet any of
  // its ranges, though most of them would do.
  GrammarMatcher n = f.matcher("root ::= [^é]");
  EXPECT_FALSE(n.allows(0xC3));
  EXPECT_TRUE(n.allows(0xC4));
  EXPECT_TRUE(n.allows(kEAcute) == false);
  EXPECT_TRUE(n.allows(byte('q')));
}

TEST(GrammarMatcher, EndOfGenerationOnlyOnAWholeSentence) {
  const Fixture& f = fx();
  GrammarMatcher m = f.matcher("root ::= \"ab\" \"c\"?");
  EXPECT_FALSE(m.allows(kImEnd));
  EXPECT_TRUE(m.allows(kAb));
  EXPECT_FALSE(m.allows(byte('b')));
  ASSERT_TRUE(m.accept(kAb));
  EXPECT_TRUE(m.complete());
  EXPECT_TRUE(m.allows(kImEnd));
  EXPECT_TRUE(m.allows(byte('c')));
  ASSERT_TRUE(m.accept(byte('c')));
  std::vector<float> row(f.vocab->n_vocab(), 0.5f);
  m.mask(row);
  for (size_t i = 0; i < row.size(); ++i)
    EXPECT_EQ(row[i] != -INFINITY, static_cast<int32_t>(i) == kImEnd) << i;
  EXPECT_FALSE(m.accept(byte('c')));  // refused: nothing is left to parse
  EXPECT_FALSE(m.allows(kImEnd));
  m.reset();
  EXPECT_TRUE(m.allows(kAb));
  // A control token is its text to the grammar, as in llama.cpp.
  GrammarMatcher p = f.matcher("root ::= \"<pad>\"");
  EXPECT_TRUE(p.allows(kEmptyIsh));
  EXPECT_TRUE(p.allows(byte('<')));
}

TEST(GrammarMatcher, ATokenLongerThanTheBoundIsNeverTaken) {
  const Fixture& f = fx();
  GrammarMatcher m = f.matcher("root ::= \"a\"+");
  EXPECT_FALSE(m.allows(kLong));
  EXPECT_TRUE(m.allows(byte('a')));
  std::vector<float> row(f.vocab->n_vocab(), 0.0f);
  m.mask(row);
  EXPECT_EQ(row[kLong], -INFINITY);
  EXPECT_EQ(row[static_cast<size_t>(byte('a'))], 0.0f);
}

TEST(GrammarMatcher, AnExplodingGrammarEndsInsteadOfGrowing) {
  // After n a's there are 2^n ways to close: the matcher gives up past kMaxGrammarStacks, at once.
  GrammarMatcher m = fx().matcher("root ::= x\nx ::= \"a\" x \"b\" | \"a\" x \"c\" | \"\"");
  const auto t0 = std::chrono::steady_clock::now();
  int fed = 0;
  while (fed < 40 && m.allows(byte('a')) && m.accept(byte('a'))) ++fed;
  EXPECT_GE(fed, 9);
  EXPECT_LT(fed, 14);
  EXPECT_FALSE(m.allows(byte('a')));
  EXPECT_FALSE(m.allows(kImEnd));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  // Many empty alternatives in a row reach the same stacks by 2^n paths: deduplicated as they expand.
  std::string many = "root ::= ";
  for (int i = 0; i < 200; ++i) many += "(\"\" | \"\" | \"\") ";
  many += "\"z\"";
  GrammarMatcher e = fx().matcher(many);
  EXPECT_TRUE(e.allows(byte('z')));
}

// Parses that double with every code point, read by a row's mask down the vocabulary's trie (kLong is
// 3000 a's): each prefix is read once per set of parses, not once per path through them (which
// multiplied without end), and a token is refused exactly where allows() and accept() refuse it: when
// the parses after one of its code points, all of them together, pass kMaxGrammarStacks.
TEST(GrammarMatcher, MaskOfAnExplodingGrammarAgreesWithAllows) {
  const Fixture& f = fx();
  GrammarMatcher m = f.matcher("root ::= x\nx ::= [a-z] x \"b\" | [a-z] x \"c\" | \"\"");
  int xyz_refused = -1, a_refused = -1;  // after how many a's
  for (int fed = 0; fed < 16 && a_refused < 0; ++fed) {
    std::vector<float> row(f.vocab->n_vocab(), 0.0f);
    m.mask(row);
    for (size_t i = 0; i < row.size(); ++i)
      ASSERT_EQ(row[i] == 0.0f, m.allows(static_cast<int32_t>(i))) << "token " << i << " after " << fed;
    if (xyz_refused < 0 && row[kXyz] != 0.0f) xyz_refused = fed;
    if (row[static_cast<size_t>(byte('a'))] != 0.0f) a_refused = fed;
    EXPECT_EQ(m.accept(byte('a')), a_refused < 0);
  }
  // After n letters there are 3 * 2^n parses (each level closes with b or c; the top is either letter
  // of another x, or the close): 3072 after 10, past the bound at the 11th, which "xyz" reaches first.
  EXPECT_EQ(xyz_refused, 8);
  EXPECT_EQ(a_refused, 10);
}

// Parses that differ with every prefix of the vocabulary: each letter pushes one of two closers of its
// own, so the 2^d parses after d letters are new stacks at every node of the trie. Over every a/b string
// of up to 10 letters (2046 tokens) one row's mask made ~1.4 million of them and kept them all (9.5 s
// and 970 MB without the bound; with the real 49152-token vocabulary and 26 letters, 6.4 GB and 7.6
// minutes through qrun, Zen 3); past the bound on what a row may add to the memo, the matcher gives its
// parses up instead: the row is all -inf, and allows() and accept() agree from then on. A single letter,
// before the row, is still allowed.
TEST(GrammarMatcher, ARowThatWouldGrowWithoutBoundEndsTheParses) {
  tokenizer::Vocab v = byte_vocab();
  for (int len = 2; len <= 10; ++len)
    for (int bits = 0; bits < 1 << len; ++bits) {
      std::string word;
      for (int i = 0; i < len; ++i) word += bits >> i & 1 ? 'b' : 'a';
      v.tokens.push_back(word);
    }
  v.tokens.push_back("<|im_end|>");
  const auto eos = static_cast<int32_t>(v.tokens.size()) - 1;
  const std::shared_ptr<const tokenizer::Tokenizer> tok = tokenizer_of(std::move(v), eos);
  const auto vocab = std::make_shared<const GrammarVocab>(*tok);
  Result<std::shared_ptr<const Grammar>> g = Grammar::parse(
      "root ::= x\nx ::= \"a\" x \"A\" | \"a\" x \"B\" | \"b\" x \"C\" | \"b\" x \"D\" | \"\"");
  ASSERT_TRUE(g.ok()) << g.error().message();
  GrammarMatcher m(*g, vocab);
  EXPECT_TRUE(m.allows(byte('a')));
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> row(vocab->n_vocab(), 0.0f);
  m.mask(row);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_TRUE(std::all_of(row.begin(), row.end(), [](float x) { return x == -INFINITY; }));
  for (size_t id = 0; id < vocab->n_vocab(); ++id) ASSERT_FALSE(m.allows(static_cast<int32_t>(id))) << id;
  EXPECT_FALSE(m.complete());
  EXPECT_FALSE(m.accept(byte('a')));
  // The same trie under a grammar whose parses it leads to are few: every a/b token allowed.
  Result<std::shared_ptr<const Grammar>> few = Grammar::parse("root ::= [ab]+");
  ASSERT_TRUE(few.ok()) << few.error().message();
  GrammarMatcher ab(*few, vocab);
  std::vector<float> row_ab(vocab->n_vocab(), 0.0f);
  ab.mask(row_ab);
  EXPECT_EQ(std::count(row_ab.begin(), row_ab.end(), 0.0f), 2 + 2044);
}

// What a matcher keeps of the states it read from never shows: at every step, it, a copy of it and a
// fresh matcher fed the same text mask alike, and the copy moves on alone.
TEST(GrammarMatcher, AMatchersMemoNeverShows) {
  const Fixture& f = fx();
  const char* gbnf = "root ::= (\"ab\" | [a-c] | \"é\")+ \"xyz\"?";
  GrammarMatcher m = f.matcher(gbnf);
  const std::string text = "abcab";
  const auto masked = [&](GrammarMatcher& g) {
    std::vector<float> row(f.vocab->n_vocab(), 0.0f);
    g.mask(row);
    return row;
  };
  for (size_t i = 0; i <= text.size(); ++i) {
    GrammarMatcher fresh = f.matcher(gbnf);
    ASSERT_TRUE(feed(fresh, text.substr(0, i)));
    const std::vector<float> row = masked(m);
    EXPECT_EQ(row, masked(fresh)) << i;
    GrammarMatcher copy = m;
    EXPECT_EQ(row, masked(copy)) << i;
    ASSERT_TRUE(copy.accept(byte('c')));
    EXPECT_EQ(row, masked(m)) << i;
    EXPECT_EQ(masked(copy), masked(fresh = copy)) << i;
    if (i < text.size()) {
      ASSERT_TRUE(m.accept(byte(text[i])));
    }
  }
  m.reset();
  GrammarMatcher again = f.matcher(gbnf);
  EXPECT_EQ(masked(m), masked(again));
}

TEST(GrammarSampler, GreedyTakesTheBestAllowedToken) {
  const Fixture& f = fx();
  Result<std::shared_ptr<const Grammar>> g = Grammar::parse("root ::= \"x\" [yz]");
  ASSERT_TRUE(g.ok());
  SamplerParams p;
  p.temp = 0;
  p.grammar = *g;
  p.grammar_vocab = f.vocab;
  Sampler s(p);
  std::vector<float> row(f.vocab->n_vocab(), 0.0f);
  row[static_cast<size_t>(byte('q'))] = 5;  // the row's best, refused
  row[static_cast<size_t>(byte('x'))] = 1;
  s.accept_prompt(byte('q'));  // a prompt token is not text of the grammar
  EXPECT_EQ(s.sample(row), byte('x'));
  s.accept(byte('x'));
  row[static_cast<size_t>(byte('z'))] = 2;
  row[static_cast<size_t>(byte('y'))] = 3;
  EXPECT_EQ(s.sample(row), byte('y'));
  s.accept(byte('y'));
  row[static_cast<size_t>(kImEnd)] = -1;
  EXPECT_EQ(s.sample(row), kImEnd);  // the sentence is whole: only the end is left
  // With the end banned, nothing is left: -1, and sampled, the same.
  p.ban(std::vector<int32_t>{kImEnd});
  for (float temp : {0.0f, 0.8f}) {
    p.temp = temp;
    Sampler b(p);
    b.accept(byte('x'));
    b.accept(byte('z'));
    EXPECT_EQ(b.sample(row), -1) << temp;
    b.reset_grammar();
    EXPECT_EQ(b.sample(row), byte('x')) << temp;
  }
}

TEST(GrammarDecode, LlamaCppsUtf8Reading) {
  PartialUtf8 end;
  EXPECT_EQ(decode_utf8_from("a\xC3\xA9", {}, end), (std::vector<uint32_t>{'a', 0xE9}));
  EXPECT_EQ(end.n_remain, 0);
  EXPECT_EQ(decode_utf8_from("a\xF0\x9F", {}, end), (std::vector<uint32_t>{'a'}));
  EXPECT_EQ(end.n_remain, 2);
  EXPECT_EQ(decode_utf8_from("\x98\x80!", end, end), (std::vector<uint32_t>{0x1F600, '!'}));
  EXPECT_EQ(decode_utf8_from("a\x80", {}, end), (std::vector<uint32_t>{}));  // a stray continuation
  EXPECT_EQ(end.n_remain, -1);
  EXPECT_EQ(decode_utf8_from("b", {0x3, 1}, end), (std::vector<uint32_t>{}));  // the sequence broken
  EXPECT_EQ(end.n_remain, -1);
  EXPECT_EQ(decode_utf8_from(std::string_view("a\0b", 3), {}, end), (std::vector<uint32_t>{'a'}));
}

}  // namespace
}  // namespace qe::model
