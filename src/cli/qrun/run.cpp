// qrun's entry: checks the flags, opens the model and runs a mode. Completion lives here: the prompt
// (tokenized, or --token-ids), model::generate streaming it and the continuation to stdout, the
// timings to stderr.
#include <fmt/core.h>

#include <cstdio>
#include <memory>

#include "cli/isa_choice.h"
#include "cli/qrun/common.h"
#include "cli/qrun/options.h"
#include "model/context.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/sampler.h"

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

  Result<std::unique_ptr<model::Model>> m = model::open_model(o.model, model_options(o));
  if (!m) return to_flags(m.error());
  const double load_ms = ms_since(t_load);
  if (o.perplexity || o.kl_divergence) return run_perplexity(o, **m);
  if (o.conversation) return run_chat(o, **m, load_ms);
  return run_completion(o, **m, load_ms);
}

Status run_completion(const RunOptions& o, const model::Model& m, double load_ms) {
  const int64_t n_ctx = o.n_ctx > 0 ? o.n_ctx : model::default_n_ctx(m.config);

  // ---- Prompt
  std::vector<int32_t> prompt = o.token_ids;
  if (prompt.empty()) {
    std::string text = o.prompt;
    if (!o.prompt_file.empty()) {
      Result<std::string> t = read_prompt_file(o.prompt_file);
      if (!t) return t.error();
      text = std::move(*t);
    }
    prompt = model::tokenize_prompt(m, text);
  }
  if (Status st = model::check_prompt(m, prompt, n_ctx); !st) {
    Error e = st.error();
    // A prompt too long is named by where it came from: the -f file, else the model whose tokenizer
    // counted it.
    if (e.option == "n_ctx") e.file = o.prompt_file.empty() ? o.model : o.prompt_file;
    return to_flags(std::move(e));
  }

  const bool dump = !o.dump_logits.empty();
  Result<model::Context> ctx = model::Context::create(m, {n_ctx, o.n_batch, /*all_logits=*/dump});
  if (!ctx) return to_flags(ctx.error());
  model::SamplerParams sp = o.sampling;
  sp.seed = resolve_seed(o);
  model::Sampler sampler(sp);

  log_model(o, m);
  fmt::print(stderr, "qrun: n_ctx = {}, n_batch = {}, kv cache {} ({:.1f} MiB), seed = {}\n", ctx->n_ctx(),
             ctx->n_batch(), o.cache_type, static_cast<double>(ctx->kv_cache().bytes()) / 1048576.0, sp.seed);
  if (o.verbose) {
    fmt::print(stderr, "qrun: sampling: temp {}, top_k {}, top_p {}, min_p {}, repeat_penalty {} (last {})\n",
               sp.temp, sp.top_k, sp.top_p, sp.min_p, sp.repeat_penalty, sp.repeat_last_n);
    fmt::print(stderr, "qrun: prompt: {} tokens:", prompt.size());
    for (int32_t id : prompt) fmt::print(stderr, " {}", id);
    fmt::print(stderr, "\n");
  }

  std::unique_ptr<std::FILE, int (*)(std::FILE*)> dump_file(nullptr, &std::fclose);
  if (dump) {
    dump_file.reset(std::fopen(o.dump_logits.c_str(), "wb"));
    if (!dump_file) return Error{o.dump_logits, "", "cannot open for writing"};
  }
  // --dump-logits: the raw f32 logits of every prompt position, batch by batch.
  model::Context::LogitsSink sink;
  if (dump)
    sink = [&](std::span<const float> logits) -> Status {
      if (std::fwrite(logits.data(), sizeof(float), logits.size(), dump_file.get()) != logits.size())
        return Error{o.dump_logits, "", "write failed"};
      return {};
    };

  // The prompt is echoed, as llama-cli does (control tokens such as BOS render as nothing), then the
  // continuation streams.
  std::vector<int32_t> generated;  // for --verbose's log of the ids
  auto on_chunk = [&](const model::StreamChunk& c) {
    if (c.stop == model::StopReason::context_full)
      fmt::print(stderr, "\nqrun: context full ({} tokens), stopping\n", ctx->n_ctx());
    emit(c.text);
    if (o.verbose && !c.prompt && !c.stop) generated.push_back(c.id);
    return true;
  };
  Result<model::GenerateStats> r =
      model::generate(*ctx, sampler, prompt, {o.n_predict, /*echo_prompt=*/true}, on_chunk, sink);
  if (!r) return to_flags(r.error());
  if (dump && std::fclose(dump_file.release()) != 0) return Error{o.dump_logits, "", "write failed"};
  emit("\n");

  if (o.verbose) {
    fmt::print(stderr, "\nqrun: generated: {} tokens:", generated.size());
    for (int32_t id : generated) fmt::print(stderr, " {}", id);
  }
  fmt::print(stderr, "\nqrun: {:>16} = {:10.2f} ms\n", "load time", load_ms);
  print_timing("prompt eval time", r->prompt_ms, r->n_prompt, "tokens");
  print_timing("eval time", r->eval_ms, r->n_eval, "runs  ");
  fmt::print(stderr, "qrun: {:>16} = {:10.2f} ms / {:5} tokens generated\n", "total time",
             load_ms + r->prompt_ms + r->gen_ms, r->n_gen);
  return {};
}

}  // namespace qe::cli
