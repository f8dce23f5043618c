// How a byte-level BPE pre-tokenizer is named in GGUF (`tokenizer.ggml.pre`) and spelled in a Hugging
// Face tokenizer.json, shared by the importer and the exporter (src/tokenizer/hf_tokenizer.h).
//
// llama.cpp's convert_hf_to_gguf.py names the pre-tokenizer by hashing the ids HF gives for a fixed
// check text (get_vocab_base_pre). We cannot run HF in C++, so we read the pre_tokenizer JSON into the
// list of regular expressions it applies, keep the `tokenizer.ggml.pre` names whose expressions (and
// ignore_merges) are the same in our runtime (model/pretokenize.h), and then hash the ids OUR tokenizer
// gives for the check text to pick the one name llama.cpp would have written.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace qe::tokenizer {

// The check text of llama.cpp's get_vocab_base_pre, byte for byte.
std::string_view pre_check_text();

// SHA-256 of `data` as 64 lowercase hex digits.
std::string sha256_hex(std::string_view data);

// The `tokenizer.ggml.pre` name llama.cpp writes for a check-text hash, restricted to names our runtime
// knows; nullopt when none.
std::optional<std::string> pre_name_for_hash(std::string_view hex);

// The regular expressions (in our runtime's PCRE spelling) a tokenizer.json pre_tokenizer applies
// before its final ByteLevel step, or nullopt when its structure is not one we can express (then
// `why` says what was not understood). `byte_level_prefix_space` is set from ByteLevel.add_prefix_space.
std::optional<std::vector<std::string>> hf_pre_tokenizer_patterns(const nlohmann::ordered_json& pre, std::string& why,
                                                                  bool& byte_level_prefix_space);

// Runtime pre-tokenizer names whose patterns equal `patterns` and whose ignore_merges equals
// `ignore_merges`, the one to assume first (gpt-2, smollm, llama-bpe, smaug-bpe, qwen2, default...).
std::vector<std::string> pre_names_for_patterns(const std::vector<std::string>& patterns, bool ignore_merges);

// One representative name per distinct pattern list our runtime knows (for hashing when the structure
// is not recognised).
std::vector<std::string> pre_family_representatives();

// The tokenizer.json pre_tokenizer for a runtime pre-tokenizer name (nullopt when unknown): the native
// HF form for GPT-2 (ByteLevel with its regex) and SmolLM/StarCoder (Digits + ByteLevel), otherwise a
// Sequence of Split(Isolated) with our exact expressions followed by ByteLevel(use_regex=false).
std::optional<nlohmann::ordered_json> hf_pre_tokenizer_for(std::string_view pre);

// What choose_bpe_pre needs of the vocabulary being imported, to tokenize the check text.
struct BpeCheckVocab {
  const std::vector<std::string>& tokens;
  const std::vector<int32_t>& types;
  const std::vector<std::string>& merges;
  int64_t bos, eos;  // -1 when none
  bool add_bos, add_eos;
};

// The `tokenizer.ggml.pre` for a byte-level BPE tokenizer.json (`path` names it in warnings): the names
// whose expressions equal the pre_tokenizer's, narrowed by the check-text hash; failing that, the hash
// tried with each expression family; failing that, an assumption, with a warning that names it.
std::string choose_bpe_pre(const nlohmann::ordered_json& tokenizer_json, const std::string& path,
                           const BpeCheckVocab& vocab, std::vector<std::string>& warnings);

}  // namespace qe::tokenizer
