#include "convert/awq_capture.h"

#include <fmt/core.h>
#include <omp.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <numeric>
#include <random>

#include "kernels/matmul.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/run_state.h"
#include "tokenizer/utf8.h"

namespace qe::convert {
namespace {

Error text_error(const std::string& path, std::string reason) { return Error{path, "awq", std::move(reason), "awq"}; }

// Byte offset of the first NUL or invalid UTF-8 sequence, or npos.
size_t first_non_text_byte(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '\0') return i;
    const int n = tokenizer::utf8_valid_len(s.substr(i));
    if (n == 0) return i;
    i += static_cast<size_t>(n);
  }
  return std::string_view::npos;
}

// Adds one batch (n rows of cols) to the per-channel sums: each thread owns a range of columns and
// sums its batch in float first (at most a window of tokens), then into the doubles.
void add_channel_sums(ChannelStats& st, const float* x, int64_t n, int64_t cols, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (int64_t c0 = 0; c0 < cols; c0 += 64) {
    const int64_t c1 = std::min(cols, c0 + 64);
    float a[64] = {}, q[64] = {};
    for (int64_t t = 0; t < n; ++t) {
      const float* row = x + t * cols;
      for (int64_t c = c0; c < c1; ++c) {
        a[c - c0] += std::fabs(row[c]);
        q[c - c0] += row[c] * row[c];
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      st.sum_abs[static_cast<size_t>(c)] += a[c - c0];
      st.sum_sq[static_cast<size_t>(c)] += q[c - c0];
    }
  }
  st.n_tokens += n;
}

// gram += x^T x for one batch, lower triangle only (mirror_gram completes it once at the end). Products
// of columns, so x is transposed first (xt: cols rows of n tokens) and multiplied with itself by the f32
// matmul driver one band of rows at a time, each band against the columns up to its end: about half
// the work of the full product.
class GramAccumulator {
 public:
  void add(ChannelStats& st, const float* x, int64_t n, int64_t cols, int n_threads) {
    xt_.resize(static_cast<size_t>(cols * n));
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t c = 0; c < cols; ++c)
      for (int64_t t = 0; t < n; ++t) xt_[static_cast<size_t>(c * n + t)] = x[t * cols + c];
    constexpr int64_t kBand = 128;
    y_.resize(static_cast<size_t>(kBand * cols));
    for (int64_t r0 = 0; r0 < cols; r0 += kBand) {
      const int64_t r1 = std::min(cols, r0 + kBand), nr = r1 - r0;
      // y[(r - r0) * r1 + c] = xt_r . xt_c for the band's rows r and every column c < r1
      const kernels::WeightView w{GgmlType::F32, r1, n, xt_.data(), n * 4};
      QE_CHECK(act_.prepare(GgmlType::F32, xt_.data() + r0 * n, nr, n, n, n_threads));
      QE_CHECK(kernels::matmul(w, act_, y_.data(), n_threads));
      float* g = st.gram.data();
#pragma omp parallel for num_threads(n_threads) schedule(static)
      for (int64_t r = r0; r < r1; ++r) {
        const float* yr = y_.data() + (r - r0) * r1;
        for (int64_t c = 0; c <= r; ++c) g[r * cols + c] += yr[c];
      }
    }
    st.n_gram += n;
  }

 private:
  std::vector<float> xt_, y_;
  kernels::ActivationBuffer act_;
};

// The upper triangle from the lower one.
void mirror_gram(ChannelStats& st) {
  const int64_t n = st.cols;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = r + 1; c < n; ++c) st.gram[static_cast<size_t>(r * n + c)] = st.gram[static_cast<size_t>(c * n + r)];
}

void init_stats(ChannelStats& st, int64_t cols) {
  st.cols = cols;
  st.sum_abs.assign(static_cast<size_t>(cols), 0.0);
  st.sum_sq.assign(static_cast<size_t>(cols), 0.0);
  st.gram.assign(static_cast<size_t>(cols * cols), 0.0f);
}

}  // namespace

bool ChannelStats::finite() const {
  auto ok = [](auto v) { return std::isfinite(v); };
  return std::all_of(sum_abs.begin(), sum_abs.end(), ok) && std::all_of(sum_sq.begin(), sum_sq.end(), ok) &&
         std::all_of(gram.begin(), gram.end(), ok);
}

Result<CalibrationWindows> calibration_windows(const tokenizer::Tokenizer& tok, const std::string& path,
                                               int64_t n_samples, int64_t n_ctx, uint64_t seed,
                                               std::vector<std::string>& warnings) {
  if (n_samples < 1) return Error{path, "awq samples", fmt::format("{} (at least 1)", n_samples), "awq_samples"};
  if (n_ctx < 2) return Error{path, "awq context", fmt::format("{} tokens (at least 2)", n_ctx), "awq_ctx"};
  std::ifstream in(path, std::ios::binary);
  if (!in) return text_error(path, "cannot open the calibration text");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return text_error(path, "cannot read the calibration text");
  if (text.empty()) return text_error(path, "the calibration text is empty");
  if (const size_t at = first_non_text_byte(text); at != std::string_view::npos)
    return text_error(path, fmt::format("is not UTF-8 text (byte {} is {})", at,
                                        text[at] == '\0' ? "NUL" : "not valid UTF-8"));

  CalibrationWindows out;
  out.xxh3 = XXH3_64bits(text.data(), text.size());
  const std::vector<int32_t> tokens = tok.tokenize(text, /*add_special=*/false, /*parse_special=*/false);
  out.n_text_tokens = static_cast<int64_t>(tokens.size());
  out.n_available = out.n_text_tokens / n_ctx;
  if (out.n_available == 0)
    return text_error(path, fmt::format("the calibration text has {} tokens; one window needs {}",
                                        out.n_text_tokens, n_ctx));
  std::vector<int64_t> pick(static_cast<size_t>(out.n_available));
  std::iota(pick.begin(), pick.end(), 0);
  if (out.n_available > n_samples) {
    std::mt19937_64 rng(seed);
    std::shuffle(pick.begin(), pick.end(), rng);
    pick.resize(static_cast<size_t>(n_samples));
    std::sort(pick.begin(), pick.end());
  } else if (out.n_available < n_samples) {
    warnings.push_back(fmt::format("{}: the calibration text holds {} windows of {} tokens, fewer than the {} "
                                   "samples asked for; calibrating on {}",
                                   path, out.n_available, n_ctx, n_samples, out.n_available));
  }
  const bool add_bos = tok.add_bos() && tok.bos() >= 0;
  for (int64_t i : pick) {
    std::vector<int32_t> w(tokens.begin() + i * n_ctx, tokens.begin() + (i + 1) * n_ctx);
    if (add_bos) w[0] = tok.bos();  // as llama-imatrix / llama-perplexity start each chunk
    out.windows.push_back(std::move(w));
  }
  return out;
}

Result<std::vector<BlockStats>> capture_statistics(const model::Model& m, const CalibrationWindows& cw,
                                                   int64_t n_gram_tokens,
                                                   const std::function<void(int64_t, int64_t)>& progress,
                                                   const std::function<bool()>& stop) {
  const model::Config& c = m.config;
  const auto n_windows = static_cast<int64_t>(cw.windows.size());
  QE_CHECK(n_windows > 0);
  const auto n_ctx = static_cast<int64_t>(cw.windows[0].size());
  const int n_threads = m.n_threads();

  Result<model::KvCache> kv = model::KvCache::create(c, n_ctx, GgmlType::F32);
  if (!kv) return kv.error();
  Result<model::RunState> s =
      model::RunState::create(c, m.weights.rope_freqs, n_ctx, n_ctx, n_threads, /*all_logits=*/false);
  if (!s) return s.error();

  std::vector<BlockStats> stats(static_cast<size_t>(c.n_layers));
  for (BlockStats& b : stats) {
    init_stats(b.attn_in, c.dim);
    init_stats(b.attn_out, c.q_dim());
    init_stats(b.ffn_in, c.dim);
    init_stats(b.ffn_down_in, c.n_ff);
  }
  // Gram windows spread evenly: window i when floor(i * k / n) steps up (k of the n windows)
  const int64_t k = std::clamp<int64_t>(n_gram_tokens / n_ctx, 1, n_windows);
  GramAccumulator gram;
  for (int64_t i = 0; i < n_windows; ++i) {
    const bool with_gram = (i + 1) * k / n_windows != i * k / n_windows;
    model::ForwardTap tap;
    tap.skip_output = true;
    tap.on_input = [&](int64_t layer, model::TapPoint point, const float* x, int64_t n, int64_t cols) {
      BlockStats& b = stats[static_cast<size_t>(layer)];
      ChannelStats& st = point == model::TapPoint::kAttnIn    ? b.attn_in
                         : point == model::TapPoint::kAttnOut ? b.attn_out
                         : point == model::TapPoint::kFfnIn   ? b.ffn_in
                                                              : b.ffn_down_in;
      add_channel_sums(st, x, n, cols, n_threads);
      if (with_gram) gram.add(st, x, n, cols, n_threads);
    };
    Result<std::span<const float>> r = model::forward(c, m.weights, *s, *kv, cw.windows[static_cast<size_t>(i)], 0, &tap);
    if (!r) return r.error();
    if (progress) progress(i + 1, n_windows);
    if (stop && stop()) return Error{"", "", "interrupted", "interrupted"};
  }
  for (BlockStats& b : stats)
    for (ChannelStats* st : {&b.attn_in, &b.attn_out, &b.ffn_in, &b.ffn_down_in}) mirror_gram(*st);
  return stats;
}

}  // namespace qe::convert
