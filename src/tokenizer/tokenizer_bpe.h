// Byte-level BPE (GPT-2 style, tokenizer.ggml.model = "gpt2"), as llama.cpp's
// llm_tokenizer_bpe_session: pre-tokenize into words, start each word from one symbol per byte (the
// GPT-2 byte alphabet makes every byte a token), then repeatedly merge the adjacent pair with the
// lowest merge rank (ties: leftmost) until no listed pair is left.
#pragma once

#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "formats/error.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/vocab.h"

namespace qe::tokenizer {

class BpeEncoder {
 public:
  // `index` is the vocabulary's text -> id index; the encoder keeps no reference to it.
  static Result<BpeEncoder> create(const Vocab& v, const TokenIndex& index, std::string_view file);

  // Appends the ids of `text` (plain text, no special tokens in it) to `out`.
  void encode(std::string_view text, const TokenIndex& index, std::vector<int32_t>& out) const;

  bool clean_spaces() const { return clean_spaces_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t result;  // id of left+right
  };
  BpeEncoder(PreTokenizer pre) : pre_(std::move(pre)) {}
  void encode_word(std::string_view word, const TokenIndex& index, std::vector<int32_t>& out) const;

  PreTokenizer pre_;
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> merge
  int32_t byte_token_[256];                     // id of each byte's GPT-2 character, or -1
  bool ignore_merges_ = false;
  bool clean_spaces_ = true;
};

}  // namespace qe::tokenizer
