// qrun --perplexity / --kl-divergence: llama-perplexity's perplexity() and kl_divergence(), run by
// model::ppl::PerplexityRun (the method is described in model/perplexity_run.h).
//
// --kl-divergence-base FILE with --perplexity writes llama.cpp's own file (model/kl_base_file.h), so
// files are interchangeable with llama-perplexity's in both directions; --kl-divergence reads one and
// compares this model with it.
//
// Streams: results on stdout (the running "[1]x,[2]y," list, the final estimate, the KL tables),
// progress and timings on stderr. llama-perplexity prints the same lines but sends its "Final estimate"
// line through LOG_INF, i.e. to stderr; ours is on stdout so `qrun ... 2>/dev/null | tail -1` is the
// result. The final line is exactly llama.cpp's "Final estimate: PPL = %.4f +/- %.5f".
#include <fmt/core.h>

#include <cstdio>
#include <vector>

#include "cli/interrupt.h"
#include "cli/qrun/common.h"
#include "model/perplexity.h"
#include "model/perplexity_run.h"

namespace qe::cli {
namespace {

using model::ppl::percentile;

void print_kl_row(int64_t chunk, const model::ppl::KlStats& k) {
  const model::ppl::KlSummary r = model::ppl::summarize(k);
  fmt::print(
      "{:4}    {:9.4f} ± {:9.4f}    {:10.5f} ± {:10.5f}    {:10.5f} ± {:10.5f}    {:6.3f} ± {:6.3f} %"
      "    {:6.3f} ± {:6.3f} %\n",
      chunk, r.ppl.value, r.ppl.error, r.log_ppl_ratio.value, r.log_ppl_ratio.error, r.kld.value, r.kld.error,
      100.0 * r.p_diff_rms.value, 100.0 * r.p_diff_rms.error, 100.0 * r.same_top.value,
      100.0 * r.same_top.error);
  std::fflush(stdout);
}

// llama-perplexity's closing statistics, line for line.
void print_kl_summary(const model::ppl::PerplexityResult& res) {
  const model::ppl::KlSummary r = model::ppl::summarize(res.kl);
  const std::vector<float>& kld = res.kld_sorted;
  const std::vector<float>& p_diff = res.p_diff_sorted;
  fmt::print("====== Perplexity statistics ======\n");
  fmt::print("Mean PPL(Q)                   : {:10.6f} ± {:10.6f}\n", r.ppl.value, r.ppl.error);
  fmt::print("Mean PPL(base)                : {:10.6f} ± {:10.6f}\n", r.ppl_base.value, r.ppl_base.error);
  fmt::print("Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2f}%\n", 100.0 * r.log_ppl_correlation);
  fmt::print("Mean ln(PPL(Q)/PPL(base))     : {:10.6f} ± {:10.6f}\n", r.log_ppl_ratio.value,
             r.log_ppl_ratio.error);
  fmt::print("Mean PPL(Q)/PPL(base)         : {:10.6f} ± {:10.6f}\n", r.ppl_ratio.value, r.ppl_ratio.error);
  fmt::print("Mean PPL(Q)-PPL(base)         : {:10.6f} ± {:10.6f}\n\n", r.ppl_diff.value, r.ppl_diff.error);
  fmt::print("====== KL divergence statistics ======\n");
  fmt::print("Mean    KLD: {:10.6f} ± {:10.6f}\n", r.kld.value, r.kld.error);
  fmt::print("Maximum KLD: {:10.6f}\n", kld.back());
  for (float f : {0.999f, 0.990f, 0.950f, 0.900f})
    fmt::print("{:4.1f}%   KLD: {:10.6f}\n", 100.0f * f, percentile(kld, f));
  fmt::print("Median  KLD: {:10.6f}\n", model::ppl::median(kld));
  for (float f : {0.100f, 0.050f, 0.010f, 0.001f})
    fmt::print("{:4.1f}%   KLD: {:10.6f}\n", 100.0f * f, percentile(kld, f));
  fmt::print("Minimum KLD: {:10.6f}\n\n", kld.front());
  fmt::print("====== Token probability statistics ======\n");
  fmt::print("Mean    Δp: {:6.3f} ± {:5.3f} %\n", 100.0 * r.p_diff.value, 100.0 * r.p_diff.error);
  fmt::print("Maximum Δp: {:6.3f}%\n", 100.0 * p_diff.back());
  for (float f : {0.999f, 0.990f, 0.950f, 0.900f, 0.750f})
    fmt::print("{:4.1f}%   Δp: {:6.3f}%\n", 100.0f * f, 100.0 * percentile(p_diff, f));
  fmt::print("Median  Δp: {:6.3f}%\n", 100.0 * model::ppl::median(p_diff));
  for (float f : {0.250f, 0.100f, 0.050f, 0.010f, 0.001f})
    fmt::print("{:4.1f}%   Δp: {:6.3f}%\n", 100.0f * f, 100.0 * percentile(p_diff, f));
  fmt::print("Minimum Δp: {:6.3f}%\n", 100.0 * p_diff.front());
  fmt::print("RMS Δp    : {:6.3f} ± {:5.3f} %\n", 100.0 * r.p_diff_rms.value, 100.0 * r.p_diff_rms.error);
  fmt::print("Same top p: {:6.3f} ± {:5.3f} %\n", 100.0 * r.same_top.value, 100.0 * r.same_top.error);
  std::fflush(stdout);
}

// The run for the mode: the text's tokens, or (KL) those the base run scored, with its context size.
Result<model::ppl::PerplexityRun> start_run(const RunOptions& o, const model::Model& m) {
  using model::ppl::PerplexityRun;
  const model::ppl::PerplexityParams params{o.n_ctx, o.n_batch, o.n_chunks, o.kl_divergence_base};
  if (o.kl_divergence) {
    Result<PerplexityRun> run = PerplexityRun::kl_divergence(m, params);
    if (run && o.n_ctx > 0 && o.n_ctx != run->plan().n_ctx)
      fmt::print(stderr, "qrun: -c {} ignored: {} was computed with n_ctx = {}\n", o.n_ctx,
                 o.kl_divergence_base, run->plan().n_ctx);
    return run;
  }
  std::string text = o.prompt;
  if (!o.prompt_file.empty()) {
    Result<std::string> t = read_prompt_file(o.prompt_file);
    if (!t) return t.error();
    text = std::move(*t);
  }
  if (text.empty()) return usage("--perplexity needs a text: -f FILE (or -p TEXT)");
  const Clock::time_point t0 = Clock::now();
  std::vector<int32_t> tokens = model::ppl::tokenize_text(m, text);
  fmt::print(stderr, "qrun: perplexity: tokenization took {:g} ms\n", ms_since(t0));
  return PerplexityRun::perplexity(m, std::move(tokens), params);
}

}  // namespace

Status run_perplexity(const RunOptions& o, const model::Model& m) {
  const bool kl = o.kl_divergence;
  auto flags = [&](Error e) {
    if (e.option == "text" && e.file.empty()) e.file = o.prompt_file;  // too short: the -f file's
    return to_flags(std::move(e), {{"n_ctx", "-c", ""}});
  };
  Result<model::ppl::PerplexityRun> run = start_run(o, m);
  if (!run) return flags(run.error());
  const model::ppl::ChunkPlan& plan = run->plan();

  log_model(o, m);
  fmt::print(
      stderr,
      "qrun: {}: {} tokens, {} chunks, n_ctx = {}, n_batch = {}, kv cache {}, scoring {} tokens per chunk\n",
      kl ? "kl-divergence" : "perplexity", plan.n_tokens, plan.n_chunk, plan.n_ctx, plan.n_batch,
      o.cache_type, plan.n_scored);
  if (kl) {
    fmt::print(
        "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS"
        "            Same top p\n");
    std::fflush(stdout);
  }

  Result<model::ppl::PerplexityResult> res = run->run([&](const model::ppl::ChunkProgress& p) {
    if (p.chunk == 1) {
      const double sec = p.ms / 1e3;
      fmt::print(stderr, "qrun: {:.2f} seconds per pass - ETA {:.2f} minutes\n", sec,
                 sec * static_cast<double>(p.n_chunk) / 60.0);
    }
    if (kl) {
      print_kl_row(p.chunk, p.kl);
    } else {
      fmt::print("[{}]{:.4f},", p.chunk, p.ppl.ppl());  // llama-perplexity's running estimate
      std::fflush(stdout);
    }
    return !interrupted();  // Ctrl-C: the figures of the chunks scored so far
  });
  if (!res) return flags(res.error());
  fmt::print("\n");
  std::fflush(stdout);
  if (res->n_chunk_done < plan.n_chunk) {
    fmt::print(stderr, "qrun: interrupted: {} of {} chunks scored{}\n", res->n_chunk_done, plan.n_chunk,
               o.kl_divergence_base.empty() || kl ? "" : "; the KL base file was not written");
  }

  if (kl) {
    // llama.cpp prints no statistics over fewer than 100 positions.
    if (res->kl.count >= 100)
      print_kl_summary(*res);
    else
      fmt::print(stderr, "qrun: only {} scored positions: no statistics (at least 100)\n", res->kl.count);
  } else {
    const double err = res->ppl.ppl_error();
    if (err < 0) return Error{"", "perplexity", "unexpected negative standard deviation of log(prob)"};
    fmt::print("Final estimate: PPL = {:.4f} +/- {:.5f}\n", res->ppl.ppl(), err);
    std::fflush(stdout);
  }
  print_timing("eval time", res->total_ms, res->n_evaluated, "tokens");
  if (!res->saved_base.empty())
    fmt::print(stderr, "qrun: saved the log-probabilities of {} chunks to {}\n", res->n_chunk_done,
               o.kl_divergence_base);
  return {};
}

}  // namespace qe::cli
