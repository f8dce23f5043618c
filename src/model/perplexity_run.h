// Perplexity and KL divergence over a token stream with llama-perplexity's method
// (tools/perplexity/perplexity.cpp, perplexity() and kl_divergence()):
//
//   * The text is tokenized whole, with BOS when the vocabulary adds it, and cut into
//     n_chunk = n_tokens / n_ctx chunks (n_chunks caps it); at least 2 * n_ctx tokens are required.
//   * Each chunk runs from an empty cache, its first token replaced by BOS when the vocabulary adds BOS.
//   * Only the second half is scored: positions first = n_ctx/2 .. n_ctx-2 predict their next token,
//     n_ctx - 1 - first tokens per chunk, so every scored token has at least n_ctx/2 tokens of context.
//   * Only those positions need logits: the chunk is evaluated in batches cut at `first`, and the output
//     projection runs for every token of a batch only from there on.
//   * Positions are scored in parallel and summed in order: the figures do not depend on the threads.
//
// Perplexity can save the log-probabilities to a KL base file (model/kl_base_file.h, llama.cpp's own
// format); KL divergence reads one, runs its tokens through this model with its n_ctx, and compares.
//
//   Result<PerplexityRun> run = PerplexityRun::perplexity(model, tokenize_text(model, text), {.n_ctx = 512});
//   Result<PerplexityResult> r = run->run([](const ChunkProgress& p) { ... });
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/error.h"
#include "model/context.h"
#include "model/kl_base_file.h"
#include "model/model.h"
#include "model/perplexity.h"

namespace qe::model::ppl {

inline constexpr int64_t kDefaultCtx = 512;  // llama-perplexity's default context

struct PerplexityParams {
  int64_t n_ctx = 0;      // tokens per chunk; 0 = kDefaultCtx. KL divergence takes the base file's.
  int64_t n_batch = kDefaultBatch;  // tokens per forward pass (capped at n_ctx)
  int64_t n_chunks = -1;  // at most this many chunks; -1 = all
  // Perplexity: save the log-probabilities here ("" = don't). KL divergence: read them from here.
  std::string kl_base;
};

// llama-perplexity's tokenization of the text (common_tokenize): BOS as the vocabulary asks, control-token
// text left as text.
std::vector<int32_t> tokenize_text(const Model& model, std::string_view text);

// The chunking, known before anything is evaluated.
struct ChunkPlan {
  int64_t n_tokens = 0;  // in the text (or the base file)
  int64_t n_ctx = 0, n_batch = 0;
  int64_t n_chunk = 0;   // chunks that will be scored
  int64_t first = 0;     // first scored position of a chunk (n_ctx / 2)
  int64_t n_scored = 0;  // scored positions per chunk (n_ctx - 1 - first)
};
// max_chunks < 0: all of n_tokens / n_ctx.
ChunkPlan plan_chunks(int64_t n_tokens, int64_t n_ctx, int64_t n_batch, int64_t max_chunks);
// End of the batch that starts at position p: at most n_batch tokens, and never across `first`, so the
// positions before it run without logits.
int64_t batch_end(const ChunkPlan& plan, int64_t p);

// Reported after each chunk: the running figures include it.
struct ChunkProgress {
  int64_t chunk = 0;  // 1-based
  int64_t n_chunk = 0;
  double ms = 0;              // this chunk's time
  const PplAccumulator& ppl;  // perplexity
  const KlStats& kl;          // KL divergence
};
// Returns false to stop after this chunk: the result then covers the chunks scored so far.
using ChunkCallback = std::function<bool(const ChunkProgress&)>;

struct PerplexityResult {
  bool kl_divergence = false;
  PplAccumulator ppl;                // perplexity
  KlStats kl;                        // KL divergence
  std::vector<float> kld_sorted;     // per position, ascending (KL divergence)
  std::vector<float> p_diff_sorted;  // per position, ascending (KL divergence)
  int64_t n_chunk_done = 0;          // chunks scored: plan().n_chunk unless the callback stopped the run
  int64_t n_evaluated = 0;           // tokens through the model (n_chunk_done * n_ctx)
  double total_ms = 0;
  std::string saved_base;  // the base file written and in place ("" = none, or the run was stopped)
};

class PerplexityRun {
 public:
  // Perplexity of a token stream (tokenize_text's). Errors: a vocabulary that adds EOS, fewer than
  // 2 * n_ctx tokens (option "text"), n_ctx < 4 (option "n_ctx"), ids outside the vocabulary; the base
  // file is created now.
  static Result<PerplexityRun> perplexity(const Model& model, std::vector<int32_t> tokens,
                                          const PerplexityParams& params);
  // KL divergence against params.kl_base (checked now: its vocabulary against the model's, its tokens).
  static Result<PerplexityRun> kl_divergence(const Model& model, const PerplexityParams& params);

  const ChunkPlan& plan() const { return plan_; }
  bool is_kl() const { return base_in_.has_value(); }

  // Scores every chunk, reporting each; commits the base file (when saving) at the end, unless the
  // callback stopped the run (a base file must hold every chunk its header counts). Once only.
  Result<PerplexityResult> run(const ChunkCallback& on_chunk = {});

 private:
  PerplexityRun(Context ctx) : ctx_(std::move(ctx)) {}
  // The context and the plan; the caller attaches the tokens (or the base file).
  static Result<PerplexityRun> start(const Model& model, int64_t n_tokens, int64_t n_ctx,
                                     const PerplexityParams& params);

  Context ctx_;
  ChunkPlan plan_;
  std::vector<int32_t> tokens_;  // perplexity's; KL divergence reads base_in_'s
  std::optional<KlBaseReader> base_in_;
  std::unique_ptr<KlBaseWriter> base_out_;  // by pointer: its AtomicFile cannot be move-assigned
  bool done_ = false;
};

}  // namespace qe::model::ppl
