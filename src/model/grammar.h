// Grammar-constrained sampling with llama.cpp's GBNF grammars (llama-cli --grammar, llama-server's
// "grammar"): the text generated must stay a prefix of a sentence of the grammar, and an
// end-of-generation token is allowed only once it is a whole sentence.
//
// The same rules, matches and token checks as llama.cpp's grammar sampler, so that a constrained greedy
// generation is llama.cpp's token for token (tests/python/test_llamacpp_parity.py):
//   - a rule is a flat list of elements (characters, ranges, negated classes, rule references,
//     alternatives), repetitions rewritten into helper rules, as llama.cpp's parser builds them;
//   - the parse state is a set of pushdown stacks, each ending at a character element;
//   - a token is allowed when every code point of its piece (control tokens as their text) is accepted
//     by one stack; a piece ending inside a UTF-8 sequence is allowed when the bytes so far could begin
//     a character that the stack's next element takes (llama.cpp's bounds test of the possible code
//     points, kept as it is for the same verdicts); a token with an empty piece never is.
// Stricter than llama.cpp where it would hang or abort: left recursion through rules that can be
// empty is refused (llama.cpp only sees an empty alternative written as such), an empty character
// class is refused, and a token after any of whose code points the parses would number more than
// kMaxGrammarStacks is not allowed (mask, allows and accept alike; llama.cpp has no bound, and a
// hostile grammar can make them grow exponentially). A row's mask reads each prefix the vocabulary's
// tokens share once per set of parses, never once per path through them.
//
//   Result<std::shared_ptr<const Grammar>> g = Grammar::parse("root ::= \"yes\" | \"no\"");
//   auto vocab = std::make_shared<const GrammarVocab>(model.tok);
//   GrammarMatcher m(*g, vocab);  // m.mask(row): -inf where the grammar says no; m.accept(id)
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/error.h"
#include "tokenizer/tokenizer.h"

namespace qe::model {

// An element of a rule: llama.cpp's llama_grammar_element kinds, with the same meanings.
enum class GrammarOp : uint8_t {
  end,        // end of the rule
  alt,        // start of the next alternative
  rule_ref,   // value: a rule id
  chr,        // value: a code point; may be followed by chr_alt / chr_range_upper elements
  chr_not,    // as chr, inverted ([^...])
  chr_range,  // value: the inclusive upper bound of the range begun by the element before
  chr_alt,    // value: another code point of the same class ([ab])
  chr_any,    // any code point (.)
};
struct GrammarElement {
  GrammarOp op;
  uint32_t value;
  bool operator==(const GrammarElement&) const = default;
};

inline constexpr size_t kMaxGrammarStacks = 4096;    // parses of one text before the matcher gives up
inline constexpr int kMaxGrammarRepetitions = 2000;  // x{m,n}: m and n (llama.cpp's later parsers' bound)
inline constexpr size_t kMaxGrammarElements = size_t{1} << 16;  // after repetitions are rewritten (512 KiB)

// The compiled rules of a grammar. Immutable once parsed: one Grammar serves many matchers at once.
class Grammar {
 public:
  // Parses llama.cpp's GBNF: `name ::= alternatives` rules (names of letters, digits and '-'), string
  // literals with \x \u \U \t \r \n escapes, character classes [a-z] and [^...], '.', grouping, and
  // the * + ? {m} {m,} {m,n} repetitions; '#' comments; a rule ends at a newline outside parentheses.
  // The start symbol is `root`. Error (option "grammar"; field "line L, column C") on bad syntax, an
  // undefined rule, no root, left recursion, or a grammar past the bounds above.
  static Result<std::shared_ptr<const Grammar>> parse(std::string_view text);

  std::span<const GrammarElement> rule(uint32_t id) const { return rules_[id]; }
  size_t n_rules() const { return rules_.size(); }
  uint32_t root() const { return root_; }

  // Built by grammar_parse.cpp only.
  Grammar(std::vector<std::vector<GrammarElement>> rules, uint32_t root)
      : rules_(std::move(rules)), root_(root) {}

 private:
  std::vector<std::vector<GrammarElement>> rules_;  // each ends with GrammarOp::end
  uint32_t root_;
};

// A UTF-8 sequence cut short at the end of a piece: the bits so far and the bytes still to come (-1:
// invalid). llama.cpp's llama_partial_utf8.
struct PartialUtf8 {
  uint32_t value = 0;
  int n_remain = 0;
};

// What the grammar reads of each token, built once per vocabulary (~3 MiB for 49152 tokens): its piece
// with control tokens as their text (llama.cpp's token_to_piece, special = true), decoded into code
// points from a fresh state, whether it ends generation, and a trie of those code points (a check of
// the whole vocabulary then reads each prefix that tokens share once per parse, not once per token:
// SmolLM2's 49152 tokens hold 329k code points but 100k distinct prefixes).
class GrammarVocab {
 public:
  explicit GrammarVocab(const tokenizer::Tokenizer& tok);

  size_t n_vocab() const { return eog_.size(); }
  bool is_eog(int32_t id) const { return eog_[static_cast<size_t>(id)] != 0; }
  std::string_view piece(int32_t id) const { return tok_.token_to_piece(id, /*special=*/true); }
  // The piece's code points decoded from a fresh state, and how it ends.
  std::span<const uint32_t> code_points(int32_t id) const {
    const auto i = static_cast<size_t>(id);
    return std::span<const uint32_t>(points_).subspan(offsets_[i], offsets_[i + 1] - offsets_[i]);
  }
  PartialUtf8 tail(int32_t id) const { return tails_[static_cast<size_t>(id)]; }

  // A prefix of one or more tokens' code points: the last code point, its children (the longer
  // prefixes, contiguous in the node list) and the tokens that end here (ids in trie_tokens()).
  struct TrieNode {
    uint32_t cp;
    uint32_t children_begin, children_end;
    uint32_t tokens_begin, tokens_end;
  };
  std::span<const TrieNode> trie() const { return trie_; }  // [0] is the empty prefix
  std::span<const int32_t> trie_tokens() const { return trie_tokens_; }

 private:
  const tokenizer::Tokenizer& tok_;
  std::vector<uint32_t> points_;   // every token's code points, one after the other
  std::vector<uint32_t> offsets_;  // token id -> its first code point in points_; n_vocab + 1 entries
  std::vector<PartialUtf8> tails_;
  std::vector<uint8_t> eog_;
  // 1: not decided by the trie: an end-of-generation token (decided by the parse being whole), or one
  // the grammar never takes (an empty piece, a NUL first, more code points than a check follows).
  std::vector<uint8_t> never_;
  std::vector<TrieNode> trie_;
  std::vector<int32_t> trie_tokens_;
  friend class GrammarMatcher;  // mask() reads never_ and eog_ directly
};

// llama.cpp's decode_utf8: the code points of `bytes` continuing from `start`, stopping at a NUL byte,
// and how the text ends. An invalid sequence gives the code points before it and n_remain -1.
std::vector<uint32_t> decode_utf8_from(std::string_view bytes, PartialUtf8 start, PartialUtf8& end);

// One generation's place in a grammar. Copyable (a copy is an independent state).
class GrammarMatcher {
 public:
  GrammarMatcher(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const GrammarVocab> vocab);
  GrammarMatcher(const GrammarMatcher& o);
  GrammarMatcher& operator=(const GrammarMatcher& o);
  GrammarMatcher(GrammarMatcher&&) noexcept;
  GrammarMatcher& operator=(GrammarMatcher&&) noexcept;
  ~GrammarMatcher();

  // Back to the start of the grammar (a new reply).
  void reset();
  // Whether the grammar takes token `id` next (the check of one sampled token).
  bool allows(int32_t id) const;
  // Sets every token the grammar does not take next to -inf; logits.size() == the vocabulary's. A row
  // whose parses grow past a bound (a pathologically ambiguous grammar: grammar.cpp, kMaxMaskGrowth)
  // ends the matcher's parses instead, as accept() past kMaxGrammarStacks does: every token is -inf,
  // and from then on the matcher allows nothing.
  void mask(std::span<float> logits);
  // Advances past token `id`, which allows(id) said yes to. False when the text has no parse left (a
  // token it did not allow) or more than kMaxGrammarStacks: the matcher then allows nothing; false and
  // unchanged for a token no grammar takes (longer than the check follows).
  bool accept(int32_t id);
  // The text so far is a whole sentence of the grammar (an end-of-generation token is allowed).
  bool complete() const;

  using Stack = std::vector<const GrammarElement*>;

 private:
  class Parses;  // grammar.cpp: the parses of texts read from a set of stacks, memoized
  Parses& parses() const;
  void start_from(const std::vector<Stack>& stacks) const;  // a fresh memo, the current parses `stacks`
  std::vector<Stack> stacks() const;                        // the current parses

  std::shared_ptr<const Grammar> grammar_;
  std::shared_ptr<const GrammarVocab> vocab_;
  PartialUtf8 partial_;
  // The current parses are the set set_ of memo_, which is made by reset() (and in a copy) and kept as
  // the matcher moves on: a sampled token's check, the row's mask and the accept share their steps, and
  // the next state's mask finds the steps this one made. Like the rest of a matcher, not for two
  // threads at once.
  mutable std::unique_ptr<Parses> memo_;
  mutable uint32_t set_ = 0;
};

}  // namespace qe::model
