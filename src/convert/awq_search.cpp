#include "convert/awq_search.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "convert/awq_gptq.h"
#include "convert/rows.h"
#include "formats/error.h"
#include "kernels/matmul.h"

namespace qe::convert {
namespace {

// Quantize-and-back of one row with the writer's codec: the values a reader of the output will compute
// with. With importance (q4_0 / q4_1 only), ggml's weighted quantizer instead.
class RoundTrip {
 public:
  explicit RoundTrip(GgmlType t) : codec_(t) {}
  bool has_weighted() const { return takes_importance(codec_.type); }
  size_t row_bytes(int64_t n) const {
    return static_cast<size_t>(ggml_row_bytes(codec_.type, static_cast<uint64_t>(n)));
  }
  void operator()(const float* x, float* y, int64_t n, const float* importance, std::byte* buf) const {
    codec_.quantize(x, buf, n, importance);
    codec_.to_f32(buf, y, n);
  }

 private:
  RowCodec codec_;
};

// loss[r] = d_r G d_r^T for the rows of d (rows, cols): one f32 GEMM (y = d G, G symmetric) and a row
// dot. The products are summed in double.
class LossEval {
 public:
  void rows(const float* d, int64_t rows, const AwqGroupInput& in, double* loss, int n_threads) {
    const int64_t cols = in.cols;
    y_.resize(static_cast<size_t>(rows * cols));
    const kernels::WeightView g{GgmlType::F32, cols, cols, in.gram.data(), cols * 4};
    QE_CHECK(act_.prepare(GgmlType::F32, d, rows, cols, cols, n_threads));
    QE_CHECK(kernels::matmul(g, act_, y_.data(), n_threads));  // y[r * cols + j] = G_j . d_r
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0.0;
      const float* yr = y_.data() + r * cols;
      const float* dr = d + r * cols;
      for (int64_t j = 0; j < cols; ++j) s += static_cast<double>(yr[j]) * dr[j];
      loss[r] = s;
    }
  }

 private:
  std::vector<float> y_;
  kernels::ActivationBuffer act_;
};

void scales_for(std::span<const float> mean_abs, float alpha, std::vector<float>& s) {
  s.resize(mean_abs.size());
  if (alpha == 0.0f) {
    std::fill(s.begin(), s.end(), 1.0f);
    return;
  }
  for (size_t j = 0; j < s.size(); ++j) {
    const float v = std::max(std::pow(mean_abs[j], alpha), 1e-4f);
    s[j] = std::isfinite(v) ? v : 1.0f;
  }
  const auto [lo, hi] = std::minmax_element(s.begin(), s.end());
  const float norm = std::sqrt(*lo * *hi);
  for (float& v : s) v /= norm;
}

double sum(std::span<const double> v) {
  double s = 0.0;
  for (double x : v) s += x;
  return s;
}

// The shrink factors of the clipping search: AutoAWQ's grid (n_grid 20, at most 50% off the max).
constexpr float kShrinks[] = {1.0f, 0.95f, 0.9f, 0.85f, 0.8f, 0.75f, 0.7f, 0.65f, 0.6f, 0.55f};

}  // namespace

bool all_finite(std::span<const float> v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

std::vector<float> scaled_importance(const AwqGroupInput& in, std::span<const float> col_scale) {
  std::vector<float> imp = in.importance;
  if (!col_scale.empty())
    for (size_t j = 0; j < imp.size(); ++j) imp[j] /= col_scale[j] * col_scale[j];
  return imp;
}

AlphaSearch search_alpha(std::span<AwqTensor> tensors, const AwqGroupInput& in, int n_grid, int n_threads,
                         std::optional<float> fixed_alpha) {
  QE_CHECK(n_grid >= 1);
  const int64_t cols = in.cols;
  int64_t max_rows = 0;
  for (const AwqTensor& t : tensors) {
    QE_CHECK(t.cols == cols);
    max_rows = std::max(max_rows, t.rows);
  }
  std::vector<float> delta(static_cast<size_t>(max_rows * cols));
  std::vector<double> row_loss(static_cast<size_t>(max_rows));
  std::vector<float> s;
  LossEval eval;
  AlphaSearch best;
  best.losses.assign(static_cast<size_t>(n_grid), std::numeric_limits<double>::quiet_NaN());
  double best_loss = std::numeric_limits<double>::infinity();
  // alpha 0 is always scored: it gives each tensor's loss_rtn
  const int n_points = fixed_alpha ? 2 : n_grid;
  for (int i = 0; i < n_points; ++i) {
    const float alpha = i == 0 ? 0.0f : fixed_alpha ? *fixed_alpha : static_cast<float>(i) / static_cast<float>(n_grid);
    scales_for(in.mean_abs, alpha, s);
    double total = 0.0;
    for (AwqTensor& t : tensors) {
      const RoundTrip rt(t.type);
#pragma omp parallel num_threads(n_threads)
      {
        std::vector<float> x(static_cast<size_t>(cols)), q(static_cast<size_t>(cols));
        std::vector<std::byte> buf(rt.row_bytes(cols));
#pragma omp for schedule(static)
        for (int64_t r = 0; r < t.rows; ++r) {
          const float* w = t.w + r * cols;
          for (int64_t j = 0; j < cols; ++j) x[j] = w[j] * s[j];
          rt(x.data(), q.data(), cols, nullptr, buf.data());
          float* d = delta.data() + r * cols;
          for (int64_t j = 0; j < cols; ++j) d[j] = w[j] - q[j] / s[j];
        }
      }
      eval.rows(delta.data(), t.rows, in, row_loss.data(), n_threads);
      const double loss = sum(std::span<const double>(row_loss.data(), static_cast<size_t>(t.rows)));
      if (i == 0) t.loss_rtn = loss;
      total += loss;
    }
    if (!fixed_alpha) best.losses[static_cast<size_t>(i)] = total;
    if (total < best_loss || (fixed_alpha && i == 1)) {  // NaN never wins a search
      best_loss = total;
      best.alpha = alpha;
      best.scale = s;
    }
  }
  if (best.scale.empty()) best.scale.assign(static_cast<size_t>(cols), 1.0f);
  return best;
}

void finish_tensor(AwqTensor& t, std::span<const float> col_scale, const AwqGroupInput& in, bool clip,
                   int n_threads, std::span<const float> gptq_u) {
  const int64_t rows = t.rows, cols = t.cols;
  const RoundTrip rt(t.type);
  auto s = [&](int64_t j) { return col_scale.empty() ? 1.0f : col_scale[static_cast<size_t>(j)]; };
  auto rho = [&](int64_t r) { return t.row_scale.empty() ? 1.0f : t.row_scale[static_cast<size_t>(r)]; };

  // W' = W diag(s) / rho: the matrix the file holds before clipping
  std::vector<float> wp(static_cast<size_t>(rows * cols));
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) wp[r * cols + j] = t.w[r * cols + j] * s(j) / rho(r);

  // Candidate rows -> their error in the original basis, d_r = rho_r (W'_r - Q(c_r)) / s, and its loss.
  std::vector<float> delta(static_cast<size_t>(rows * cols));
  std::vector<double> loss(static_cast<size_t>(rows));
  LossEval eval;
  auto score = [&](float shrink_or_0, const std::vector<float>* per_row_shrink, const float* importance) {
#pragma omp parallel num_threads(n_threads)
    {
      std::vector<float> c(static_cast<size_t>(cols)), q(static_cast<size_t>(cols));
      std::vector<std::byte> buf(rt.row_bytes(cols));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        const float* w = wp.data() + r * cols;
        const float f = per_row_shrink ? (*per_row_shrink)[static_cast<size_t>(r)] : shrink_or_0;
        float m = 0.0f;
        for (int64_t j = 0; j < cols; ++j) m = std::max(m, std::fabs(w[j]));
        const float lim = m * f;
        for (int64_t j = 0; j < cols; ++j) c[j] = f < 1.0f ? std::clamp(w[j], -lim, lim) : w[j];
        rt(c.data(), q.data(), cols, importance, buf.data());
        float* d = delta.data() + r * cols;
        for (int64_t j = 0; j < cols; ++j) d[j] = rho(r) * (w[j] - q[j]) / s(j);
      }
    }
    eval.rows(delta.data(), rows, in, loss.data(), n_threads);
  };

  // Clipping per row with the plain quantizer: the shrink with the lowest loss (1 = none wins ties).
  std::vector<float> shrink(static_cast<size_t>(rows), 1.0f);
  std::vector<double> plain(static_cast<size_t>(rows), std::numeric_limits<double>::infinity());
  const bool search_clip = clip && t.clip;
  for (float f : kShrinks) {
    if (f < 1.0f && !search_clip) break;
    score(f, nullptr, nullptr);
    for (int64_t r = 0; r < rows; ++r)
      if (loss[r] < plain[r]) plain[r] = loss[r], shrink[r] = f;
  }
  double total = sum(plain);
  t.weighted = false;
  t.weighted_rows = t.gptq_rows = 0;
  t.bytes.clear();

  // Weighted rounding, each row with its clip or without.
  std::vector<float> imp;
  std::vector<double> weighted;
  std::vector<float> wshrink = shrink;
  if (rt.has_weighted() && !in.importance.empty()) {
    imp = scaled_importance(in, col_scale);
    score(0.0f, &shrink, imp.data());
    weighted.assign(loss.begin(), loss.end());
    if (search_clip) {
      score(1.0f, nullptr, imp.data());
      for (int64_t r = 0; r < rows; ++r)
        if (loss[r] <= weighted[r]) weighted[r] = loss[r], wshrink[r] = 1.0f;
    }
  }

  auto clipped_row = [&](int64_t r, float f, float* dst) {
    const float* w = wp.data() + r * cols;
    float m = 0.0f;
    for (int64_t j = 0; j < cols; ++j) m = std::max(m, std::fabs(w[j]));
    for (int64_t j = 0; j < cols; ++j) dst[j] = f < 1.0f ? std::clamp(w[j], -m * f, m * f) : w[j];
  };
  t.out.resize(static_cast<size_t>(rows * cols));
  t.clipped_rows = 0;

  if (!gptq_u.empty() && gptq_supports(t.type)) {
    // Every row the lowest of plain (clipped), weighted (clipped or not) and GPTQ (unclipped).
    std::vector<float> deq;
    const std::vector<std::byte> gptq = gptq_round(t.type, wp.data(), rows, cols, gptq_u, deq, n_threads);
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j)
        delta[r * cols + j] = rho(r) * (wp[r * cols + j] - deq[r * cols + j]) / s(j);
    eval.rows(delta.data(), rows, in, loss.data(), n_threads);
    const size_t row_bytes = rt.row_bytes(cols);
    t.bytes.resize(row_bytes * static_cast<size_t>(rows));
    const RowCodec codec(t.type);
    total = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      std::byte* dst = t.bytes.data() + static_cast<size_t>(r) * row_bytes;
      float* o = t.out.data() + r * cols;
      const bool w_ok = !weighted.empty() && weighted[r] < plain[r];
      const double best_other = w_ok ? weighted[r] : plain[r];
      if (loss[r] < best_other) {
        std::memcpy(dst, gptq.data() + static_cast<size_t>(r) * row_bytes, row_bytes);
        clipped_row(r, 1.0f, o);
        total += loss[r];
        ++t.gptq_rows;
      } else {
        const float f = w_ok ? wshrink[r] : shrink[r];
        clipped_row(r, f, o);
        codec.quantize(o, dst, cols, w_ok ? imp.data() : nullptr);
        total += best_other;
        t.weighted_rows += w_ok;
        t.clipped_rows += f < 1.0f;
      }
    }
    t.loss = total;
    return;
  }

  if (!weighted.empty()) {
    if (const double wt = sum(weighted); wt < total) {
      total = wt;
      shrink = std::move(wshrink);
      t.weighted = true;
      t.weighted_rows = static_cast<int>(rows);
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float f = shrink[static_cast<size_t>(r)];
    clipped_row(r, f, t.out.data() + r * cols);
    t.clipped_rows += f < 1.0f;
  }
  t.loss = total;
}

}  // namespace qe::convert
