// The grammar matcher: llama.cpp's pushdown stacks and token checks (llama-grammar.cpp), with the
// parse states deduplicated as they are expanded, bounded in number, and each step from one set of
// them to the next made once per matcher.
#include "model/grammar.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <span>
#include <unordered_map>
#include <unordered_set>

namespace qe::model {
namespace {

using Stack = GrammarMatcher::Stack;

// A set's hash, of its stacks' ids.
struct IdsHash {
  size_t operator()(const std::vector<uint32_t>& ids) const {
    size_t h = ids.size();
    for (const uint32_t id : ids) h = h * 0x9E3779B97F4A7C15ull ^ id;
    return h;
  }
};

// Stacks as the nodes of a tree: a node is its top element over the node below it, and equal stacks
// are one node (made once, looked up by top and below), so a stack is pushed, popped, compared and
// hashed in constant time whatever its depth. Node 0 is the empty stack.
class StackPool {
 public:
  static constexpr uint32_t kEmpty = 0;

  uint32_t push(uint32_t below, const GrammarElement* top) {
    const auto [it, added] = ids_.try_emplace(Node{top, below}, static_cast<uint32_t>(nodes_.size()));
    if (added) nodes_.push_back({top, below});
    return it->second;
  }
  const GrammarElement* top(uint32_t s) const { return nodes_[s].top; }
  uint32_t below(uint32_t s) const { return nodes_[s].below; }
  size_t size() const { return nodes_.size(); }

  uint32_t intern(const Stack& s) {  // s.back() is the top
    uint32_t id = kEmpty;
    for (const GrammarElement* e : s) id = push(id, e);
    return id;
  }
  Stack stack(uint32_t s) const {
    Stack out;
    for (; s != kEmpty; s = below(s)) out.push_back(top(s));
    std::reverse(out.begin(), out.end());
    return out;
  }

 private:
  struct Node {
    const GrammarElement* top;
    uint32_t below;
    bool operator==(const Node&) const = default;
  };
  struct NodeHash {
    size_t operator()(const Node& n) const {
      return (reinterpret_cast<uintptr_t>(n.top) * 0x9E3779B97F4A7C15ull) ^ n.below;
    }
  };
  std::vector<Node> nodes_{{nullptr, 0}};
  std::unordered_map<Node, uint32_t, NodeHash> ids_;
};

// A set of stacks in the order they were found; `overflow` once more than kMaxGrammarStacks.
struct Stacks {
  std::vector<uint32_t> list;
  std::unordered_set<uint32_t> seen;
  bool overflow = false;
  void add(uint32_t s) {
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
void advance(const Grammar& g, StackPool& pool, uint32_t stack, Stacks& out) {
  std::vector<uint32_t> todo{stack};
  std::unordered_set<uint32_t> done;
  while (!todo.empty() && !out.overflow) {
    const uint32_t cur = todo.back();
    todo.pop_back();
    if (!done.insert(cur).second) continue;
    if (done.size() > 16 * kMaxGrammarStacks) {
      out.overflow = true;
      return;
    }
    if (cur == StackPool::kEmpty || pool.top(cur)->op != GrammarOp::rule_ref) {
      out.add(cur);
      continue;
    }
    const GrammarElement* ref = pool.top(cur);
    const GrammarElement* alt = g.rule(ref->value).data();
    while (true) {
      uint32_t next = pool.below(cur);
      if (!end_of_sequence(ref + 1)) next = pool.push(next, ref + 1);
      if (!end_of_sequence(alt)) next = pool.push(next, alt);
      todo.push_back(next);
      while (!end_of_sequence(alt)) ++alt;
      if (alt->op != GrammarOp::alt) break;
      ++alt;
    }
  }
}

// The stack after its top character element read a character.
uint32_t after_char(StackPool& pool, uint32_t s) {
  const GrammarElement* past = match_char(pool.top(s), 0).second;
  return end_of_sequence(past) ? pool.below(s) : pool.push(pool.below(s), past);
}

// Tokens longer than this many code points are never allowed under a grammar: real vocabularies stay
// far below it, and a check of a row walks the trie no deeper.
constexpr size_t kMaxTokenCodePoints = 2048;

// What a matcher's memo may hold (stacks made, ids in sets; ~50 MiB) before it starts a fresh one.
constexpr size_t kMaxMemo = size_t{1} << 20;
// What one row's mask may add to the memo (~12 MiB) before the matcher gives up its parses. The rows of
// real grammars add a few thousand entries at most: their prefixes lead to a few sets, met again and
// again. A grammar whose parses differ with every prefix of the vocabulary's trie (thousands of them,
// each pushing what it read) adds up to 4096 stacks per prefix: a 1 KB grammar took 6.4 GB and 7.6
// minutes for one row (Zen 3) before this bound. What a row adds depends on what the memo holds (a copy
// of a matcher starts with none), so only rows within reach of the bound, which only grammars built to
// explode make, may end differently in a copy.
constexpr size_t kMaxMaskGrowth = size_t{1} << 18;

}  // namespace

// The parses of texts, memoized for one matcher as it moves from state to state: every distinct stack
// and every distinct set of stacks gets an id, a stack's expansion after it reads its character is made
// once, and so is each step of a set by a code point. The parses after a text are
// llama_grammar_accept's, code point by code point, with one bound: none are left once a step has
// more than kMaxGrammarStacks, all of its stacks together, or one stack's expansion does. mask(),
// allows() and accept() read a token through the same steps, so they cannot disagree on it; and a
// row's mask costs one step per prefix in the vocabulary's trie (memoized per set and code point), not
// one per path through the stacks, which multiplies with each code point when the parses are many.
class GrammarMatcher::Parses {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;  // no parse left (none, or past the bound)

  explicit Parses(const Grammar& g) : g_(g) {}

  // The set of `stacks`; kNone for none.
  uint32_t set_of(const std::vector<Stack>& stacks) {
    std::vector<uint32_t> ids;
    for (const Stack& s : stacks) ids.push_back(pool_.intern(s));
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    return ids.empty() ? kNone : set_id(std::move(ids));
  }

  // Whether one of the set's parses is whole (its stack is empty, the smallest id).
  bool whole(uint32_t set) const { return set != kNone && sets_[set].stacks->front() == StackPool::kEmpty; }

  // What it holds: stacks made and ids in sets. Grows with every state a matcher reads from.
  size_t size() const { return pool_.size() + set_elements_; }

  // The parses after the set's parses read code point c.
  uint32_t step(uint32_t set, uint32_t c) {
    if (c < 128) {
      if (sets_[set].ascii_at == kNone) {
        sets_[set].ascii_at = static_cast<uint32_t>(ascii_.size());
        ascii_.resize(ascii_.size() + 128, kUnknown);
      }
      const size_t at = sets_[set].ascii_at + c;
      if (ascii_[at] == kUnknown) {
        const uint32_t next = read(set, c);
        ascii_[at] = next;  // after read(): it may grow ascii_
      }
      return ascii_[at];
    }
    const uint64_t key = uint64_t{set} << 21 | c;  // code points are below 2^21
    const auto found = steps_.find(key);
    if (found != steps_.end()) return found->second;
    const uint32_t next = read(set, c);
    steps_.emplace(key, next);
    return next;
  }

  // Whether the parses `set` read every code point of cps, and then whether the cut tail can go on.
  bool reads(uint32_t set, std::span<const uint32_t> cps, PartialUtf8 tail) {
    for (const uint32_t c : cps) {
      if (set == kNone) return false;
      set = step(set, c);
    }
    return set != kNone && (tail.n_remain == 0 || takes_tail(set, tail));
  }

  // Whether a character that the cut tail may become is read next by one of the set's parses.
  bool takes_tail(uint32_t set, PartialUtf8 tail) {
    for (const GrammarElement* e : tops(set).elements)
      if (match_partial_char(e, tail)) return true;
    return false;
  }

  std::vector<Stack> list(uint32_t set) const {
    std::vector<Stack> out;
    if (set != kNone)
      for (const uint32_t s : *sets_[set].stacks) out.push_back(pool_.stack(s));
    return out;
  }

 private:
  static constexpr uint32_t kUnknown = kNone - 1;

  // A set's stacks grouped by their top, the character element each reads next (empty stacks, which
  // read nothing, left out): a step depends only on which of those take the code point, and a set's
  // stacks are many where its tops are few.
  struct Tops {
    std::vector<const GrammarElement*> elements;
    std::vector<uint32_t> begin;  // elements.size() + 1 offsets into stacks
    std::vector<uint32_t> stacks;
  };
  struct Set {
    const std::vector<uint32_t>* stacks;  // sorted ids
    uint32_t ascii_at = kNone;            // its 128 ASCII steps in ascii_, kNone before the first
    std::unique_ptr<Tops> tops;           // made by the first read()
  };
  struct Expansion {
    bool made = false, overflow = false;
    std::vector<uint32_t> stacks;
  };

  uint32_t set_id(std::vector<uint32_t> sorted_ids) {
    const size_t n = sorted_ids.size();
    const auto [it, added] = set_ids_.emplace(std::move(sorted_ids), static_cast<uint32_t>(sets_.size()));
    if (added) {
      sets_.push_back({&it->first, kNone, nullptr});
      set_elements_ += n;
    }
    return it->second;
  }

  const Tops& tops(uint32_t set) {
    if (!sets_[set].tops) {
      std::vector<std::pair<const GrammarElement*, uint32_t>> by_top;
      for (const uint32_t s : *sets_[set].stacks)
        if (s != StackPool::kEmpty) by_top.emplace_back(pool_.top(s), s);
      std::sort(by_top.begin(), by_top.end());
      auto t = std::make_unique<Tops>();
      for (size_t i = 0; i < by_top.size(); ++i) {
        if (i == 0 || by_top[i].first != by_top[i - 1].first) {
          t->elements.push_back(by_top[i].first);
          t->begin.push_back(static_cast<uint32_t>(i));
        }
        t->stacks.push_back(by_top[i].second);
      }
      t->begin.push_back(static_cast<uint32_t>(by_top.size()));
      sets_[set].tops = std::move(t);
    }
    return *sets_[set].tops;
  }

  // The stacks stack `s` expands to once its top element has read a character; nullptr past the bound.
  const std::vector<uint32_t>* expansion(uint32_t s) {
    if (expansions_.size() <= s) expansions_.resize(pool_.size());
    if (!expansions_[s].made) {
      Stacks out;
      advance(g_, pool_, after_char(pool_, s), out);
      expansions_[s] = {true, out.overflow, std::move(out.list)};
    }
    const Expansion& e = expansions_[s];
    return e.overflow ? nullptr : &e.stacks;
  }

  // step() without its memo: the union of the expansions of the stacks whose top takes c, made once
  // per set and choice of tops.
  uint32_t read(uint32_t set, uint32_t c) {
    std::vector<uint32_t> key{set};  // the set, then the tops that take c
    const Tops& t = tops(set);
    for (uint32_t i = 0; i < t.elements.size(); ++i)
      if (match_char(t.elements[i], c).first) key.push_back(i);
    if (key.size() == 1) return kNone;
    const auto found = unions_.find(key);
    if (found != unions_.end()) return found->second;
    const uint32_t next = unite(t, std::span<const uint32_t>(key).subspan(1));
    unions_.emplace(std::move(key), next);
    return next;
  }

  uint32_t unite(const Tops& t, std::span<const uint32_t> chosen) {
    std::vector<uint32_t> next;
    for (const uint32_t i : chosen) {
      for (uint32_t k = t.begin[i]; k < t.begin[i + 1]; ++k) {
        const std::vector<uint32_t>* e = expansion(t.stacks[k]);
        if (e == nullptr) return kNone;
        next.insert(next.end(), e->begin(), e->end());
      }
    }
    std::sort(next.begin(), next.end());
    next.erase(std::unique(next.begin(), next.end()), next.end());
    return next.size() > kMaxGrammarStacks ? kNone : set_id(std::move(next));  // never empty
  }

  const Grammar& g_;
  StackPool pool_;
  std::vector<Expansion> expansions_;                                     // by stack
  std::unordered_map<std::vector<uint32_t>, uint32_t, IdsHash> set_ids_;  // a node container: Set
  std::vector<Set> sets_;                                                 // points into it
  size_t set_elements_ = 0;
  std::vector<uint32_t> ascii_;
  std::unordered_map<uint64_t, uint32_t> steps_;                         // (set, code point >= 128) -> set
  std::unordered_map<std::vector<uint32_t>, uint32_t, IdsHash> unions_;  // read()'s key -> set
};

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

GrammarMatcher::GrammarMatcher(const GrammarMatcher& o)
    : grammar_(o.grammar_), vocab_(o.vocab_), partial_(o.partial_) {
  start_from(o.stacks());
}

GrammarMatcher& GrammarMatcher::operator=(const GrammarMatcher& o) {
  if (this != &o) {
    grammar_ = o.grammar_;
    vocab_ = o.vocab_;
    partial_ = o.partial_;
    start_from(o.stacks());
  }
  return *this;
}

GrammarMatcher::GrammarMatcher(GrammarMatcher&&) noexcept = default;
GrammarMatcher& GrammarMatcher::operator=(GrammarMatcher&&) noexcept = default;
GrammarMatcher::~GrammarMatcher() = default;

void GrammarMatcher::start_from(const std::vector<Stack>& stacks) const {
  memo_ = std::make_unique<Parses>(*grammar_);
  set_ = memo_->set_of(stacks);
}

GrammarMatcher::Parses& GrammarMatcher::parses() const {
  if (!memo_) start_from({});  // moved from: no parses
  return *memo_;
}

std::vector<GrammarMatcher::Stack> GrammarMatcher::stacks() const {
  return parses().list(set_);
}

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> grammar,
                               std::shared_ptr<const GrammarVocab> vocab)
    : grammar_(std::move(grammar)), vocab_(std::move(vocab)) {
  QE_CHECK(grammar_ && vocab_);
  reset();
}

void GrammarMatcher::reset() {
  partial_ = {};
  StackPool pool;
  Stacks s;
  const GrammarElement* alt = grammar_->rule(grammar_->root()).data();
  while (true) {
    advance(*grammar_, pool, end_of_sequence(alt) ? StackPool::kEmpty : pool.push(StackPool::kEmpty, alt), s);
    while (!end_of_sequence(alt)) ++alt;
    if (alt->op != GrammarOp::alt) break;
    ++alt;
  }
  std::vector<Stack> start;
  if (!s.overflow)
    for (const uint32_t id : s.list) start.push_back(pool.stack(id));
  start_from(start);
}

bool GrammarMatcher::complete() const {
  return parses().whole(set_);
}

void GrammarMatcher::mask(std::span<float> logits) {
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
  Parses& p = parses();
  const uint32_t start = set_;
  const size_t memo_before = p.size();
  const auto too_much = [&] { return p.size() - memo_before > kMaxMaskGrowth; };
  bool gave_up = false;
  if (partial_.n_remain == 0) {
    // Down the vocabulary's trie: each prefix the parses read once, its tokens taken where they end.
    struct Visit {
      uint32_t node, set;
      size_t depth;
    };
    const std::span<const GrammarVocab::TrieNode> trie = v.trie();
    const std::span<const int32_t> tokens = v.trie_tokens();
    std::vector<Visit> todo;
    if (start != Parses::kNone) todo.push_back({0, start, 0});
    while (!todo.empty() && !gave_up) {
      const Visit at = todo.back();
      todo.pop_back();
      const GrammarVocab::TrieNode& node = trie[at.node];
      for (const int32_t id : tokens.subspan(node.tokens_begin, node.tokens_end - node.tokens_begin)) {
        const PartialUtf8 tail = v.tail(id);
        if (state[static_cast<size_t>(id)] == 0 && (tail.n_remain == 0 || p.takes_tail(at.set, tail)))
          state[static_cast<size_t>(id)] = 1;
      }
      if (at.depth == kMaxTokenCodePoints) continue;  // no token deeper is a candidate
      for (uint32_t c = node.children_begin; c < node.children_end && !(gave_up = too_much()); ++c) {
        const uint32_t next = p.step(at.set, trie[c].cp);
        if (next != Parses::kNone) todo.push_back({c, next, at.depth + 1});
      }
    }
  } else {
    // Every piece decoded on from the character the last token cut.
    for (size_t i = 0; i < logits.size() && !(gave_up = too_much()); ++i) {
      if (state[i] != 0) continue;
      PartialUtf8 tail;
      const std::vector<uint32_t> cps = decode_utf8_from(v.piece(static_cast<int32_t>(i)), partial_, tail);
      if (cps.size() <= kMaxTokenCodePoints && p.reads(start, cps, tail)) state[i] = 1;
    }
  }
  if (gave_up) {  // no parses left: nothing is allowed from here, as past kMaxGrammarStacks
    start_from({});
    std::fill(logits.begin(), logits.end(), -INFINITY);
    return;
  }
  for (size_t i = 0; i < logits.size(); ++i)
    if (state[i] == 0) logits[i] = -INFINITY;
}

bool GrammarMatcher::allows(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= vocab_->n_vocab()) return false;
  if (vocab_->is_eog(id)) return complete();
  const std::string_view piece = vocab_->piece(id);
  if (piece.empty() || piece[0] == '\0') return false;
  PartialUtf8 tail;
  const std::vector<uint32_t> cps = decode_utf8_from(piece, partial_, tail);
  if (cps.size() > kMaxTokenCodePoints) return false;
  Parses& p = parses();
  return p.reads(set_, cps, tail);
}

bool GrammarMatcher::accept(int32_t id) {
  if (id < 0 || static_cast<size_t>(id) >= vocab_->n_vocab()) return false;
  if (vocab_->is_eog(id)) return complete();
  PartialUtf8 tail;
  const std::vector<uint32_t> cps = decode_utf8_from(vocab_->piece(id), partial_, tail);
  if (cps.size() > kMaxTokenCodePoints) return false;  // never taken (allows() says so too)
  partial_ = tail;
  if (cps.empty()) return true;
  Parses& p = parses();
  for (size_t i = 0; i < cps.size() && set_ != Parses::kNone; ++i) set_ = p.step(set_, cps[i]);
  const bool ok = set_ != Parses::kNone;
  if (p.size() > kMaxMemo) start_from(p.list(set_));  // the states behind are not needed
  return ok;
}

}  // namespace qe::model
