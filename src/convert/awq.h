// Activation-aware weight quantization (AWQ, Lin et al. 2023) into ggml's standard block types.
//
// One full-precision forward pass over the calibration text captures, per transformer block, the inputs
// of each linear group: q/k/v (attn_norm's output), o (the attention output), gate/up (ffn_norm's
// output) and down (silu(gate) * up). From them come, per input channel, mean |x| (AWQ's salience) and
// E[x^2] (the importance of importance-weighted rounding), and the group's Gram matrix X^T X, which
// gives the output error of any weight change exactly: |X dW^T|^2 = sum over rows r of dW_r G dW_r^T.
//
// Then, per block and group:
//   - scale search: s = mean|x|^alpha normalised to a geometric mean of 1, alpha = i / grid, with the
//     target quantizer (our kernels) in the loop: loss(alpha) = |X (W - Q(W s) / s)^T|^2;
//   - the scales are folded exactly: 1/s into attn_norm (q/k/v) and ffn_norm (gate/up), into v's rows for
//     o (tied over the query heads that share a kv head, so it holds with GQA), into up's rows for down;
//   - clipping search per output row (v, o, gate, up, down; q and k feed a softmax whose error a linear
//     loss does not see, so they are not clipped, as in AutoAWQ): shrink the row's max on the same loss;
//   - the rounding, per row, whichever has the lowest loss: the plain quantizer (with the row's clip),
//     ggml's importance-weighted one (q4_0 / q4_1, weights from E[x^2] / s^2, with or without the clip),
//     or error-compensated rounding (GPTQ, convert/awq_gptq.h: q4_0 / q4_1 / q8_0), which spreads each
//     element's rounding error over the row's later elements through the inverse Gram matrix;
//   - fallback chain per group: AWQ -> weighted RTN -> RTN: alpha 0 (no scaling) and no clip are among
//     the candidates, so a group is never worse than plain rounding; non-finite weights or activations
//     give plain RTN; each fallback is recorded with its reason.
// The output is an ordinary GGUF of the target type: the scales live in the norms and the weights.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qe::convert {

struct AwqOptions {
  std::string calib_path;  // UTF-8 text; tokenized whole, cut into windows of n_ctx tokens
  int64_t n_samples = 128; // windows used (fewer when the text holds fewer; chosen by seed when it holds more)
  int64_t n_ctx = 512;     // tokens per window
  int n_grid = 20;         // alpha = 0, 1/grid, ..., (grid-1)/grid
  bool clip = true;        // the clipping search
  uint64_t seed = 0;       // which windows, when the text holds more than n_samples
  // Every group scaled with this alpha instead of the searched one (ablations; with an f32 target the
  // output is the folded model itself, which computes the same function as the input).
  std::optional<float> fixed_alpha;
};

// One linear group of one block, as the report shows it. Losses are the group's summed squared output
// error per calibration token (the mean over tokens of |x W^T - x W'^T|^2).
struct AwqGroupReport {
  std::string name;          // "qkv", "o", "gate_up", "down"
  float alpha = 0.0f;        // chosen exponent (0: no scaling)
  double loss_rtn = 0.0;     // plain round-to-nearest, no scaling, no clipping
  double loss_awq = 0.0;     // what was written
  std::string method;        // "awq" when scaled or clipped, "+gptq" / "+weighted" for the roundings used; "rtn"
  std::string fallback;      // why a later step of the chain was taken; empty when none was
  int clipped_rows = 0;      // rows whose max was shrunk
};

struct AwqLayerReport {
  int64_t layer = 0;
  std::vector<AwqGroupReport> groups;
};

struct AwqReport {
  std::string calib_path;
  uint64_t calib_xxh3 = 0;   // XXH3-64 of the calibration file's bytes
  int64_t n_samples = 0;     // windows used
  int64_t n_ctx = 0;
  int64_t n_tokens = 0;      // n_samples * n_ctx
  int64_t n_gram_tokens = 0; // tokens the Gram matrices were summed over
  int n_grid = 0;
  bool clip = true;
  uint64_t seed = 0;
  double capture_seconds = 0.0, search_seconds = 0.0;
  std::vector<AwqLayerReport> layers;
  std::vector<std::string> warnings;
};

// Where the calibration is, for progress bars: capture (windows done of n_samples), then search (blocks
// done of n_layers).
struct AwqProgress {
  enum class Phase { kCapture, kSearch } phase = Phase::kCapture;
  int64_t done = 0, total = 0;
};

}  // namespace qe::convert
