// Tokenizer conversion between a Hugging Face model directory (tokenizer.json / tokenizer.model,
// tokenizer_config.json, generation_config.json) and GGUF `tokenizer.*` metadata, in both directions.
// Import writes the keys the way llama.cpp's convert_hf_to_gguf.py does, so a GGUF we convert
// tokenizes like one llama.cpp converted; export writes files HF `tokenizers` loads to the same ids
// as our GGUF tokenizer (src/tokenizer/tokenizer.h).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/error.h"
#include "formats/gguf_reader.h"  // qe::GgufKv {std::string key; GgufValue value;}, qe::GgufFile

namespace qe::tokenizer {

// Reads the tokenizer of a Hugging Face model directory: tokenizer.json (byte-level BPE) or
// tokenizer.model (SentencePiece), plus tokenizer_config.json (chat_template, add_bos_token/add_eos_token,
// bos/eos/pad/unk token names) and generation_config.json (bos/eos ids, eos may be a list), and returns
// the GGUF `tokenizer.*` key/values exactly as llama.cpp's convert_hf_to_gguf.py writes them
// (tokenizer.ggml.model, .pre, .tokens, .token_type, .merges, .scores (SPM), .bos_token_id, .eos_token_id,
// .unknown_token_id, .padding_token_id, .add_bos_token, .add_eos_token, tokenizer.chat_template ...).
// Warnings (e.g. unknown pre-tokenizer: say what was assumed) are appended to `warnings`.
// Errors name the file and the field (qe::Error{file, field, reason}).
Result<std::vector<GgufKv>> hf_tokenizer_to_gguf(const std::string& model_dir, std::vector<std::string>& warnings);

// The files of a model directory hf_tokenizer_to_gguf reads, as their bytes (nullopt: absent); `dir`
// names them in messages ("DIR/tokenizer.json: ..."). Reading and converting are apart so that the
// conversion can run on bytes that never were files (the fuzz target).
struct HfTokenizerSources {
  std::string dir;
  std::optional<std::string> tokenizer_json, tokenizer_config_json, config_json, generation_config_json,
      added_tokens_json, tokenizer_model, chat_template_jinja, chat_template_json;

  // The file names above, and the member that holds one (nullptr for a name the importer does not read).
  static const std::array<std::string_view, 8> kFileNames;
  std::optional<std::string>* file(std::string_view name);
};
Result<HfTokenizerSources> read_hf_tokenizer_sources(const std::string& model_dir);
Result<std::vector<GgufKv>> hf_tokenizer_to_gguf(const HfTokenizerSources& src, std::vector<std::string>& warnings);

struct HfTokenizerFiles {
  nlohmann::ordered_json tokenizer_json;         // tokenizer.json
  nlohmann::ordered_json tokenizer_config_json;  // tokenizer_config.json (chat_template, bos/eos, add_bos...)
};

// Builds Hugging Face tokenizer files from a GGUF's vocabulary so that HF `tokenizers` loading the
// produced tokenizer.json gives the same ids as our GGUF tokenizer (src/tokenizer/tokenizer.h) on the same text.
Result<HfTokenizerFiles> gguf_tokenizer_to_hf(const GgufFile& gguf);

}  // namespace qe::tokenizer
