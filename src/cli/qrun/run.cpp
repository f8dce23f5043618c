// qrun's entry: checks the flags, opens the model and runs a mode. Completion lives here: the prompt
// (tokenized, or --token-ids), model::generate streaming it and the continuation to stdout, the
// timings to stderr.
#include <fmt/core.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cli/interrupt.h"
#include "cli/isa_choice.h"
#include "cli/qrun/common.h"
#include "cli/qrun/options.h"
#include "cli/sampling_flags.h"
#include "formats/atomic_file.h"
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
  if (o.conversation && o.no_conversation) return usage("-cnv and -no-cnv contradict each other; use one");
  if (o.conversation && (o.ignore_eos || o.no_display_prompt))
    return usage("--ignore-eos and --no-display-prompt are for completion mode, not -cnv");
  if (o.perplexity && !o.kl_divergence && !o.kl_divergence_base.empty() && !o.force &&
      std::filesystem::exists(o.kl_divergence_base))
    return Error{o.kl_divergence_base, "", "exists; use --force to overwrite it (or --kl-divergence to read it)"};
  return {};
}

// -ctk / -ctv are llama.cpp's names for the cache type; this engine keeps K and V in one type.
Status resolve_cache_type(RunOptions& o) {
  std::string_view flag = "--cache-type";
  if (!o.cache_type_k.empty() || !o.cache_type_v.empty()) {
    if (!o.cache_type_k.empty() && !o.cache_type_v.empty() && o.cache_type_k != o.cache_type_v)
      return usage(fmt::format("-ctk {} and -ctv {}: K and V must have the same cache type here", o.cache_type_k,
                               o.cache_type_v));
    flag = o.cache_type_k.empty() ? "-ctv" : "-ctk";
    o.cache_type = o.cache_type_k.empty() ? o.cache_type_v : o.cache_type_k;
  }
  if (o.cache_type != "f16" && o.cache_type != "f32")
    return usage(fmt::format("{} {} is not supported (f16, f32)", flag, o.cache_type));
  return {};
}

}  // namespace

Status run(const RunOptions& options) {
  const Clock::time_point t_load = Clock::now();
  RunOptions o = options;
  if (o.single_turn) o.conversation = true;  // llama-cli's -st is a one-message chat
  if (o.kl_divergence && (!o.prompt.empty() || !o.prompt_file.empty())) {
    // llama-perplexity takes -f with --kl-divergence and reads the base file's tokens anyway.
    fmt::print(stderr, "qrun: note: --kl-divergence scores the tokens saved in --kl-divergence-base; -p / -f ignored\n");
    o.prompt.clear();
    o.prompt_file.clear();
  }
  if (Status st = choose_isa(o.isa); !st) return st;
  if (!o.prompt.empty() && !o.prompt_file.empty()) return usage("-p and -f both give a prompt; use one");
  // As llama-cli (-e, on by default); llama-perplexity reads its text as it is.
  o.escape = o.escape && !o.perplexity && !o.kl_divergence;
  if (o.escape) {
    o.prompt = process_escapes(o.prompt);
    o.system_prompt = process_escapes(o.system_prompt);
  }
  if (Status st = resolve_cache_type(o); !st) return st;
  if (o.n_threads < 0) return usage(fmt::format("-t {} must be >= 0", o.n_threads));
  if (o.n_ctx < 0) return usage(fmt::format("-c {} must be >= 0", o.n_ctx));
  if (o.n_ctx > (int64_t{1} << 24)) return usage(fmt::format("-c {} is too large", o.n_ctx));
  if (o.seed < -1 || o.seed > 0xFFFFFFFFLL)
    return usage(fmt::format("-s {} is not a 32-bit seed or -1", o.seed));
  if (Status st = check_modes(o); !st) return st;

  Result<std::unique_ptr<model::Model>> m = model::open_model(o.model, model_options(o));
  if (!m) return to_flags(m.error());
  for (const std::string& w : (*m)->warnings) fmt::print(stderr, "qrun: warning: {}\n", w);
  if (Status st = check_logit_bias(o.sampling, (*m)->config.n_vocab, o.model); !st) return st;
  if (Status st = load_grammar(o.grammar, (*m)->tok, o.sampling); !st) return st;
  const double load_ms = ms_since(t_load);
  const int64_t n_ctx_train = (*m)->config.n_ctx_train;
  if (o.n_ctx > n_ctx_train)
    fmt::print(stderr, "qrun: warning: -c {} is more than the model's training context ({}): expect worse output "
               "past {} tokens\n", o.n_ctx, n_ctx_train, n_ctx_train);
  if (o.perplexity || o.kl_divergence) return run_perplexity(o, **m);
  if (o.conversation) return run_chat(o, **m, load_ms);
  return run_completion(o, **m, load_ms);
}

namespace {

// The stop reason as llama-cli prints it, on stderr after the text.
std::string_view stop_line(model::StopReason r) {
  switch (r) {
    case model::StopReason::eog:
      return "[end of text]";
    case model::StopReason::n_predict:
      return "[n_predict reached]";
    case model::StopReason::context_full:
      return "[context full]";
    case model::StopReason::callback:
      return "[interrupted]";
  }
  return "";
}

}  // namespace

Status run_completion(const RunOptions& o, const model::Model& m, double load_ms) {
  const int64_t n_ctx = o.n_ctx > 0 ? o.n_ctx : model::default_n_ctx(m.config);

  // ---- Prompt
  std::vector<int32_t> prompt = o.token_ids;
  if (prompt.empty()) {
    std::string text = o.prompt;
    if (!o.prompt_file.empty()) {
      Result<std::string> t = read_prompt_file(o.prompt_file);
      if (!t) return t.error();
      text = o.escape ? process_escapes(*t) : std::move(*t);
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
  if (o.ignore_eos) sp.ban(model::eog_ids(m));
  model::Sampler sampler(sp);

  log_model(o, m);
  fmt::print(stderr, "qrun: n_ctx = {}, n_batch = {}, kv cache {} ({:.1f} MiB), seed = {}\n", ctx->n_ctx(),
             ctx->n_batch(), o.cache_type, static_cast<double>(ctx->kv_cache().bytes()) / 1048576.0, sp.seed);
  if (o.verbose) {
    fmt::print(
        stderr,
        "qrun: sampling: temp {}, top_k {}, top_p {}, min_p {}, repeat_penalty {}, frequency_penalty {}, "
        "presence_penalty {} (last {}), {} logit biases\n",
        sp.temp, sp.top_k, sp.top_p, sp.min_p, sp.repeat_penalty, sp.frequency_penalty, sp.presence_penalty,
        sp.repeat_last_n, sp.logit_bias.size());
    fmt::print(stderr, "qrun: prompt: {} tokens:", prompt.size());
    for (int32_t id : prompt) fmt::print(stderr, " {}", id);
    fmt::print(stderr, "\n");
  }

  // Through a temporary renamed into place: a full disk or an error leaves no partial file.
  std::optional<AtomicFile> dump_file;
  if (dump) {
    Result<AtomicFile> f = AtomicFile::create(o.dump_logits, /*overwrite=*/true);
    if (!f) return f.error();
    dump_file.emplace(std::move(*f));
  }
  // --dump-logits: the raw f32 logits of every prompt position, batch by batch, then of each decode step.
  model::Context::LogitsSink sink;
  if (dump)
    sink = [&](std::span<const float> logits) -> Status {
      return dump_file->write(logits.data(), logits.size_bytes());
    };

  // The prompt is echoed, as llama-cli does (control tokens such as BOS render as nothing), then the
  // continuation streams until a stop condition or Ctrl-C.
  std::vector<int32_t> generated;  // for --verbose's log of the ids
  auto on_chunk = [&](const model::StreamChunk& c) {
    emit(c.text);
    if (o.verbose && !c.prompt && !c.stop) generated.push_back(c.id);
    return !interrupted();
  };
  Result<model::GenerateStats> r = model::generate(
      *ctx, sampler, prompt, {o.n_predict, /*echo_prompt=*/!o.no_display_prompt}, on_chunk, sink);
  if (!r) return to_flags(r.error());
  if (dump)
    if (Status s = dump_file->commit(); !s) return s;
  emit("\n");
  fmt::print(stderr, "{}\n", stop_line(r->stop));

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
