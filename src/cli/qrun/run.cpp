// qrun's entry: checks the flags, loads the model, and runs a mode. Completion lives here: tokenize,
// prefill in batches, decode token by token, stream, report timings.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>

#include "cli/isa_choice.h"
#include "cli/qrun/options.h"
#include "cli/qrun/session.h"
#include "kernels/kernel_table.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/run_state.h"
#include "model/sampler.h"
#include "tokenizer/tokenizer.h"
#include "model/weights.h"

namespace qe::cli {
namespace {

// Flags that belong to one mode only are refused in the others, so nothing is silently ignored.
Status check_modes(const RunOptions& o) {
  const bool ppl = o.perplexity || o.kl_divergence;
  if (ppl && o.conversation)
    return usage("--perplexity / --kl-divergence and -cnv are separate modes; use one");
  if (o.kl_divergence && o.kl_divergence_base.empty())
    return usage("--kl-divergence needs --kl-divergence-base FILE (written by an earlier --perplexity run)");
  if (!ppl && !o.kl_divergence_base.empty())
    return usage("--kl-divergence-base needs --perplexity (to write it) or --kl-divergence (to read it)");
  if (!ppl && o.n_chunks != -1) return usage("--chunks needs --perplexity or --kl-divergence");
  if (o.n_chunks < -1 || o.n_chunks == 0)
    return usage(fmt::format("--chunks {} must be > 0 (or -1 = all)", o.n_chunks));
  if ((ppl || o.conversation) && (!o.token_ids.empty() || !o.dump_logits.empty()))
    return usage("--token-ids and --dump-logits are for completion mode only");
  if (!o.conversation && (!o.system_prompt.empty() || !o.chat_template.empty()))
    return usage("-sys and --chat-template need -cnv (chat mode)");
  if (o.kl_divergence && (!o.prompt.empty() || !o.prompt_file.empty()))
    return usage("--kl-divergence reads its tokens from --kl-divergence-base; drop -p / -f");
  return {};
}

Status run_completion(const RunOptions& o, Session& s);

}  // namespace

Status run(const RunOptions& o) {
  const Clock::time_point t_load = Clock::now();
  if (Status st = choose_isa(o.isa); !st) return st;
  if (!o.prompt.empty() && !o.prompt_file.empty()) return usage("-p and -f both give a prompt; use one");
  if (o.cache_type != "f16" && o.cache_type != "f32")
    return usage(fmt::format("--cache-type {} is not supported (f16, f32)", o.cache_type));
  if (o.n_threads < 0) return usage(fmt::format("-t {} must be >= 0", o.n_threads));
  if (o.n_ctx < 0) return usage(fmt::format("-c {} must be >= 0", o.n_ctx));
  if (o.n_ctx > (int64_t{1} << 24)) return usage(fmt::format("-c {} is too large", o.n_ctx));
  if (o.seed < -1 || o.seed > 0xFFFFFFFFLL)
    return usage(fmt::format("-s {} is not a 32-bit seed or -1", o.seed));
  if (Status st = check_modes(o); !st) return st;

  Result<std::unique_ptr<Session>> s = open_session(o, t_load);
  if (!s) return s.error();
  if (o.perplexity || o.kl_divergence) return run_perplexity(o, **s);
  if (o.conversation) return run_chat(o, **s);
  return run_completion(o, **s);
}

namespace {

Status run_completion(const RunOptions& o, Session& s) {
  const model::Config& c = s.config;
  const tokenizer::Tokenizer& tok = s.tok;
  const model::Weights& weights = s.weights;
  const int n_threads = s.n_threads;
  const int64_t n_ctx = o.n_ctx > 0 ? o.n_ctx : std::min<int64_t>(c.n_ctx_train, 4096);
  const int64_t n_batch = std::min(o.n_batch, n_ctx);

  // ---- Prompt
  std::vector<int32_t> prompt = o.token_ids;
  if (prompt.empty()) {
    std::string text = o.prompt;
    if (!o.prompt_file.empty()) {
      Result<std::string> t = read_prompt_file(o.prompt_file);
      if (!t) return t.error();
      text = std::move(*t);
    }
    prompt = tok.tokenize(text, /*add_special=*/true, /*parse_special=*/true);
  }
  if (prompt.empty())
    return usage("the prompt is empty (and the vocabulary adds no BOS token): give -p or -f");
  for (int32_t id : prompt)
    if (id < 0 || id >= c.n_vocab)
      return usage(fmt::format("token id {} is outside the vocabulary of {}", id, c.n_vocab));
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  // Named by where the prompt came from: the -f file, else the model whose tokenizer counted it.
  if (n_prompt > n_ctx)
    return Error{
        o.prompt_file.empty() ? o.model : o.prompt_file, "",
        fmt::format("the prompt is {} tokens, longer than the context of {} (raise -c)", n_prompt, n_ctx)};

  Result<model::KvCache> kv =
      model::KvCache::create(c, n_ctx, o.cache_type == "f32" ? GgmlType::F32 : GgmlType::F16);
  if (!kv) return kv.error();
  const bool dump = !o.dump_logits.empty();
  Result<model::RunState> state =
      model::RunState::create(c, weights.rope_freqs, n_batch, n_ctx, n_threads, dump);
  if (!state) return state.error();
  state->numerics = numerics(o);

  model::SamplerParams sp = o.sampling;
  sp.seed = o.seed >= 0 ? static_cast<uint32_t>(o.seed) : std::random_device{}();
  model::Sampler sampler(sp);

  const double load_ms = s.load_ms;
  log_session(o, s);
  fmt::print(stderr, "qrun: n_ctx = {}, n_batch = {}, kv cache {} ({:.1f} MiB), seed = {}\n", n_ctx, n_batch,
             o.cache_type, static_cast<double>(kv->bytes()) / 1048576.0, sp.seed);
  if (o.verbose) {
    fmt::print(stderr, "qrun: sampling: temp {}, top_k {}, top_p {}, min_p {}, repeat_penalty {} (last {})\n",
               sp.temp, sp.top_k, sp.top_p, sp.min_p, sp.repeat_penalty, sp.repeat_last_n);
    fmt::print(stderr, "qrun: prompt: {} tokens:", n_prompt);
    for (int32_t id : prompt) fmt::print(stderr, " {}", id);
    fmt::print(stderr, "\n");
  }

  std::unique_ptr<std::FILE, int (*)(std::FILE*)> dump_file(nullptr, &std::fclose);
  if (dump) {
    dump_file.reset(std::fopen(o.dump_logits.c_str(), "wb"));
    if (!dump_file) return Error{o.dump_logits, "", "cannot open for writing"};
  }

  // ---- Echo the prompt, as llama-cli does (control tokens such as BOS render as nothing).
  tokenizer::Utf8Stream out;
  for (int32_t id : prompt) {
    emit(out.push(tok.token_to_piece(id, /*special=*/false)));
    sampler.accept(id);  // llama.cpp's penalties see the prompt too
  }

  // ---- Prefill in batches of n_batch tokens (GEMM).
  const Clock::time_point t_prompt = Clock::now();
  std::span<const float> logits;
  for (int64_t p = 0; p < n_prompt; p += n_batch) {
    const int64_t n = std::min(n_batch, n_prompt - p);
    Result<std::span<const float>> r = model::forward(
        c, weights, *state, *kv,
        std::span<const int32_t>(prompt).subspan(static_cast<size_t>(p), static_cast<size_t>(n)), p);
    if (!r) return r.error();
    logits = *r;
    if (dump && std::fwrite(logits.data(), sizeof(float), logits.size(), dump_file.get()) != logits.size())
      return Error{o.dump_logits, "", "write failed"};
  }
  const double prompt_ms = ms_since(t_prompt);
  if (dump && std::fclose(dump_file.release()) != 0) return Error{o.dump_logits, "", "write failed"};
  logits = logits.last(static_cast<size_t>(c.n_vocab));

  // ---- Decode one token at a time (GEMV) until end of generation, -n or a full context.
  const Clock::time_point t_gen = Clock::now();
  double eval_ms = 0;
  int64_t n_eval = 0, n_gen = 0, pos = n_prompt;
  std::vector<int32_t> generated;  // for --verbose's log of the ids
  if (o.verbose) generated.reserve(static_cast<size_t>(n_ctx - n_prompt + 1));
  while (o.n_predict < 0 || n_gen < o.n_predict) {
    const int32_t id = sampler.sample(logits);
    sampler.accept(id);
    if (tok.is_eog(id)) break;
    emit(out.push(tok.token_to_piece(id, /*special=*/false)));
    if (o.verbose) generated.push_back(id);
    ++n_gen;
    if (o.n_predict >= 0 && n_gen >= o.n_predict) break;
    if (pos >= n_ctx) {
      fmt::print(stderr, "\nqrun: context full ({} tokens), stopping\n", n_ctx);
      break;
    }
    const Clock::time_point t_eval = Clock::now();
    Result<std::span<const float>> r =
        model::forward(c, weights, *state, *kv, std::span<const int32_t>(&id, 1), pos);
    if (!r) return r.error();
    eval_ms += ms_since(t_eval);
    ++n_eval;
    ++pos;
    logits = r->last(static_cast<size_t>(c.n_vocab));
  }
  emit(out.finish());
  const double gen_ms = ms_since(t_gen);
  emit("\n");

  if (o.verbose) {
    fmt::print(stderr, "\nqrun: generated: {} tokens:", generated.size());
    for (int32_t id : generated) fmt::print(stderr, " {}", id);
  }
  fmt::print(stderr, "\nqrun: {:>16} = {:10.2f} ms\n", "load time", load_ms);
  print_timing("prompt eval time", prompt_ms, n_prompt, "tokens");
  print_timing("eval time", eval_ms, n_eval, "runs  ");
  fmt::print(stderr, "qrun: {:>16} = {:10.2f} ms / {:5} tokens generated\n", "total time",
             load_ms + prompt_ms + gen_ms, n_gen);
  return {};
}

}  // namespace
}  // namespace qe::cli
