// libFuzzer target: the SentencePiece-style tokenizer (tokenizer.ggml.model "llama": merges by score,
// ▁ for spaces, byte fallback) encoding and decoding arbitrary bytes; see fuzz_tokenizer.h for the
// input and the checks. The vocabulary is tests/fuzz/data/spm_bpe.model, a 1000-piece BPE model that
// make_fuzz_corpus.py trained (byte fallback, control <|im_start|> <|im_end|>, user-defined <|user|>),
// read as the converter reads it. Flag bit 5 picks a second vocabulary: no space prefix, EOS added.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fuzz_common.h"
#include "fuzz_tokenizer.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/tokenizer.h"

namespace {

using qe::tokenizer::Tokenizer;
using qe::tokenizer::TokenType;
using qe::tokenizer::Vocab;

Tokenizer make_tokenizer(bool space_prefix) {
  const std::string bytes = qe::fuzz::read_fuzz_file("data/spm_bpe.model");
  qe::Result<qe::tokenizer::SpmModel> m = qe::tokenizer::parse_sentencepiece_model(
      {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, "spm_bpe.model");
  if (!m) {
    std::fprintf(stderr, "fuzz_tokenizer_spm: %s\n", m.error().message().c_str());
    std::abort();
  }
  Vocab v = qe::tokenizer::default_vocab(qe::tokenizer::VocabModel::kSpm);
  for (const qe::tokenizer::SpmPiece& p : m->pieces) {
    v.tokens.push_back(p.piece);
    v.scores.push_back(p.score);
    v.types.push_back(static_cast<TokenType>(p.type));  // the same numbers by design
  }
  v.bos = m->bos_id, v.eos = m->eos_id, v.unk = m->unk_id;
  v.add_space_prefix = space_prefix && m->add_dummy_prefix;
  v.add_bos = space_prefix, v.add_eos = !space_prefix;
  qe::tokenizer::resolve_special_tokens(v);
  qe::Result<Tokenizer> t = Tokenizer::create(std::move(v), "spm_bpe.model");
  if (!t) {
    std::fprintf(stderr, "fuzz_tokenizer_spm: %s\n", t.error().message().c_str());
    std::abort();
  }
  return std::move(*t);
}

const Tokenizer& tokenizer(bool space_prefix) {
  static const Tokenizer with = make_tokenizer(true), without = make_tokenizer(false);
  return space_prefix ? with : without;
}

// Exact when nothing in the text changes on the way: valid UTF-8 (llama.cpp's SPM cuts symbols by the
// length a lead byte announces, so a bad lead swallows the first byte of a following ▁, which then
// decodes as bytes, not as a space), no ▁ (it decodes as a space) and no user-defined token (it is cut
// out and, as in llama.cpp, the text after it gets a space prefix). Every byte has a <0xNN> piece, so
// any other text comes back as it was.
bool exact(const Tokenizer& tok, std::string_view text) {
  if (!qe::fuzz::valid_utf8(text) || text.find("\xE2\x96\x81") != std::string_view::npos) return false;
  for (int32_t id = 0; id < tok.n_vocab(); ++id)
    if (tok.vocab().type(id) == TokenType::kUserDefined &&
        text.find(tok.vocab().tokens[size_t(id)]) != std::string_view::npos)
      return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tokenizer(true);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = qe::fuzz::as_text(data, size);
  const Tokenizer& tok = tokenizer(size == 0 || (data[0] & 32) == 0);
  qe::fuzz::exercise_tokenizer(tok, input, {.plain = size > 0 && exact(tok, input.substr(1))});
  return 0;
}
