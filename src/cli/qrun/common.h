// What every qrun mode shares: flags -> the engine's options, the engine's errors -> flags, and the
// output helpers (stdout for results, stderr for logs). The work itself is the engine's (model/*.h).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "cli/flag_errors.h"
#include "cli/qrun/options.h"
#include "formats/error.h"
#include "model/model.h"
#include "model/timing.h"

namespace qe::cli {

using model::Clock;
using model::ms_since;

Error usage(std::string reason);
// A -f file as llama.cpp reads it: the bytes, less the one trailing newline an editor adds.
Result<std::string> read_prompt_file(const std::string& path);

// llama-cli's escapes in prompts (its -e, on by default): \n \r \t \' \" \\ and \xHH become the
// characters; any other backslash stays as it is.
std::string process_escapes(std::string_view text);
// Writes text to stdout at once, so the stream is visible token by token.
void emit(std::string_view text);
void print_timing(const char* what, double ms, int64_t n, const char* unit);

model::ModelOptions model_options(const RunOptions& o);
uint32_t resolve_seed(const RunOptions& o);  // -s, or a random one for -1

// The engine's error in qrun's words: the flag for the API option it names. `mode` hints (the same
// option can want different words in different modes) take precedence over the common ones.
Error to_flags(Error e, std::initializer_list<FlagHint> mode = {});

// The model line, the kernel/thread line and, with --verbose, the hyperparameters, on stderr.
void log_model(const RunOptions& o, const model::Model& m);

// The modes (run.cpp checks the flags, opens the model and dispatches).
Status run_completion(const RunOptions& o, const model::Model& m, double load_ms);
Status run_chat(const RunOptions& o, const model::Model& m, double load_ms);
Status run_perplexity(const RunOptions& o, const model::Model& m);

}  // namespace qe::cli
