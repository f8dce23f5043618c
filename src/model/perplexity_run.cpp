#include "model/perplexity_run.h"

#include <fmt/core.h>

#include <algorithm>

#include "model/timing.h"

namespace qe::model::ppl {
namespace {

Status check_vocabulary(const Model& model) {
  // An EOS appended to the text would be scored as if the text ended there.
  if (model.tok.add_eos())
    return Error{model.path, "tokenizer.ggml.add_eos_token",
                 "perplexity needs a vocabulary that adds no EOS"};
  return {};
}

}  // namespace

ChunkPlan plan_chunks(int64_t n_tokens, int64_t n_ctx, int64_t n_batch, int64_t max_chunks) {
  QE_CHECK(n_ctx >= 1 && n_batch >= 1);
  ChunkPlan p;
  p.n_tokens = n_tokens;
  p.n_ctx = n_ctx;
  p.n_batch = std::min(n_batch, n_ctx);
  const int64_t all = n_tokens / n_ctx;
  p.n_chunk = max_chunks < 0 ? all : std::min(max_chunks, all);
  p.first = n_ctx / 2;
  p.n_scored = n_ctx - 1 - p.first;  // positions first .. n_ctx-2 predict tokens first+1 .. n_ctx-1
  return p;
}

int64_t batch_end(const ChunkPlan& plan, int64_t p) {
  return std::min(p + plan.n_batch, p < plan.first ? plan.first : plan.n_ctx);
}

std::vector<int32_t> tokenize_text(const Model& model, std::string_view text) {
  return model.tok.tokenize(text, /*add_special=*/true, /*parse_special=*/false);
}

Result<PerplexityRun> PerplexityRun::perplexity(const Model& model, std::vector<int32_t> tokens,
                                                const PerplexityParams& params) {
  if (Status st = check_vocabulary(model); !st) return st.error();
  if (params.n_ctx < 0) return Error{"", "n_ctx", fmt::format("{} must be >= 0", params.n_ctx), "n_ctx"};
  const int64_t n_ctx = params.n_ctx > 0 ? params.n_ctx : kDefaultCtx;
  if (static_cast<int64_t>(tokens.size()) < 2 * n_ctx)
    return Error{
        "", "",
        fmt::format("you need at least {} tokens to evaluate perplexity with a context of {}; the text "
                    "tokenizes to only {}",
                    2 * n_ctx, n_ctx, tokens.size()),
        "text"};
  if (n_ctx < 4)
    return Error{"", "n_ctx", fmt::format("{} is too small for perplexity (at least 4)", n_ctx), "n_ctx"};
  for (int32_t id : tokens)
    if (id < 0 || id >= model.config.n_vocab)
      return Error{"", "",
                   fmt::format("token id {} is outside the vocabulary of {}", id, model.config.n_vocab)};
  Result<PerplexityRun> r = start(model, static_cast<int64_t>(tokens.size()), n_ctx, params);
  if (!r) return r;
  r->tokens_ = std::move(tokens);
  if (!params.kl_base.empty()) {
    const KlBaseHeader h{static_cast<int32_t>(n_ctx), static_cast<int32_t>(model.config.n_vocab),
                         static_cast<int32_t>(r->plan_.n_chunk)};
    Result<KlBaseWriter> w = KlBaseWriter::create(params.kl_base, h, r->tokens_);
    if (!w) return w.error();
    r->base_out_ = std::make_unique<KlBaseWriter>(std::move(*w));
  }
  return r;
}

Result<PerplexityRun> PerplexityRun::kl_divergence(const Model& model, const PerplexityParams& params) {
  if (Status st = check_vocabulary(model); !st) return st.error();
  Result<KlBaseReader> base = KlBaseReader::open(params.kl_base);
  if (!base) return base.error();
  const KlBaseHeader& h = base->header();
  if (h.n_vocab != model.config.n_vocab)
    return Error{base->path(), "n_vocab",
                 fmt::format("{} tokens, but the model has {}", h.n_vocab, model.config.n_vocab)};
  for (int32_t id : base->tokens())
    if (id < 0 || id >= model.config.n_vocab)
      return Error{base->path(), "tokens", fmt::format("token id {} is outside the vocabulary", id)};
  Result<PerplexityRun> r = start(model, static_cast<int64_t>(base->tokens().size()), h.n_ctx, params);
  if (!r) return r;
  r->base_in_.emplace(std::move(*base));
  return r;
}

Result<PerplexityRun> PerplexityRun::start(const Model& model, int64_t n_tokens, int64_t n_ctx,
                                           const PerplexityParams& params) {
  if (params.n_batch < 1)
    return Error{"", "n_batch", fmt::format("{} must be >= 1", params.n_batch), "n_batch"};
  if (params.n_chunks == 0 || params.n_chunks < -1)
    return Error{"", "n_chunks", fmt::format("{} must be > 0 (or -1 = all)", params.n_chunks), "n_chunks"};
  Result<Context> ctx = Context::create(model, {n_ctx, params.n_batch, /*all_logits=*/true});
  if (!ctx) return ctx.error();
  PerplexityRun r(std::move(*ctx));
  r.plan_ = plan_chunks(n_tokens, n_ctx, params.n_batch, params.n_chunks);
  return r;
}

Result<PerplexityResult> PerplexityRun::run(const ChunkCallback& on_chunk) {
  QE_CHECK(!done_);
  done_ = true;
  const Model& m = ctx_.model();
  const bool kl = is_kl(), save = base_out_ != nullptr;
  const std::span<const int32_t> tokens = kl ? base_in_->tokens() : std::span<const int32_t>(tokens_);
  const int64_t n_ctx = plan_.n_ctx, first = plan_.first, n_scored = plan_.n_scored, n_chunk = plan_.n_chunk;
  const int64_t n_vocab = m.config.n_vocab;
  const size_t nv = static_cast<size_t>(log_prob_row_size(n_vocab));

  std::vector<float> logits(static_cast<size_t>((n_ctx - first) * n_vocab));  // rows for positions first..
  std::vector<uint16_t> rows(save || kl ? static_cast<size_t>(n_scored) * nv : 0);
  std::vector<double> nll(static_cast<size_t>(n_scored));
  std::vector<KlToken> kl_tokens(kl ? static_cast<size_t>(n_scored) : 0);
  std::vector<int32_t> chunk(static_cast<size_t>(n_ctx));
  const bool add_bos = m.tok.add_bos() && m.tok.bos() >= 0;

  PerplexityResult res;
  res.kl_divergence = kl;
  const Clock::time_point t_all = Clock::now();
  for (int64_t i = 0; i < n_chunk; ++i) {
    const Clock::time_point t_chunk = Clock::now();
    const int32_t* chunk_tokens = tokens.data() + i * n_ctx;
    std::copy(chunk_tokens, chunk_tokens + n_ctx, chunk.begin());
    if (add_bos) chunk[0] = m.tok.bos();

    // A fresh chunk overwrites the cache from position 0; logits only from `first` on.
    ctx_.clear();
    for (int64_t p = 0; p < n_ctx;) {
      const int64_t end = batch_end(plan_, p);
      Result<std::span<const float>> r = ctx_.decode(
          std::span<const int32_t>(chunk).subspan(static_cast<size_t>(p), static_cast<size_t>(end - p)),
          /*all=*/p >= first);
      if (!r) return r.error();
      if (p >= first)
        std::copy(r->begin(), r->end(), logits.begin() + static_cast<ptrdiff_t>((p - first) * n_vocab));
      p = end;
    }
    if (kl)
      if (Status st = base_in_->read_chunk(rows); !st) return st.error();

        // Score the positions in parallel, then sum in order: the result does not depend on the threads.
#pragma omp parallel for num_threads(m.n_threads()) schedule(static)
    for (int64_t j = 0; j < n_scored; ++j) {
      const std::span<const float> row(logits.data() + j * n_vocab, static_cast<size_t>(n_vocab));
      const int32_t next = chunk_tokens[first + j + 1];
      const size_t k = static_cast<size_t>(j);
      if (kl)
        kl_tokens[k] = kl_token(row, std::span<const uint16_t>(rows).subspan(k * nv, nv), next);
      else if (save)
        nll[k] = encode_log_probs(row, next, std::span<uint16_t>(rows).subspan(k * nv, nv));
      else
        nll[k] = token_nll(row, next);
    }
    if (kl) {
      for (const KlToken& t : kl_tokens) {
        res.kl.add(t);
        res.kld_sorted.push_back(static_cast<float>(t.kld));
        res.p_diff_sorted.push_back(t.p_diff);
      }
    } else {
      for (double v : nll) res.ppl.add(v);
    }
    if (save)
      if (Status st = base_out_->write_chunk(rows); !st) return st.error();
    res.n_chunk_done = i + 1;
    if (on_chunk && !on_chunk({i + 1, n_chunk, ms_since(t_chunk), res.ppl, res.kl})) break;
  }
  std::sort(res.kld_sorted.begin(), res.kld_sorted.end());
  std::sort(res.p_diff_sorted.begin(), res.p_diff_sorted.end());
  res.n_evaluated = res.n_chunk_done * n_ctx;
  res.total_ms = ms_since(t_all);
  if (save && res.n_chunk_done == n_chunk) {
    if (Status st = base_out_->commit(); !st) return st.error();
    res.saved_base = base_out_->path();
  }
  return res;
}

}  // namespace qe::model::ppl
