// The vocabulary as GGUF stores it (`tokenizer.ggml.*`), in one plain struct, with llama.cpp's
// defaults and its end-of-generation rules applied (src/llama-vocab.cpp, llama_vocab::impl::load).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/error.h"

namespace qe {
class GgufFile;
}

namespace qe::tokenizer {

// tokenizer.ggml.token_type values (llama.h, llama_token_type); they are on disk.
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // <s>, <|im_end|>: only parsed from text when asked (parse_special)
  kUserDefined = 4,  // always parsed from text, rendered verbatim
  kUnused = 5,
  kByte = 6,  // <0x0A>: SentencePiece byte fallback
};

enum class VocabModel {
  kSpm,  // tokenizer.ggml.model = "llama": SentencePiece, scores, ▁ for spaces, byte fallback
  kBpe,  // tokenizer.ggml.model = "gpt2": byte-level BPE with ranked merges
};

inline constexpr int32_t kNoToken = -1;

struct Vocab {
  VocabModel model = VocabModel::kSpm;
  std::string pre;  // tokenizer.ggml.pre ("" when absent; BPE only)
  std::vector<std::string> tokens;  // id -> text (as stored: ▁ for SPM spaces, GPT-2 bytes for BPE)
  std::vector<float> scores;        // one per token (SPM merge priority), zeros when absent
  std::vector<TokenType> types;     // one per token, kNormal when absent
  std::vector<std::string> merges;  // "left right"; the index is the rank (BPE)

  int32_t bos = kNoToken, eos = kNoToken, eot = kNoToken, eom = kNoToken;
  int32_t unk = kNoToken, pad = kNoToken;
  // Fill-in-the-middle markers that end generation (llama.cpp's fim_pad / fim_rep / fim_sep): from
  // tokenizer.ggml.fim_*_token_id, else found by their text.
  int32_t fim_pad = kNoToken, fim_rep = kNoToken, fim_sep = kNoToken;
  bool add_bos = false, add_eos = false;
  bool add_space_prefix = false;  // SPM: a space before the text (and after each special token)
  std::vector<int32_t> eog;       // end-of-generation ids, sorted (see resolve_special_tokens)

  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
  bool valid_id(int32_t id) const { return id >= 0 && id < size(); }
  TokenType type(int32_t id) const { return types[static_cast<size_t>(id)]; }
};

// A vocabulary with llama.cpp's defaults for `model` and nothing else: SPM bos 1, eos 2, unk 0,
// add_bos and add_space_prefix on; BPE bos = eos = 11 (GPT-2's), add_bos as `pre` implies.
// Ids that fall outside the tokens later are dropped by resolve_special_tokens.
Vocab default_vocab(VocabModel model, std::string_view pre = {});

// Fills what llama.cpp derives rather than reads: scores/types padded to one per token, special ids
// outside the vocabulary dropped, eot/eom found by text (<|eot_id|>, <|im_end|>, <end_of_turn>...)
// when the file names none, and `eog` = eos ∪ eot ∪ eom ∪ the end-of-turn tokens present. Tokens it
// treats as end markers become kControl, as llama.cpp overrides them.
void resolve_special_tokens(Vocab& v);

// Reads tokenizer.ggml.{model, pre, tokens, scores, token_type, merges, *_token_id, add_bos_token,
// add_eos_token, add_space_prefix} and resolves them as above. Errors name the file and key:
//   model.gguf: tokenizer.ggml.merges: entry 17 "ab" is not two tokens
// What it tolerates, as llama.cpp does, but a user should hear about is appended to `warnings` (one
// line each, naming the file and key; the front end prints them):
//   model.gguf: tokenizer.ggml.bos_token_id = 1000000 is outside the vocabulary (49152 tokens); using the default 11
// nullptr: the caller only inspects the vocabulary and reports nothing.
Result<Vocab> load_vocab(const GgufFile& file, std::vector<std::string>* warnings = nullptr);

// Checks what a tokenizer relies on: one score and type per token, no empty or repeated token, BPE
// merges of two space-separated parts and a known pre-tokenizer, add_bos/add_eos with their ids.
// `file` names the source in the Error.
Status validate_vocab(const Vocab& v, std::string_view file);

// Text -> id over a vocabulary's own token strings, without a second copy of the text: open
// addressing with linear probing, one int32 id per slot and at least twice as many slots as tokens (a
// power of two), each probe comparing the key with the string its id names. 49152 tokens take 512 KiB
// here, where a std::unordered_map<std::string, int32_t> took ~3.5 MB (a node and a copy of each string).
// It refers to the strings (a span): they must outlive it and stay where they are, as a Vocab's tokens
// do when the Vocab is moved.
class TokenIndex {
 public:
  TokenIndex() = default;
  // A text that repeats keeps its first id (repeat() names the first such pair).
  explicit TokenIndex(std::span<const std::string> tokens);

  // The id of `text`, kNoToken when no token has it.
  int32_t find(std::string_view text) const;

  struct Repeat {
    int32_t first = kNoToken, again = kNoToken;  // again > first has first's text; kNoToken: none
  };
  Repeat repeat() const { return repeat_; }

 private:
  static size_t hash(std::string_view s) { return std::hash<std::string_view>{}(s); }

  std::span<const std::string> tokens_;
  std::vector<int32_t> slots_;  // a token id, or kNoToken for an empty slot
  size_t mask_ = 0;
  Repeat repeat_;
};

}  // namespace qe::tokenizer
