#include "cli/qrun/common.h"

#include <fmt/core.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "kernels/kernel_table.h"
#include "tokenizer/chat_template.h"

namespace qe::cli {

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

std::string process_escapes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 == text.size()) {
      out += text[i];
      continue;
    }
    const char c = text[++i];
    switch (c) {
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case '\'': case '"': case '\\': out += c; break;
      default:
        // \xHH with two hex digits is that byte; else (and any other letter) the backslash stays.
        if (c == 'x' && i + 2 < text.size() && hex(text[i + 1]) >= 0 && hex(text[i + 2]) >= 0) {
          out += static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2]));
          i += 2;
        } else {
          out += '\\';
          out += c;
        }
    }
  }
  return out;
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

model::ModelOptions model_options(const RunOptions& o) {
  model::ModelOptions m;
  m.numerics = o.numerics == "llama.cpp" ? model::Numerics::llamacpp : model::Numerics::fast;
  m.cache_type = o.cache_type == "f32" ? GgmlType::F32 : GgmlType::F16;
  m.repack = !o.no_repack;
  m.f16_as_bf16 = o.f16_as_bf16;
  m.n_threads = o.n_threads;
  return m;
}

uint32_t resolve_seed(const RunOptions& o) {
  return o.seed >= 0 ? static_cast<uint32_t>(o.seed) : std::random_device{}();
}

Error to_flags(Error e, std::initializer_list<FlagHint> mode) {
  for (const FlagHint& h : mode)
    if (h.option == e.option) return with_flags(std::move(e), mode);
  if (e.option == "chat_template" && e.field == "tokenizer.chat_template") {
    // The model's template is not one we render: naming one is the way past it.
    const std::string advice =
        fmt::format("; choose one with --chat-template ({})", tokenizer::chat_template_name_list());
    return with_flags(std::move(e), {{"chat_template", "", advice}});
  }
  return with_flags(std::move(e), {{"cache_type", "--cache-type", ""},
                                   {"numerics", "", "; use --numerics fast"},
                                   {"chat_template", "--chat-template", ""},
                                   {"kl_base", "--kl-divergence-base", ""},
                                   {"n_ctx", "", " (raise -c)"},
                                   {"n_batch", "-b", ""},
                                   {"n_threads", "-t", ""},
                                   {"n_chunks", "--chunks", ""},
                                   {"prompt", "", ": give -p or -f"}});
}

void log_model(const RunOptions& o, const model::Model& m) {
  const model::Config& c = m.config;
  fmt::print(stderr, "qrun: model {} ({}): {} layers, dim {}, {} heads / {} kv heads, ff {}, vocab {}{}\n",
             o.model, c.name.empty() ? "unnamed" : c.name, c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.n_ff,
             c.n_vocab, c.tied_embeddings ? ", tied embeddings" : "");
  fmt::print(stderr, "qrun: {}; {} threads\n", kernels::describe_isa(), m.n_threads());
  if (o.f16_as_bf16)
    fmt::print(stderr, "qrun: --f16-as-bf16: {} f16 matrices repacked as bf16 (lossy: mantissas rounded to 8 bits)\n",
               m.weights.f16_as_bf16);
  if (o.verbose)
    fmt::print(stderr, "qrun: rope: n_rot {}, freq_base {}, freq_scale {}{}; rms_eps {}\n", c.n_rot,
               c.rope_freq_base, c.rope_freq_scale, c.has_rope_freqs ? ", rope_freqs factors" : "",
               c.rms_eps);
}

}  // namespace qe::cli
