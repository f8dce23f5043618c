// The calibrator's first half: the calibration text cut into token windows, and one full-precision
// forward pass over them that sums, per transformer block, what the scale search needs about the input
// of each linear group (model/forward.h's TapPoint): per channel sum |x| and sum x^2 over every token,
// and the Gram matrix sum x x^T over the windows chosen for it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "formats/error.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace qe::convert {

struct CalibrationWindows {
  std::vector<std::vector<int32_t>> windows;  // each n_ctx tokens, the first one BOS when the vocabulary adds it
  int64_t n_text_tokens = 0;                  // tokens in the whole text
  int64_t n_available = 0;                    // whole windows the text holds
  uint64_t xxh3 = 0;                          // XXH3-64 of the file's bytes
};

// Reads and tokenizes `path`. Errors (naming the file, field "awq"): unreadable, empty, not UTF-8 text
// (a NUL byte or an invalid sequence, with its byte offset), or fewer tokens than one window. A text with
// fewer windows than n_samples gives them all (and a warning); one with more gives n_samples of them,
// chosen by a seeded shuffle, in text order.
Result<CalibrationWindows> calibration_windows(const tokenizer::Tokenizer& tok, const std::string& path,
                                               int64_t n_samples, int64_t n_ctx, uint64_t seed,
                                               std::vector<std::string>& warnings);

// Statistics of one linear group's input over the calibration tokens.
struct ChannelStats {
  int64_t cols = 0;
  int64_t n_tokens = 0;          // tokens in sum_abs / sum_sq
  std::vector<double> sum_abs;   // (cols)
  std::vector<double> sum_sq;    // (cols)
  int64_t n_gram = 0;            // tokens in gram
  std::vector<float> gram;       // (cols, cols) row-major, symmetric

  bool finite() const;
};

struct BlockStats {
  ChannelStats attn_in, attn_out, ffn_in, ffn_down_in;  // q/k/v, o, gate/up, down
};

// Runs every window through `m` (whose weights should be the full-precision ones) from position 0, and
// returns n_layers BlockStats. The Gram matrices are summed over windows spread evenly through the set,
// as many as n_gram_tokens holds (every window counts in sum_abs / sum_sq). progress(done, total) after
// each window. stop() (may be empty), asked after each window: true ends the capture with an error whose
// option is "interrupted".
Result<std::vector<BlockStats>> capture_statistics(const model::Model& m, const CalibrationWindows& w,
                                                   int64_t n_gram_tokens,
                                                   const std::function<void(int64_t, int64_t)>& progress,
                                                   const std::function<bool()>& stop = {});

}  // namespace qe::convert
