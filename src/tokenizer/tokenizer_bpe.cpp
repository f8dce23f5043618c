#include "tokenizer/tokenizer_bpe.h"

#include <queue>

#include "tokenizer/utf8.h"

namespace qe::tokenizer {

namespace {

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

struct Symbol {
  int32_t id;    // current token id
  int32_t prev;  // index of the previous live symbol, -1 at the start
  int32_t next;  // index of the next live symbol, -1 at the end
  bool live;
};

struct Bigram {
  int32_t rank;
  int32_t left, right;           // symbol indices
  int32_t left_id, right_id;     // the ids they had when queued (stale entries are skipped)
  int32_t result;
  // std::priority_queue pops the largest: lowest rank first, then the leftmost pair (llama.cpp).
  bool operator<(const Bigram& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
};

}  // namespace

Result<BpeEncoder> BpeEncoder::create(const Vocab& v, const TokenIndex& index, std::string_view file) {
  const PreTokenizerTraits* traits = find_pre_tokenizer(v.pre);
  if (traits == nullptr) {
    return Error{std::string(file), "tokenizer.ggml.pre", "unknown pre-tokenizer \"" + v.pre + "\""};
  }
  Result<PreTokenizer> pre = PreTokenizer::create(traits->patterns);
  if (!pre) return Error{std::string(file), "tokenizer.ggml.pre", pre.error().message()};
  BpeEncoder enc(std::move(*pre));
  enc.ignore_merges_ = traits->ignore_merges;
  enc.clean_spaces_ = traits->clean_spaces;
  for (int b = 0; b < 256; ++b) {
    enc.byte_token_[b] = index.find(gpt2_byte_to_utf8(static_cast<uint8_t>(b)));
  }
  // A merge whose parts or result are not tokens can never apply to token ids; llama.cpp would keep
  // merging such strings and drop them at the end, HF refuses the file: we skip them.
  enc.merges_.reserve(v.merges.size());
  std::string joined;
  for (size_t i = 0; i < v.merges.size(); ++i) {
    const std::string& m = v.merges[i];
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) continue;  // validate_vocab rejects these first
    const int32_t left = index.find(std::string_view(m).substr(0, sp));
    const int32_t right = index.find(std::string_view(m).substr(sp + 1));
    joined.assign(m, 0, sp);
    joined.append(m, sp + 1);
    const int32_t result = index.find(joined);
    if (left < 0 || right < 0 || result < 0) continue;
    enc.merges_.emplace(pair_key(left, right), Merge{static_cast<int32_t>(i), result});  // first rank wins
  }
  return enc;
}

void BpeEncoder::encode(std::string_view text, const TokenIndex& index, std::vector<int32_t>& out) const {
  std::vector<std::string_view> words;
  pre_.split(text, words);
  for (std::string_view w : words) encode_word(w, index, out);
}

void BpeEncoder::encode_word(std::string_view word, const TokenIndex& index, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    std::string encoded;
    for (char c : word) encoded += gpt2_byte_to_utf8(static_cast<uint8_t>(c));
    if (int32_t id = index.find(encoded); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  const int32_t n = static_cast<int32_t>(word.size());
  std::vector<Symbol> syms(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    syms[i] = Symbol{byte_token_[static_cast<uint8_t>(word[i])], i - 1, i + 1 < n ? i + 1 : -1, true};
  }
  std::priority_queue<Bigram> queue;
  auto try_pair = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0 || syms[l].id < 0 || syms[r].id < 0) return;
    auto it = merges_.find(pair_key(syms[l].id, syms[r].id));
    if (it == merges_.end()) return;
    queue.push(Bigram{it->second.rank, l, r, syms[l].id, syms[r].id, it->second.result});
  };
  for (int32_t i = 0; i + 1 < n; ++i) try_pair(i, i + 1);

  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = syms[b.left];
    Symbol& r = syms[b.right];
    if (!l.live || !r.live || l.next != b.right || l.id != b.left_id || r.id != b.right_id) continue;
    l.id = b.result;
    l.next = r.next;
    r.live = false;
    if (r.next >= 0) syms[r.next].prev = b.left;
    try_pair(l.prev, b.left);
    try_pair(b.left, l.next);
  }
  // A byte with no token (a vocabulary without the full byte alphabet) is dropped, as llama.cpp does.
  for (int32_t i = 0; i >= 0 && i < n; i = syms[i].next) {
    if (syms[i].id >= 0) out.push_back(syms[i].id);
  }
}

}  // namespace qe::tokenizer
