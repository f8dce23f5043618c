// libFuzzer target: GBNF grammars (model/grammar.h). The input is two parts (fuzz_common.h's
// kSectionSeparator): a grammar, then text fed to it as byte tokens. Parses the grammar, then for each
// step checks that mask() and allows() give every token of a small byte-level vocabulary (the 256
// bytes, a few longer pieces, an end-of-generation token) the same verdict, and accepts the text's next
// byte while the grammar allows it. Bounded: at most 64 steps; the parser's and matcher's own bounds
// (repetitions, elements, parses) keep each step short.
// Seeds: tests/fuzz/corpus/grammar (JSON, lists, classes, non-ASCII literals, parses that double with
// each letter, with text that fits).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "model/grammar.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab.h"

namespace {

std::shared_ptr<const qe::model::GrammarVocab> byte_vocab() {
  static const auto tok = [] {
    qe::tokenizer::Vocab v = qe::tokenizer::default_vocab(qe::tokenizer::VocabModel::kBpe, "gpt2");
    for (int b = 0; b < 256; ++b)
      v.tokens.push_back(qe::tokenizer::gpt2_byte_to_utf8(static_cast<uint8_t>(b)));
    for (const char* t : {"ab", "\"}", "\xC4\xA0\"", "{\"", "12", "<|im_end|>"}) v.tokens.push_back(t);
    v.eos = static_cast<int32_t>(v.tokens.size()) - 1;
    qe::tokenizer::resolve_special_tokens(v);
    return std::make_unique<qe::tokenizer::Tokenizer>(
        std::move(qe::tokenizer::Tokenizer::create(std::move(v))).value());
  }();
  static const auto vocab = std::make_shared<const qe::model::GrammarVocab>(*tok);
  return vocab;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> parts = qe::fuzz::split_sections(qe::fuzz::as_text(data, size));
  qe::Result<std::shared_ptr<const qe::model::Grammar>> g = qe::model::Grammar::parse(parts[0]);
  if (!g) {
    qe::fuzz::sink(g.error().message().size());
    return 0;
  }
  const std::shared_ptr<const qe::model::GrammarVocab> vocab = byte_vocab();
  qe::model::GrammarMatcher m(*g, vocab);
  const std::string_view text = parts.size() > 1 ? parts[1] : std::string_view();
  std::vector<float> row(vocab->n_vocab());
  for (size_t step = 0; step <= text.size() && step < 64; ++step) {
    std::fill(row.begin(), row.end(), 0.0f);
    m.mask(row);
    for (size_t i = 0; i < row.size(); ++i) QE_CHECK((row[i] == 0.0f) == m.allows(static_cast<int32_t>(i)));
    if (step == text.size()) break;
    const auto id = static_cast<int32_t>(static_cast<uint8_t>(text[step]));
    if (!m.allows(id)) break;
    QE_CHECK(m.accept(id));
  }
  qe::fuzz::sink(m.complete());
  return 0;
}
