// The grammar matcher: llama.cpp's pushdown stacks and token checks (llama-grammar.cpp), with the
// parse states deduplicated as they are expanded and bounded in number.
#include "model/grammar.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <unordered_set>

namespace qe::model {
namespace {

using Stack = GrammarMatcher::Stack;

struct StackHash {
  size_t operator()(const Stack& s) const {
    size_t h = s.size();
    for (const GrammarElement* e : s) h = h * 0x9E3779B97F4A7C15ull ^ reinterpret_cast<uintptr_t>(e);
    return h;
  }
};

// A set of stacks in the order they were found; `overflow` once more than kMaxGrammarStacks.
struct Stacks {
  std::vector<Stack> list;
  std::unordered_set<Stack, StackHash> seen;
  bool overflow = false;
  void add(const Stack& s) {
    if (overflow || !seen.insert(s).second) return;
    if (list.size() == kMaxGrammarStacks) {
      overflow = true;
      return;
    }
    list.push_back(s);
  }
};

bool end_of_sequence(const GrammarElement* e) {
  return e->op == GrammarOp::end || e->op == GrammarOp::alt;
}

// Whether code point c is in the class at `e` (chr, chr_not or chr_any with the alternatives and ranges
// after it), and the element after the class.
std::pair<bool, const GrammarElement*> match_char(const GrammarElement* e, uint32_t c) {
  const bool positive = e->op != GrammarOp::chr_not;
  bool found = false;
  do {
    if (e[1].op == GrammarOp::chr_range) {
      found = found || (e->value <= c && c <= e[1].value);
      e += 2;
    } else if (e->op == GrammarOp::chr_any) {
      found = true;
      e += 1;
    } else {
      found = found || e->value == c;
      e += 1;
    }
  } while (e->op == GrammarOp::chr_alt);
  return {found == positive, e};
}

// Whether a character that the partial sequence could complete to might be in the class at `e`:
// llama.cpp's test of the range of code points it can become against each range of the class (a
// negated class says no as soon as any of its ranges meets that range).
bool match_partial_char(const GrammarElement* e, PartialUtf8 partial) {
  const bool positive = e->op != GrammarOp::chr_not;
  const int n = partial.n_remain;
  if (n < 0 || (n == 1 && partial.value < 2)) return false;  // invalid, or an overlong 2-byte form
  uint32_t low = partial.value << (n * 6);
  const uint32_t high = low | ((1u << (n * 6)) - 1);
  if (low == 0 && n == 2) low = 1u << 11;
  if (low == 0 && n == 3) low = 1u << 16;
  do {
    if (e[1].op == GrammarOp::chr_range) {
      if (e->value <= high && low <= e[1].value) return positive;
      e += 2;
    } else if (e->op == GrammarOp::chr_any) {
      return true;
    } else {
      if (low <= e->value && e->value <= high) return positive;
      e += 1;
    }
  } while (e->op == GrammarOp::chr_alt);
  return !positive;
}

// Expands `stack` until each resulting stack is empty (the sentence may end) or ends at a character
// element, adding those to `out`. Iterative, with the intermediate stacks deduplicated: a grammar of
// many empty alternatives reaches the same stack by many paths.
void advance(const Grammar& g, const Stack& stack, Stacks& out) {
  std::vector<Stack> todo{stack};
  std::unordered_set<Stack, StackHash> done;
  while (!todo.empty() && !out.overflow) {
    Stack cur = std::move(todo.back());
    todo.pop_back();
    if (!done.insert(cur).second) continue;
    if (done.size() > 16 * kMaxGrammarStacks) {
      out.overflow = true;
      return;
    }
    if (cur.empty() || cur.back()->op != GrammarOp::rule_ref) {
      out.add(cur);
      continue;
    }
    const GrammarElement* ref = cur.back();
    const GrammarElement* alt = g.rule(ref->value).data();
    while (true) {
      Stack next(cur.begin(), cur.end() - 1);
      if (!end_of_sequence(ref + 1)) next.push_back(ref + 1);
      if (!end_of_sequence(alt)) next.push_back(alt);
      todo.push_back(std::move(next));
      while (!end_of_sequence(alt)) ++alt;
      if (alt->op != GrammarOp::alt) break;
      ++alt;
    }
  }
}

// Every token's code points as a check reads them: from the vocabulary (a fresh state), or decoded on
// from a character the last token cut (then each piece is decoded again).
struct Texts {
  std::span<const uint32_t> points;
  std::span<const uint32_t> offsets;  // id -> its first code point; n + 1 entries
  std::span<const PartialUtf8> tails;
  size_t length(int32_t id) const {
    return offsets[static_cast<size_t>(id) + 1] - offsets[static_cast<size_t>(id)];
  }
  uint32_t at(int32_t id, size_t i) const { return points[offsets[static_cast<size_t>(id)] + i]; }
  PartialUtf8 tail(int32_t id) const { return tails[static_cast<size_t>(id)]; }
};

// The stack after its top character element read a character.
Stack after_char(const Stack& s) {
  Stack after(s.begin(), s.end() - 1);
  const GrammarElement* past = match_char(s.back(), 0).second;
  if (!end_of_sequence(past)) after.push_back(past);
  return after;
}

// The parses after reading code point c (llama_grammar_accept).
Stacks step(const Grammar& g, const std::vector<Stack>& stacks, uint32_t c) {
  Stacks next;
  for (const Stack& s : stacks)
    if (!s.empty() && match_char(s.back(), c).first) advance(g, after_char(s), next);
  return next;
}

// Tokens longer than this many code points are never allowed under a grammar: the check recurses once
// per code point (real vocabularies stay far below it).
constexpr size_t kMaxTokenCodePoints = 2048;

// Which tokens a set of parses takes (llama_grammar_reject_candidates, turned around: it marks the
// tokens taken): a token is taken when one stack reads all of its code points, each stack trying the
// tokens no stack before it took, all of them at once, one code point a level (`depth` read so far).
// state: 0 open, 1 taken, 2 not a candidate.
class Check {
 public:
  Check(const Grammar& g, const Texts& t, std::vector<uint8_t>& state) : g_(g), t_(t), state_(state) {}

  void run(const std::vector<Stack>& stacks, std::span<const int32_t> cands, size_t depth) {
    for (const Stack& s : stacks) {
      std::vector<int32_t>& going = level(going_, depth);
      going.clear();
      for (const int32_t id : cands) {
        if (state_[static_cast<size_t>(id)] != 0) continue;
        const bool done = t_.length(id) == depth;
        if (s.empty()) {  // the sentence is whole: only a token with nothing left fits
          if (done && t_.tail(id).n_remain == 0) state_[static_cast<size_t>(id)] = 1;
        } else if (done) {
          const PartialUtf8 tail = t_.tail(id);
          if (tail.n_remain == 0 || match_partial_char(s.back(), tail)) state_[static_cast<size_t>(id)] = 1;
        } else if (match_char(s.back(), t_.at(id, depth)).first) {
          going.push_back(id);
        }
      }
      go_on(s, going, depth);
    }
  }

  // The same over the vocabulary's trie (fresh state): `nodes` are prefixes of `depth` code points that
  // the stacks' parses have read; a token ending at one of them is taken, a child goes on when the
  // stack's next element takes its code point. Each shared prefix is read once per parse.
  void run_trie(const std::vector<Stack>& stacks, std::span<const uint32_t> nodes, size_t depth,
                const GrammarVocab& v) {
    const std::span<const GrammarVocab::TrieNode> trie = v.trie();
    const std::span<const int32_t> tokens = v.trie_tokens();
    for (const Stack& s : stacks) {
      std::vector<uint32_t>& going = level(going_nodes_, depth);
      going.clear();
      // The stack's verdict on each ASCII code point, once: most children are ASCII, and a class of
      // several ranges costs a loop each time.
      std::array<bool, 128> ascii{};
      if (!s.empty())
        for (uint32_t c = 0; c < 128; ++c) ascii[c] = match_char(s.back(), c).first;
      for (const uint32_t n : nodes) {
        const GrammarVocab::TrieNode& node = trie[n];
        for (const int32_t id : tokens.subspan(node.tokens_begin, node.tokens_end - node.tokens_begin)) {
          if (state_[static_cast<size_t>(id)] != 0) continue;
          const PartialUtf8 tail = v.tail(id);
          if (tail.n_remain == 0 || (!s.empty() && match_partial_char(s.back(), tail)))
            state_[static_cast<size_t>(id)] = 1;
        }
        if (s.empty()) continue;  // the sentence is whole: no code point goes on
        for (uint32_t c = node.children_begin; c < node.children_end; ++c) {
          const uint32_t cp = trie[c].cp;
          if (cp < 128 ? ascii[cp] : match_char(s.back(), cp).first) going.push_back(c);
        }
      }
      // No token deeper than kMaxTokenCodePoints is a candidate: a hostile vocabulary's longer ones do
      // not take the recursion deeper.
      if (going.empty() || depth == kMaxTokenCodePoints) continue;
      Stacks next;
      advance(g_, after_char(s), next);
      if (!next.overflow) run_trie(next.list, going, depth + 1, v);
    }
  }

 private:
  const Grammar& g_;
  const Texts& t_;
  std::vector<uint8_t>& state_;
  // Per level, reused: the tokens (trie nodes) that read one more code point there. A deque: a deeper
  // level added while a shallower one's list is in use leaves that list where it is.
  std::deque<std::vector<int32_t>> going_;
  std::deque<std::vector<uint32_t>> going_nodes_;

  template <class T>
  static std::vector<T>& level(std::deque<std::vector<T>>& levels, size_t depth) {
    if (levels.size() <= depth) levels.resize(depth + 1);
    return levels[depth];
  }

  void go_on(const Stack& s, const std::vector<int32_t>& going, size_t depth) {
    if (going.empty()) return;
    Stacks next;
    advance(g_, after_char(s), next);
    if (!next.overflow) run(next.list, going, depth + 1);  // too many parses: none of these is taken
  }
};

}  // namespace

std::vector<uint32_t> decode_utf8_from(std::string_view bytes, PartialUtf8 start, PartialUtf8& end) {
  static constexpr int kLength[16] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4};
  std::vector<uint32_t> out;
  size_t i = 0;
  uint32_t value = start.value;
  int remain = start.n_remain;
  auto more = [&] { return i < bytes.size() && bytes[i] != '\0'; };  // a NUL ends the piece, as a C string
  while (more() && remain > 0) {
    const auto b = static_cast<uint8_t>(bytes[i]);
    if (b >> 6 != 2) {  // the sequence the last piece began does not go on
      end = {0, -1};
      return out;
    }
    value = value << 6 | (b & 0x3Fu);
    ++i;
    --remain;
  }
  if (start.n_remain > 0 && remain == 0) out.push_back(value);
  while (more()) {
    const auto lead = static_cast<uint8_t>(bytes[i]);
    remain = kLength[lead >> 4] - 1;
    if (remain < 0) {  // a continuation byte where a character should begin: nothing of it counts
      out.clear();
      end = {0, -1};
      return out;
    }
    value = lead & ((1u << (7 - remain)) - 1);
    ++i;
    while (more() && remain > 0) {
      value = value << 6 | (static_cast<uint8_t>(bytes[i]) & 0x3Fu);
      ++i;
      --remain;
    }
    if (remain == 0) out.push_back(value);
  }
  end = {value, remain};
  return out;
}

GrammarVocab::GrammarVocab(const tokenizer::Tokenizer& tok) : tok_(tok) {
  const auto n = static_cast<size_t>(tok.n_vocab());
  offsets_.reserve(n + 1);
  tails_.resize(n);
  eog_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    eog_[i] = tok.is_eog(id);
    offsets_.push_back(static_cast<uint32_t>(points_.size()));
    const std::vector<uint32_t> cps = decode_utf8_from(piece(id), {}, tails_[i]);
    points_.insert(points_.end(), cps.begin(), cps.end());
  }
  offsets_.push_back(static_cast<uint32_t>(points_.size()));
  points_.shrink_to_fit();
  never_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string_view p = piece(static_cast<int32_t>(i));
    never_[i] = eog_[i] || p.empty() || p[0] == '\0' || offsets_[i + 1] - offsets_[i] > kMaxTokenCodePoints;
  }

  // The trie, breadth first: the tokens sorted by their code points, a node's range of them split by
  // the code point at its depth into its children (made one after the other, so contiguous). The tokens
  // of a range that end at its depth come first in it (a prefix sorts before what extends it).
  std::vector<int32_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>(i);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    const std::span<const uint32_t> x = code_points(a), y = code_points(b);
    return std::lexicographical_compare(x.begin(), x.end(), y.begin(), y.end());
  });
  struct Pending {
    uint32_t node;
    size_t begin, end, depth;  // ids[begin, end): the tokens under the node
  };
  std::vector<Pending> todo{{0, 0, n, 0}};
  trie_.push_back({0, 0, 0, 0, 0});
  for (size_t q = 0; q < todo.size(); ++q) {
    const Pending p = todo[q];
    size_t i = p.begin;
    trie_[p.node].tokens_begin = static_cast<uint32_t>(trie_tokens_.size());
    for (; i < p.end && code_points(ids[i]).size() == p.depth; ++i) trie_tokens_.push_back(ids[i]);
    trie_[p.node].tokens_end = static_cast<uint32_t>(trie_tokens_.size());
    trie_[p.node].children_begin = static_cast<uint32_t>(trie_.size());
    while (i < p.end) {
      const uint32_t cp = code_points(ids[i])[p.depth];
      size_t j = i + 1;
      while (j < p.end && code_points(ids[j])[p.depth] == cp) ++j;
      todo.push_back({static_cast<uint32_t>(trie_.size()), i, j, p.depth + 1});
      trie_.push_back({cp, 0, 0, 0, 0});
      i = j;
    }
    trie_[p.node].children_end = static_cast<uint32_t>(trie_.size());
  }
  trie_.shrink_to_fit();
}

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> grammar,
                               std::shared_ptr<const GrammarVocab> vocab)
    : grammar_(std::move(grammar)), vocab_(std::move(vocab)) {
  QE_CHECK(grammar_ && vocab_);
  reset();
}

void GrammarMatcher::reset() {
  partial_ = {};
  Stacks s;
  const GrammarElement* alt = grammar_->rule(grammar_->root()).data();
  while (true) {
    Stack start;
    if (!end_of_sequence(alt)) start.push_back(alt);
    advance(*grammar_, start, s);
    while (!end_of_sequence(alt)) ++alt;
    if (alt->op != GrammarOp::alt) break;
    ++alt;
  }
  stacks_ = s.overflow ? std::vector<Stack>{} : std::move(s.list);
}

bool GrammarMatcher::complete() const {
  for (const Stack& s : stacks_)
    if (s.empty()) return true;
  return false;
}

void GrammarMatcher::mask(std::span<float> logits) const {
  QE_CHECK(logits.size() == vocab_->n_vocab());
  const GrammarVocab& v = *vocab_;
  const bool eog_ok = complete();
  // 2 for the tokens that are no candidates: the grammar never takes them (an empty piece, or one too
  // long), the end-of-generation ones (decided here), and those at -inf already (nothing to take away).
  std::vector<uint8_t> state = v.never_;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (state[i] != 0 || logits[i] == -INFINITY) {
      if (state[i] != 0 && !(v.eog_[i] && eog_ok)) logits[i] = -INFINITY;
      state[i] = 2;
    }
  }
  if (partial_.n_remain == 0) {
    const Texts t{v.points_, v.offsets_, v.tails_};
    const uint32_t root = 0;
    Check(*grammar_, t, state).run_trie(stacks_, std::span<const uint32_t>(&root, 1), 0, v);
  } else {
    // Every piece decoded on from the character the last token cut.
    std::vector<uint32_t> points, offsets{0};
    std::vector<PartialUtf8> tails(logits.size());
    std::vector<int32_t> cands;
    for (size_t i = 0; i < logits.size(); ++i) {
      if (state[i] == 0) {
        const std::vector<uint32_t> cps =
            decode_utf8_from(v.piece(static_cast<int32_t>(i)), partial_, tails[i]);
        points.insert(points.end(), cps.begin(), cps.end());
        cands.push_back(static_cast<int32_t>(i));
      }
      offsets.push_back(static_cast<uint32_t>(points.size()));
    }
    const Texts t{points, offsets, tails};
    Check(*grammar_, t, state).run(stacks_, cands, 0);
  }
  for (size_t i = 0; i < logits.size(); ++i)
    if (state[i] == 0) logits[i] = -INFINITY;
}

bool GrammarMatcher::takes(std::span<const uint32_t> cps, PartialUtf8 tail) const {
  // The parses after each code point in turn (the union over the stacks, as llama.cpp's check per stack
  // gives it), then the cut tail against what each parse reads next.
  std::vector<Stack> stacks = stacks_;
  for (const uint32_t c : cps) {
    Stacks next = step(*grammar_, stacks, c);
    if (next.overflow || next.list.empty()) return false;
    stacks = std::move(next.list);
  }
  if (tail.n_remain == 0) return !stacks.empty();
  for (const Stack& s : stacks)
    if (!s.empty() && match_partial_char(s.back(), tail)) return true;
  return false;
}

bool GrammarMatcher::allows(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= vocab_->n_vocab()) return false;
  if (vocab_->is_eog(id)) return complete();
  const std::string_view piece = vocab_->piece(id);
  if (piece.empty() || piece[0] == '\0') return false;
  PartialUtf8 tail;
  const std::vector<uint32_t> cps = decode_utf8_from(piece, partial_, tail);
  return cps.size() <= kMaxTokenCodePoints && takes(cps, tail);
}

bool GrammarMatcher::accept(int32_t id) {
  if (id < 0 || static_cast<size_t>(id) >= vocab_->n_vocab()) return false;
  if (vocab_->is_eog(id)) return complete();
  PartialUtf8 tail;
  const std::vector<uint32_t> cps = decode_utf8_from(vocab_->piece(id), partial_, tail);
  if (cps.size() > kMaxTokenCodePoints) return false;  // never taken (allows() says so too)
  partial_ = tail;
  for (const uint32_t c : cps) {
    Stacks next = step(*grammar_, stacks_, c);
    stacks_ = next.overflow ? std::vector<Stack>{} : std::move(next.list);
    if (stacks_.empty()) return false;
  }
  return true;
}

}  // namespace qe::model
