// Human-readable rendering of the --info JSON (one schema for GGUF, safetensors and HF directories).
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace qe::cli {

// `title` is the first line ("PATH: GGUF v3"); `j` follows the --info JSON schema.
void print_info_table(std::FILE* out, const std::string& title, const nlohmann::json& j);

}  // namespace qe::cli
