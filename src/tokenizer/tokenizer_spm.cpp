#include "tokenizer/tokenizer_spm.h"

#include <fmt/format.h>

#include <algorithm>
#include <queue>

#include "tokenizer/utf8.h"

namespace qe::tokenizer {

namespace {

struct Symbol {
  int32_t prev, next;  // live neighbours, -1 at the ends
  uint32_t off, len;   // bytes of the text this symbol covers (0 once merged away)
};

struct Bigram {
  float score;
  int32_t left, right;
  uint32_t len;  // left.len + right.len when queued (a stale entry no longer matches)
  // Highest score first, then the leftmost pair (llama.cpp's llm_bigram_spm::comparator).
  bool operator<(const Bigram& o) const { return score != o.score ? score < o.score : left > o.left; }
};

}  // namespace

SpmEncoder::SpmEncoder(const TokenIndex& index) {
  for (int b = 0; b < 256; ++b) {
    int32_t id = index.find(fmt::format("<0x{:02X}>", b));
    if (id < 0) id = index.find(std::string(1, static_cast<char>(b)));
    byte_token_[static_cast<size_t>(b)] = id;
  }
}

void SpmEncoder::encode(std::string_view text, const Vocab& v, const TokenIndex& index,
                        std::vector<int32_t>& out) const {
  std::vector<Symbol> syms;
  syms.reserve(text.size());
  for (size_t off = 0; off < text.size();) {
    const size_t len = std::min<size_t>(utf8_seq_len(static_cast<uint8_t>(text[off])), text.size() - off);
    const int32_t i = static_cast<int32_t>(syms.size());
    syms.push_back(Symbol{i - 1, off + len == text.size() ? -1 : i + 1, static_cast<uint32_t>(off),
                          static_cast<uint32_t>(len)});
    off += len;
  }
  std::priority_queue<Bigram> queue;
  auto try_pair = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const uint32_t len = syms[l].len + syms[r].len;
    const int32_t id = index.find(text.substr(syms[l].off, len));
    if (id < 0) return;
    queue.push(Bigram{v.scores[static_cast<size_t>(id)], l, r, len});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) try_pair(i - 1, i);

  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = syms[b.left];
    Symbol& r = syms[b.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = b.left;
    try_pair(l.prev, b.left);
    try_pair(b.left, l.next);
  }

  for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next) {
    const std::string_view piece = text.substr(syms[i].off, syms[i].len);
    if (int32_t id = index.find(piece); id >= 0) {
      out.push_back(id);
      continue;
    }
    // Every merged symbol is a token, so this is one character outside the vocabulary.
    for (char c : piece) {
      const int32_t id = byte_token_[static_cast<uint8_t>(c)];
      if (id >= 0) {
        out.push_back(id);
      } else if (v.unk >= 0) {
        out.push_back(v.unk);
        break;  // one <unk> for the character, as SentencePiece without byte fallback
      }
    }
  }
}

}  // namespace qe::tokenizer
