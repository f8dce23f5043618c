// Text <-> token ids for a GGUF vocabulary, matching llama.cpp (llama_tokenize / llama_detokenize /
// llama_token_to_piece) token for token.
//
//   Result<Tokenizer> tok = Tokenizer::from_gguf(gguf);
//   std::vector<int32_t> ids = tok->tokenize("Hello", /*add_special=*/true, /*parse_special=*/false);
//   Utf8Stream out;
//   for (int32_t id : generated) fputs(out.push(tok->token_to_piece(id, false)).c_str(), stdout);
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/error.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab.h"

namespace qe {
class GgufFile;
}

namespace qe::tokenizer {

class Tokenizer {
 public:
  // Validates `vocab` (validate_vocab) and builds the look-up tables. `file` names it in errors.
  static Result<Tokenizer> create(Vocab vocab, std::string_view file = "<memory>");
  // load_vocab (its warnings go to `warnings`) + create.
  static Result<Tokenizer> from_gguf(const GgufFile& file, std::vector<std::string>* warnings = nullptr);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // add_special: BOS/EOS as the vocabulary asks (tokenizer.ggml.add_bos_token / add_eos_token).
  // parse_special: control tokens written in the text (<|im_start|>) become their ids; user-defined
  // tokens always do. Special tokens are matched longest first and never split by BPE/SPM.
  std::vector<int32_t> tokenize(std::string_view text, bool add_special, bool parse_special) const;

  // The bytes of one token (may be part of a UTF-8 character: feed them through a Utf8Stream).
  // special=false renders control and unknown tokens as nothing, as llama.cpp.
  std::string_view token_to_piece(int32_t id, bool special = true) const;

  // llama_detokenize: concatenated pieces; with an SPM space prefix the first piece loses one leading
  // space (unless remove_special dropped a leading BOS); remove_special drops a leading BOS and a
  // trailing EOS the vocabulary adds; unparse_special renders control tokens; BPE pre-tokenizers with
  // clean_spaces undo " ." / " 's" spacing. The result may hold invalid UTF-8 if the ids do.
  std::string detokenize(std::span<const int32_t> ids, bool remove_special = false,
                         bool unparse_special = false) const;

  int32_t n_vocab() const;
  int32_t bos() const;  // kNoToken (-1) when the vocabulary has none
  int32_t eos() const;
  int32_t eot() const;
  int32_t eom() const;
  int32_t unk() const;
  bool add_bos() const;
  bool add_eos() const;
  bool is_eog(int32_t id) const;  // end of generation: eos, eot, eom, <|im_end|>, ...
  bool is_control(int32_t id) const;
  // The id of a token text, kNoToken if none.
  int32_t token_id(std::string_view text) const;
  // The vocabulary it was made from, less the BPE merges (the encoder keeps them as id pairs).
  const Vocab& vocab() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qe::tokenizer
