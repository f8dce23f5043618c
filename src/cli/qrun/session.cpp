#include "cli/qrun/session.h"

#include <fmt/core.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "kernels/kernel_table.h"
#include "kernels/threads.h"
#include "model/config.h"
#include "model/forward.h"

namespace qe::cli {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

Error usage(std::string reason) {
  return Error{"", "", std::move(reason)};
}

Result<std::string> read_prompt_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{path, "", "cannot open the prompt file"};
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  // llama.cpp drops the one trailing newline an editor adds.
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

void emit(std::string_view text) {
  if (text.empty()) return;
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

void print_timing(const char* what, double ms, int64_t n, const char* unit) {
  fmt::print(stderr,
             "qrun: {:>16} = {:10.2f} ms / {:5} {} ({:8.2f} ms per token, {:8.2f} tokens per second)\n", what,
             ms, n, unit, n > 0 ? ms / static_cast<double>(n) : 0.0,
             ms > 0 ? 1e3 * static_cast<double>(n) / ms : 0.0);
}

model::Numerics numerics(const RunOptions& o) {
  return o.numerics == "llama.cpp" ? model::Numerics::llamacpp : model::Numerics::fast;
}

Result<std::unique_ptr<Session>> open_session(const RunOptions& o, Clock::time_point t_start) {
  Result<GgufFile> file = GgufFile::open(o.model);
  if (!file) return file.error();
  Result<model::Config> config = model::load_config(*file);
  if (!config) return config.error();
  const bool repack = !o.no_repack && o.numerics == "fast";
  Result<model::Weights> weights = model::load_weights(*file, *config, /*interleave=*/repack);
  if (!weights) return weights.error();
  if (Status st = model::check_numerics(*weights, numerics(o), o.cache_type == "f32" ? GgmlType::F32 : GgmlType::F16);
      !st)
    return Error{o.model, st.error().field, st.error().reason};
  Result<tokenizer::Tokenizer> tok = tokenizer::Tokenizer::from_gguf(*file);
  if (!tok) return tok.error();
  if (tok->n_vocab() != config->n_vocab)
    return Error{
        o.model, "tokenizer.ggml.tokens",
        fmt::format("{} tokens, but token_embd.weight has {} rows", tok->n_vocab(), config->n_vocab)};
  // Moving the GgufFile keeps its mapping (and so the weight views) where it is.
  auto s = std::unique_ptr<Session>(
      new Session{std::move(*file), std::move(*config), std::move(*weights), std::move(*tok), 1, 0});
  s->n_threads = o.n_threads > 0 ? o.n_threads : kernels::default_thread_count();
  s->load_ms = ms_since(t_start);
  return s;
}

void log_session(const RunOptions& o, const Session& s) {
  const model::Config& c = s.config;
  fmt::print(stderr, "qrun: model {} ({}): {} layers, dim {}, {} heads / {} kv heads, ff {}, vocab {}{}\n",
             o.model, c.name.empty() ? "unnamed" : c.name, c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.n_ff,
             c.n_vocab, c.tied_embeddings ? ", tied embeddings" : "");
  fmt::print(stderr, "qrun: {}; {} threads\n", kernels::describe_isa(), s.n_threads);
  if (o.verbose)
    fmt::print(stderr, "qrun: rope: n_rot {}, freq_base {}, freq_scale {}{}; rms_eps {}\n", c.n_rot,
               c.rope_freq_base, c.rope_freq_scale, c.has_rope_freqs ? ", rope_freqs factors" : "",
               c.rms_eps);
}

}  // namespace qe::cli
