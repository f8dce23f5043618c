// qrun --perplexity / --kl-divergence: llama-perplexity's perplexity() and kl_divergence() methods
// (tools/perplexity/perplexity.cpp).
//
//   * The text (-f or -p) is tokenized whole, with BOS when the vocabulary adds it, and cut into
//     n_chunk = n_tokens / n_ctx chunks (--chunks caps it); at least 2 * n_ctx tokens are required.
//   * Each chunk runs from an empty cache, its first token replaced by BOS when the vocabulary adds BOS.
//   * Only the second half is scored: positions first = n_ctx/2 .. n_ctx-2 predict their next token,
//     n_ctx - 1 - first tokens per chunk, so every scored token has at least n_ctx/2 tokens of context.
//   * Only those positions need logits: the chunk is evaluated in batches cut at `first`, and the
//     output projection runs for all tokens of a batch (RunState::all_logits) only from there on.
//
// --kl-divergence-base FILE with --perplexity writes llama.cpp's own file ("_logits_", int32 n_ctx,
// n_vocab, n_chunk, the n_chunk * n_ctx tokens, then per scored position a row of 16-bit log-probs,
// see model/perplexity.h), so files are interchangeable with llama-perplexity's in both directions.
// --kl-divergence reads one, runs its tokens through this model with its n_ctx, and compares.
//
// Streams: results on stdout (the running "[1]x,[2]y," list, the final estimate, the KL tables),
// progress and timings on stderr. llama-perplexity prints the same lines but sends its "Final estimate"
// line through LOG_INF, i.e. to stderr; ours is on stdout so `qrun ... 2>/dev/null | tail -1` is the
// result. The final line is exactly llama.cpp's "Final estimate: PPL = %.4f +/- %.5f".
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <vector>

#include "cli/qrun/session.h"
#include "formats/atomic_file.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/perplexity.h"
#include "model/run_state.h"

namespace qe::cli {
namespace {

constexpr char kMagic[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};

// A --kl-divergence-base file opened for reading: the header and tokens now, the rows chunk by chunk.
struct BaseFile {
  std::ifstream in;
  int32_t n_ctx = 0, n_vocab = 0, n_chunk = 0;
  std::vector<int32_t> tokens;  // n_chunk * n_ctx
};

Result<BaseFile> open_base(const std::string& path) {
  BaseFile b;
  b.in.open(path, std::ios::binary);
  if (!b.in) return Error{path, "", "cannot open the --kl-divergence-base file"};
  char magic[8];
  if (!b.in.read(magic, 8) || std::memcmp(magic, kMagic, 8) != 0)
    return Error{path, "offset 0", "not a llama-perplexity logits file (no \"_logits_\" magic)"};
  int32_t h[3];
  if (!b.in.read(reinterpret_cast<char*>(h), sizeof h))
    return Error{path, "header", "file ends in the header"};
  b.n_ctx = h[0];
  b.n_vocab = h[1];
  b.n_chunk = h[2];
  if (b.n_ctx < 4 || b.n_ctx > (1 << 24))
    return Error{path, "n_ctx", fmt::format("{} is out of range", b.n_ctx)};
  if (b.n_vocab < 1) return Error{path, "n_vocab", fmt::format("{} is out of range", b.n_vocab)};
  if (b.n_chunk < 1) return Error{path, "n_chunk", fmt::format("{} is out of range", b.n_chunk)};
  // The size must match exactly before anything large is allocated: the file is input, not trusted.
  b.in.seekg(0, std::ios::end);
  const int64_t size = b.in.tellg();
  const int64_t rows = int64_t{b.n_ctx} - 1 - b.n_ctx / 2;
  const int64_t expect = 20 + int64_t{b.n_chunk} * b.n_ctx * 4 +
                         int64_t{b.n_chunk} * rows * model::ppl::log_prob_row_size(b.n_vocab) * 2;
  if (size != expect)
    return Error{path, "size",
                 fmt::format("{} bytes, but n_ctx {}, n_vocab {}, n_chunk {} make {}", size, b.n_ctx,
                             b.n_vocab, b.n_chunk, expect)};
  b.in.seekg(20);
  b.tokens.resize(static_cast<size_t>(b.n_chunk) * static_cast<size_t>(b.n_ctx));
  if (!b.in.read(reinterpret_cast<char*>(b.tokens.data()), static_cast<std::streamsize>(b.tokens.size() * 4)))
    return Error{path, "tokens", "read failed"};
  return b;
}

void print_kl_row(int chunk, const model::ppl::KlStats& k) {
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
void print_kl_summary(const model::ppl::KlStats& k, std::vector<float> kld_values,
                      std::vector<float> p_diff_values) {
  using model::ppl::percentile;
  const model::ppl::KlSummary r = model::ppl::summarize(k);
  std::sort(kld_values.begin(), kld_values.end());
  std::sort(p_diff_values.begin(), p_diff_values.end());
  auto median = [](const std::vector<float>& v) {
    return v.size() % 2 == 0 ? 0.5f * (v[v.size() / 2] + v[v.size() / 2 - 1]) : v[v.size() / 2];
  };
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
  fmt::print("Maximum KLD: {:10.6f}\n", kld_values.back());
  for (float f : {0.999f, 0.990f, 0.950f, 0.900f})
    fmt::print("{:4.1f}%   KLD: {:10.6f}\n", 100.0f * f, percentile(kld_values, f));
  fmt::print("Median  KLD: {:10.6f}\n", median(kld_values));
  for (float f : {0.100f, 0.050f, 0.010f, 0.001f})
    fmt::print("{:4.1f}%   KLD: {:10.6f}\n", 100.0f * f, percentile(kld_values, f));
  fmt::print("Minimum KLD: {:10.6f}\n\n", kld_values.front());
  fmt::print("====== Token probability statistics ======\n");
  fmt::print("Mean    Δp: {:6.3f} ± {:5.3f} %\n", 100.0 * r.p_diff.value, 100.0 * r.p_diff.error);
  fmt::print("Maximum Δp: {:6.3f}%\n", 100.0 * p_diff_values.back());
  for (float f : {0.999f, 0.990f, 0.950f, 0.900f, 0.750f})
    fmt::print("{:4.1f}%   Δp: {:6.3f}%\n", 100.0f * f, 100.0 * percentile(p_diff_values, f));
  fmt::print("Median  Δp: {:6.3f}%\n", 100.0 * median(p_diff_values));
  for (float f : {0.250f, 0.100f, 0.050f, 0.010f, 0.001f})
    fmt::print("{:4.1f}%   Δp: {:6.3f}%\n", 100.0f * f, 100.0 * percentile(p_diff_values, f));
  fmt::print("Minimum Δp: {:6.3f}%\n", 100.0 * p_diff_values.front());
  fmt::print("RMS Δp    : {:6.3f} ± {:5.3f} %\n", 100.0 * r.p_diff_rms.value, 100.0 * r.p_diff_rms.error);
  fmt::print("Same top p: {:6.3f} ± {:5.3f} %\n", 100.0 * r.same_top.value, 100.0 * r.same_top.error);
  std::fflush(stdout);
}

}  // namespace

Status run_perplexity(const RunOptions& o, Session& s) {
  const model::Config& c = s.config;
  const tokenizer::Tokenizer& tok = s.tok;
  const bool kl = o.kl_divergence;
  const bool save = !kl && !o.kl_divergence_base.empty();
  if (tok.add_eos())
    return Error{o.model, "tokenizer.ggml.add_eos_token", "perplexity needs a vocabulary that adds no EOS"};

  // ---- Tokens: the text's, or (KL) those the base run scored, with its context size.
  std::vector<int32_t> tokens;
  int64_t n_ctx = o.n_ctx > 0 ? o.n_ctx : 512;  // llama-perplexity's default context
  BaseFile base;
  if (kl) {
    Result<BaseFile> b = open_base(o.kl_divergence_base);
    if (!b) return b.error();
    base = std::move(*b);
    if (base.n_vocab != c.n_vocab)
      return Error{o.kl_divergence_base, "n_vocab",
                   fmt::format("{} tokens, but the model has {}", base.n_vocab, c.n_vocab)};
    if (o.n_ctx > 0 && o.n_ctx != base.n_ctx)
      fmt::print(stderr, "qrun: -c {} ignored: {} was computed with n_ctx = {}\n", o.n_ctx,
                 o.kl_divergence_base, base.n_ctx);
    n_ctx = base.n_ctx;
    tokens = std::move(base.tokens);
    for (int32_t id : tokens)
      if (id < 0 || id >= c.n_vocab)
        return Error{o.kl_divergence_base, "tokens",
                     fmt::format("token id {} is outside the vocabulary", id)};
  } else {
    std::string text = o.prompt;
    if (!o.prompt_file.empty()) {
      Result<std::string> t = read_prompt_file(o.prompt_file);
      if (!t) return t.error();
      text = std::move(*t);
    }
    if (text.empty()) return usage("--perplexity needs a text: -f FILE (or -p TEXT)");
    const Clock::time_point t0 = Clock::now();
    tokens = tok.tokenize(text, /*add_special=*/true, /*parse_special=*/false);  // as common_tokenize
    fmt::print(stderr, "qrun: perplexity: tokenization took {:g} ms\n", ms_since(t0));
    if (static_cast<int64_t>(tokens.size()) < 2 * n_ctx)
      return Error{
          o.prompt_file, "",
          fmt::format("you need at least {} tokens to evaluate perplexity with a context of {}; the text "
                      "tokenizes to only {}",
                      2 * n_ctx, n_ctx, tokens.size())};
  }
  if (n_ctx < 4) return usage(fmt::format("-c {} is too small for perplexity (at least 4)", n_ctx));

  const int64_t n_chunk_max = kl ? base.n_chunk : static_cast<int64_t>(tokens.size()) / n_ctx;
  const int64_t n_chunk = o.n_chunks < 0 ? n_chunk_max : std::min<int64_t>(o.n_chunks, n_chunk_max);
  const int64_t n_batch = std::min(o.n_batch, n_ctx);
  const int64_t first = n_ctx / 2;
  const int64_t n_scored = n_ctx - 1 - first;  // positions first .. n_ctx-2 predict tokens first+1 .. n_ctx-1
  const size_t n_vocab = static_cast<size_t>(c.n_vocab);
  const size_t nv = static_cast<size_t>(model::ppl::log_prob_row_size(c.n_vocab));

  Result<model::KvCache> kv =
      model::KvCache::create(c, n_ctx, o.cache_type == "f32" ? GgmlType::F32 : GgmlType::F16);
  if (!kv) return kv.error();
  Result<model::RunState> state =
      model::RunState::create(c, s.weights.rope_freqs, n_batch, n_ctx, s.n_threads, true);
  if (!state) return state.error();
  state->numerics = numerics(o);
  std::vector<float> logits(static_cast<size_t>(n_ctx - first) * n_vocab);  // rows for positions first..
  std::vector<uint16_t> rows(save || kl ? static_cast<size_t>(n_scored) * nv : 0);

  std::optional<AtomicFile> out;
  if (save) {
    Result<AtomicFile> f = AtomicFile::create(o.kl_divergence_base, /*overwrite=*/true);
    if (!f) return f.error();
    out.emplace(std::move(*f));
    const int32_t h[3] = {static_cast<int32_t>(n_ctx), static_cast<int32_t>(c.n_vocab),
                          static_cast<int32_t>(n_chunk)};
    if (Status st = out->write(kMagic, 8); !st) return st;
    if (Status st = out->write(h, sizeof h); !st) return st;
    if (Status st = out->write(tokens.data(), static_cast<uint64_t>(n_chunk * n_ctx) * 4); !st) return st;
  }

  log_session(o, s);
  fmt::print(
      stderr,
      "qrun: {}: {} tokens, {} chunks, n_ctx = {}, n_batch = {}, kv cache {}, scoring {} tokens per chunk\n",
      kl ? "kl-divergence" : "perplexity", tokens.size(), n_chunk, n_ctx, n_batch, o.cache_type, n_scored);
  if (kl) {
    fmt::print(
        "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS"
        "            Same top p\n");
    std::fflush(stdout);
  }

  const bool add_bos = tok.add_bos() && tok.bos() >= 0;
  model::ppl::PplAccumulator acc;
  model::ppl::KlStats kld;
  std::vector<float> kld_values, p_diff_values;
  std::vector<double> nll(static_cast<size_t>(n_scored));
  std::vector<model::ppl::KlToken> kl_tokens(kl ? static_cast<size_t>(n_scored) : 0);
  std::vector<int32_t> chunk(static_cast<size_t>(n_ctx));
  const Clock::time_point t_all = Clock::now();

  for (int64_t i = 0; i < n_chunk; ++i) {
    const Clock::time_point t_chunk = Clock::now();
    const int32_t* chunk_tokens = tokens.data() + i * n_ctx;
    std::copy(chunk_tokens, chunk_tokens + n_ctx, chunk.begin());
    if (add_bos) chunk[0] = tok.bos();

    // Batches of n_batch, also cut at `first`; a fresh chunk overwrites the cache from position 0.
    // RunState::all_logits is read per call (its buffer was sized for it at creation): off before
    // `first`, where only the cache matters, so the output projection runs only for scored positions.
    for (int64_t p = 0; p < n_ctx;) {
      const int64_t end = std::min(p + n_batch, p < first ? first : n_ctx);
      state->all_logits = p >= first;
      Result<std::span<const float>> r = model::forward(
          c, s.weights, *state, *kv,
          std::span<const int32_t>(chunk).subspan(static_cast<size_t>(p), static_cast<size_t>(end - p)), p);
      if (!r) return r.error();
      if (p >= first)
        std::copy(r->begin(), r->end(), logits.begin() + static_cast<ptrdiff_t>((p - first) * c.n_vocab));
      p = end;
    }

    if (kl &&
        !base.in.read(reinterpret_cast<char*>(rows.data()), static_cast<std::streamsize>(rows.size() * 2)))
      return Error{o.kl_divergence_base, fmt::format("chunk {}", i + 1), "read failed"};

      // Score the positions in parallel (below), then sum in order: the result does not depend on threads.
#pragma omp parallel for num_threads(s.n_threads) schedule(static)
    for (int64_t j = 0; j < n_scored; ++j) {
      const std::span<const float> row(logits.data() + j * c.n_vocab, n_vocab);
      const int32_t next = chunk_tokens[first + j + 1];
      const size_t k = static_cast<size_t>(j);
      if (kl)
        kl_tokens[k] = model::ppl::kl_token(row, std::span<const uint16_t>(rows).subspan(k * nv, nv), next);
      else if (save)
        nll[k] = model::ppl::encode_log_probs(row, next, std::span<uint16_t>(rows).subspan(k * nv, nv));
      else
        nll[k] = model::ppl::token_nll(row, next);
    }
    if (kl) {
      for (const model::ppl::KlToken& t : kl_tokens) {
        kld.add(t);
        kld_values.push_back(static_cast<float>(t.kld));
        p_diff_values.push_back(t.p_diff);
      }
    } else {
      for (double v : nll) acc.add(v);
    }
    if (save)
      if (Status st = out->write(rows.data(), rows.size() * 2); !st) return st;

    if (i == 0) {
      const double sec = ms_since(t_chunk) / 1e3;
      fmt::print(stderr, "qrun: {:.2f} seconds per pass - ETA {:.2f} minutes\n", sec,
                 sec * static_cast<double>(n_chunk) / 60.0);
    }
    if (kl) {
      print_kl_row(static_cast<int>(i + 1), kld);
    } else {
      fmt::print("[{}]{:.4f},", i + 1, acc.ppl());  // llama-perplexity's running estimate
      std::fflush(stdout);
    }
  }
  fmt::print("\n");
  std::fflush(stdout);

  if (kl) {
    // llama.cpp prints no statistics over fewer than 100 positions.
    if (kld.count >= 100)
      print_kl_summary(kld, std::move(kld_values), std::move(p_diff_values));
    else
      fmt::print(stderr, "qrun: only {} scored positions: no statistics (at least 100)\n", kld.count);
  } else {
    const double err = acc.ppl_error();
    if (err < 0) return Error{"", "perplexity", "unexpected negative standard deviation of log(prob)"};
    fmt::print("Final estimate: PPL = {:.4f} +/- {:.5f}\n", acc.ppl(), err);
    std::fflush(stdout);
  }
  const double total_ms = ms_since(t_all);
  print_timing("eval time", total_ms, n_chunk * n_ctx, "tokens");
  if (out) {
    if (Status st = out->commit(); !st) return st;
    fmt::print(stderr, "qrun: saved the log-probabilities of {} chunks to {}\n", n_chunk,
               o.kl_divergence_base);
  }
  return {};
}

}  // namespace qe::cli
