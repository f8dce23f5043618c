// A reader for SentencePiece's `tokenizer.model` (sentencepiece_model.proto, ModelProto), enough of it
// to convert a tokenizer to GGUF: the pieces with score and type, the special ids of the trainer spec
// and the normalizer flags. A small protobuf wire-format decoder of our own, so the converter needs no
// libprotobuf/libsentencepiece; the file is hostile input (every length checked against the bytes left).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "formats/error.h"

namespace qe::tokenizer {

// ModelProto.SentencePiece.Type; the numbers are on disk (and, by design, equal GGUF's token types).
enum class SpmPieceType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

struct SpmPiece {
  std::string piece;
  float score = 0.0f;
  SpmPieceType type = SpmPieceType::kNormal;
};

struct SpmModel {
  std::vector<SpmPiece> pieces;
  int32_t model_type = 1;  // TrainerSpec.model_type: 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR
  bool byte_fallback = false;
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;  // TrainerSpec defaults; -1 means none
  bool add_dummy_prefix = true;                             // NormalizerSpec defaults
  bool remove_extra_whitespaces = true;
  std::string normalizer_name;  // "nmt_nfkc", "identity", ...
};

// Parses a serialized ModelProto. `file` names it in errors ("tokenizer.model: pieces[12].type: ...").
Result<SpmModel> parse_sentencepiece_model(std::span<const uint8_t> bytes, const std::string& file);

}  // namespace qe::tokenizer
