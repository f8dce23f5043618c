// SentencePiece-style tokenization (tokenizer.ggml.model = "llama"), as llama.cpp's
// llm_tokenizer_spm_session: start from one symbol per UTF-8 character, repeatedly merge the adjacent
// pair whose concatenation is the token with the highest score (ties: leftmost), and emit a symbol
// that is not a token as byte-fallback tokens <0xNN> (or the unknown token when there are none).
// The caller has already put in the space prefix and replaced spaces by ▁ (U+2581).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace qe::tokenizer {

class SpmEncoder {
 public:
  explicit SpmEncoder(const TokenIndex& index);

  // Appends the ids of `text` (escaped, no special tokens in it) to `out`.
  void encode(std::string_view text, const Vocab& v, const TokenIndex& index, std::vector<int32_t>& out) const;

 private:
  std::array<int32_t, 256> byte_token_{};  // <0xNN> (or the single-byte token), -1 when absent
};

}  // namespace qe::tokenizer
