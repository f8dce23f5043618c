// llama-quantize's positional form, `llama-quantize [options] IN [OUT] TYPE [NTHREADS]` (its
// tools/quantize/quantize.cpp): qconvert IN OUT TYPE [NTHREADS] is qconvert IN -o OUT --type TYPE
// -t NTHREADS, and qconvert IN TYPE [NTHREADS] writes llama-quantize's default name,
// ggml-model-<TYPE>.gguf beside IN.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "convert/types.h"
#include "formats/error.h"

namespace qe::cli {

struct QuantizeType {
  convert::FileType type;
  std::string name;  // llama-quantize's name for it (its QUANT_OPTIONS entry): the default output's
};

// TYPE as llama-quantize reads it (try_parse_ftype): a file type's name, any case (Q4_K_M, q8_0, the
// alias Q4_K), or its LLAMA_FTYPE number (2 = Q4_0, 7 = Q8_0); nullopt otherwise.
std::optional<QuantizeType> parse_quantize_type(std::string_view s);

// Gives positionals 2.. (OUT, TYPE, NTHREADS) to the -o, --type and -t options of `app`, as if they had
// been flags; a flag that says otherwise is an error. positionals[0] is the input.
Status apply_positionals(CLI::App& app, const std::vector<std::string>& positionals);

}  // namespace qe::cli
