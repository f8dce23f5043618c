// What every qrun mode shares: the loaded model (file, config, weight views, tokenizer), the context
// and batch it runs with, and the small output helpers (stdout for results, stderr for logs).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "cli/qrun/options.h"
#include "formats/error.h"
#include "formats/gguf_reader.h"
#include "model/config.h"
#include "model/run_state.h"
#include "tokenizer/tokenizer.h"
#include "model/weights.h"

namespace qe::cli {

using Clock = std::chrono::steady_clock;

struct Session {
  GgufFile file;  // the mapping the weight views point into: lives as long as the session
  model::Config config;
  model::Weights weights;
  tokenizer::Tokenizer tok;
  int n_threads = 1;
  double load_ms = 0;
};

// Opens and checks the model and its tokenizer. Held by pointer so the weight views never move.
// --numerics as the forward pass's setting.
model::Numerics numerics(const RunOptions& o);

Result<std::unique_ptr<Session>> open_session(const RunOptions& o, Clock::time_point t_start);

// The model line, the kernel/thread line and, with --verbose, the hyperparameters, on stderr.
void log_session(const RunOptions& o, const Session& s);

double ms_since(Clock::time_point t0);
Error usage(std::string reason);
// A -f file as llama.cpp reads it: the bytes, less the one trailing newline an editor adds.
Result<std::string> read_prompt_file(const std::string& path);
// Writes text to stdout at once, so the stream is visible token by token.
void emit(std::string_view text);
void print_timing(const char* what, double ms, int64_t n, const char* unit);

// The modes besides completion (run.cpp dispatches).
Status run_chat(const RunOptions& o, Session& s);
Status run_perplexity(const RunOptions& o, Session& s);

}  // namespace qe::cli
