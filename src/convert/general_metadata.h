// What a model is — its name, organization, licence, languages, tags, base models, source URLs — lives
// in GGUF's `general.*` keys and, in a Hugging Face repository, in the YAML front matter of the model
// card (README.md). These move it between the two, so GGUF -> HF -> GGUF keeps every general.* key:
//
//   ---
//   model_name: "SmolLM2"          the card keys convert_hf_to_gguf.py (gguf-py's Metadata) reads back
//   organization: "HuggingFaceTB"  into the same general.* keys: model_name, author, version,
//   license: "apache-2.0"          organization, finetune, basename, description, size_label, license
//   language: ["en"]               (+ _name, _link), base_model, datasets, tags, language; HF's Hub
//                                  reads license, language, tags, base_model and datasets from them
//   gguf:                          every carried general.* key, exactly: a quoted string is a string,
//     general.name: "SmolLM2"      a list of quoted strings an array of strings, a plain integer a
//     general.base_model.count: 1  uint32 (gguf-py's type for counts; other plain text, from a card
//                                  edited by hand, a string); any other type is spelled
//     general.x: {type: "int64", value: -3}   {type: NAME, value: V} with GGUF's type names
//   ---
//
// A card without the `gguf:` block (any HF repository) is read as llama.cpp's convert_hf_to_gguf.py
// (gguf-py's Metadata) reads it: llama.cpp's own card keys (name, organization, finetune, basename,
// size_label, ... and their model_ forms), license (+ _name, _link), base_model and datasets (ids named
// as gguf-py's id_to_title names them), tags (+ pipeline_tag) and language become the general.* keys of
// the same meaning.
#pragma once

#include <string>
#include <vector>

#include "formats/error.h"
#include "formats/gguf_reader.h"

namespace qe::convert {

// The general.* keys a conversion carries, in the file's order: all but the ones the writer sets itself
// (architecture, type, file_type, quantization_version, alignment).
std::vector<GgufKv> carried_general_kvs(const std::vector<GgufKv>& metadata);

// README.md's YAML front matter (from the first "---" line to the closing one, both included, then a
// blank line) for these keys. A key whose type has no spelling here (an array of arrays) is left out
// with a warning.
std::string hf_front_matter(const std::vector<GgufKv>& general, std::vector<std::string>& warnings);

// The general.* keys of an HF model directory's README.md front matter (empty when there is no README
// or no front matter). A front matter that is not YAML, or HF keys of an unexpected shape, give a
// warning and are skipped (HF repositories carry all sorts of cards); a malformed `gguf:` block is an
// Error naming the file and key, since it was written to be read back exactly.
Result<std::vector<GgufKv>> general_kvs_from_hf_dir(const std::string& dir, std::vector<std::string>& warnings);
// The same from the front matter's text (between the "---" lines); `path` names it in messages.
Result<std::vector<GgufKv>> general_kvs_from_front_matter(const std::string& text, const std::string& path,
                                                          std::vector<std::string>& warnings);

}  // namespace qe::convert
