// libFuzzer target: the SentencePiece tokenizer.model reader (parse_sentencepiece_model, our own
// protobuf wire-format decoder) on arbitrary bytes: a model or an Error, never a crash or an
// out-of-bounds read. Seeds: tests/fuzz/corpus/spm_model (make_fuzz_corpus.py: models trained by
// sentencepiece, BPE and Unigram, with and without byte fallback).
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_common.h"
#include "tokenizer/sentencepiece_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qe::Result<qe::tokenizer::SpmModel> m =
      qe::tokenizer::parse_sentencepiece_model(std::span(data, size), "tokenizer.model");
  if (!m) {
    qe::fuzz::sink(m.error().message().size());
    return 0;
  }
  QE_CHECK(!m->pieces.empty());
  uint64_t sum =
      m->normalizer_name.size() + static_cast<uint64_t>(m->model_type + m->unk_id + m->bos_id + m->eos_id);
  for (const qe::tokenizer::SpmPiece& p : m->pieces) {
    QE_CHECK(static_cast<int32_t>(p.type) >= 1 && static_cast<int32_t>(p.type) <= 6);
    sum += p.piece.size() + static_cast<uint64_t>(p.score != 0.0f);
  }
  qe::fuzz::sink(sum);
  return 0;
}
