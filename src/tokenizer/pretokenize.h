// Pre-tokenization for byte-level BPE: the regular expressions that cut text into words before BPE
// merges run inside each word, chosen by the GGUF key `tokenizer.ggml.pre` exactly as llama.cpp's
// llm_tokenizer_bpe does (src/llama-vocab.cpp). Several expressions apply in turn: each one splits
// every piece the previous one left, and the text between matches is kept as pieces too (as both
// llama.cpp's unicode_regex_split and HF tokenizers' Split(behavior=Isolated) do).
//
// Patterns are PCRE2 with UTF + UCP (\p{L}, \p{N} and \s are Unicode-aware, as in Oniguruma, which
// HF tokenizers uses) and JIT-compiled once; invalid UTF-8 never matches and stays inside the
// between-match pieces, whose bytes BPE still encodes.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "formats/error.h"

namespace qe::tokenizer {

// What a `tokenizer.ggml.pre` name implies besides its patterns (llama.cpp's llama_vocab::load).
struct PreTokenizerTraits {
  std::vector<std::string> patterns;  // applied in order
  bool ignore_merges = false;  // a word that is already a token is taken whole (Llama 3)
  bool clean_spaces = true;    // detokenize drops the space before . , ! ? and some contractions
  bool add_bos = false;        // default of tokenizer.ggml.add_bos_token for this pre-tokenizer
};

// The traits for `name` ("" means the key is absent: llama.cpp's "default"), or nullptr when the name
// is not one we know.
const PreTokenizerTraits* find_pre_tokenizer(std::string_view name);

class PreTokenizer {
 public:
  // Compiles `patterns` (PCRE2 syntax). An Error names the pattern index and PCRE2's message.
  static Result<PreTokenizer> create(const std::vector<std::string>& patterns);

  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;
  ~PreTokenizer();

  // Appends the words of `text` (views into it, in order, covering it exactly) to `out`.
  void split(std::string_view text, std::vector<std::string_view>& out) const;

 private:
  struct Impl;
  explicit PreTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qe::tokenizer
