// libFuzzer target: SmolLM2's byte-level BPE tokenizer (the default model's: 49152 tokens, 48900
// merges, pre-tokenizer "smollm") encoding and decoding arbitrary bytes; see fuzz_tokenizer.h for the
// input and the checks. The vocabulary comes from tests/fuzz/data/smollm2_vocab.txt, so the target
// needs no model; when the model is present (scripts/get-model.sh) the file is checked against it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/gguf_reader.h"
#include "fuzz_common.h"
#include "fuzz_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace {

using qe::tokenizer::TokenType;
using qe::tokenizer::Vocab;

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "fuzz_tokenizer_bpe: %s\n", why.c_str());
  std::abort();
}

// Reads "NAME COUNT" and then COUNT lines.
std::vector<std::string> section(std::string_view& text, std::string_view name) {
  auto line = [&]() {
    const size_t nl = text.find('\n');
    if (nl == std::string_view::npos) fail("smollm2_vocab.txt is truncated");
    const std::string_view l = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    return l;
  };
  const std::string_view head = line();
  if (!head.starts_with(name) || head.size() <= name.size() + 1)
    fail("expected section " + std::string(name));
  const size_t n = std::strtoul(std::string(head.substr(name.size() + 1)).c_str(), nullptr, 10);
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) out.emplace_back(line());
  return out;
}

Vocab smollm2_vocab() {
  const std::string file = qe::fuzz::read_fuzz_file("data/smollm2_vocab.txt");
  std::string_view text = file;
  while (text.starts_with("#")) text.remove_prefix(text.find('\n') + 1);
  Vocab v = qe::tokenizer::default_vocab(qe::tokenizer::VocabModel::kBpe, "smollm");
  const std::vector<std::string> special = section(text, "special");
  const std::vector<std::string> alphabet = section(text, "alphabet");
  v.merges = section(text, "merges");
  v.tokens = special;
  v.tokens.insert(v.tokens.end(), alphabet.begin(), alphabet.end());
  for (const std::string& m : v.merges) {
    const size_t sp = m.find(' ', 1);
    v.tokens.push_back(m.substr(0, sp) + m.substr(sp + 1));
  }
  v.types.assign(v.tokens.size(), TokenType::kNormal);
  for (size_t i = 0; i < special.size(); ++i) v.types[i] = TokenType::kControl;
  // As the GGUF says (tokenizer.ggml.*): <|im_start|> bos, <|im_end|> eos and pad, <|endoftext|> unk.
  v.bos = 1, v.eos = 2, v.unk = 0, v.pad = 2;
  v.add_bos = false, v.add_space_prefix = false;
  qe::tokenizer::resolve_special_tokens(v);
  if (v.tokens.size() != 49152) fail("smollm2_vocab.txt does not give 49152 tokens");
  return v;
}

// The committed file must be the model's vocabulary, or the target would fuzz something else.
void check_against_model(const Vocab& v) {
  const std::string path = std::string(QE_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (FILE* f = std::fopen(path.c_str(), "rb"))
    std::fclose(f);
  else
    return;
  qe::Result<qe::GgufFile> g = qe::GgufFile::open(path);
  if (!g) fail(g.error().message());
  std::vector<std::string> warnings;
  qe::Result<Vocab> m = qe::tokenizer::load_vocab(*g, &warnings);
  if (!m) fail(m.error().message());
  if (m->tokens != v.tokens || m->merges != v.merges || m->types != v.types || m->bos != v.bos ||
      m->eos != v.eos || m->unk != v.unk || m->pad != v.pad || m->add_bos != v.add_bos || m->pre != v.pre ||
      m->eog != v.eog)
    fail("data/smollm2_vocab.txt differs from " + path + " (regenerate it with make_fuzz_corpus.py)");
}

const qe::tokenizer::Tokenizer& tokenizer() {
  static const qe::tokenizer::Tokenizer tok = [] {
    Vocab v = smollm2_vocab();
    check_against_model(v);
    qe::Result<qe::tokenizer::Tokenizer> t =
        qe::tokenizer::Tokenizer::create(std::move(v), "smollm2_vocab.txt");
    if (!t) fail(t.error().message());
    return std::move(*t);
  }();
  return tok;
}

// Byte-level BPE spells every byte its alphabet has (235 of 256: SmolLM2's lacks bytes that never
// occur in its training text) and "smollm" does not clean up spaces, so such text comes back exactly.
bool spellable(const qe::tokenizer::Tokenizer& tok, std::string_view text) {
  for (char c : text)
    if (tok.token_id(qe::tokenizer::gpt2_byte_to_utf8(static_cast<uint8_t>(c))) == qe::tokenizer::kNoToken)
      return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const qe::tokenizer::Tokenizer& tok = tokenizer();
  const std::string_view input = qe::fuzz::as_text(data, size);
  const bool exact = size > 0 && spellable(tok, input.substr(1));
  qe::fuzz::exercise_tokenizer(tok, input, {.plain = exact, .specials = exact});
  return 0;
}
