// qconvert --info: what is in a GGUF file, a safetensors file or a Hugging Face model directory.
#pragma once

#include <string>

#include "formats/error.h"

namespace qe::cli {

struct InfoOptions {
  std::string path;
  bool json = false;  // machine-readable: {"metadata", "metadata_types", "tensors"}
  bool hash = false;  // add "xxh3" per tensor
};

// Prints to stdout; a bad input is an Error (printed by main on one line).
Status print_info(const InfoOptions& opt);

}  // namespace qe::cli
