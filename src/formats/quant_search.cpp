#include "formats/quant_search.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/exact_float.h"  // after the other headers: no fused multiply-add below

namespace qe::quant {
namespace {

// How make_qx_quants weighs element i when no importance is given (ggml's rmse_type 1..4: x^2, 1, |x|,
// sqrt|x|). The weighted quantizers always pass importances; q3_K/q6_K without an imatrix use type 1.
inline float default_weight(int rmse_type, float x) {
  switch (rmse_type) {
    case 1:
      return x * x;
    case 2:
      return 1.0f;
    case 3:
      return std::fabs(x);
    default:
      return std::sqrt(std::fabs(x));
  }
}

}  // namespace

// Symmetric quantization of x[0..n) to codes L[i] in [0, 2*nmax) with x ~ scale * (L[i] - nmax); returns
// the scale (ggml's make_qx_quants). q4_0 uses (32, 8, rmse_type 1, importances); q5_0 (32, 16), q3_K
// (16, 4) and q6_K (16, 32) use the same routine.
//   rmse_type 0: plain round to nearest with the signed absmax mapped to -nmax, no fitting.
//   rmse_type > 0: the scale is the weighted least-squares fit sum(w x l) / sum(w l^2) for the codes
//     rounded at iscale = -nmax / max, then 18 more iscales -(nmax + 0.1 is) / max (is = -9..9, not 0)
//     are tried and the codes of the one with the largest sum(w x l)^2 / sum(w l^2) (= smallest weighted
//     error at its best-fit scale) are kept.
//   rmse_type < 0: one fit only, returning the mean of the fitted scale and 1 / iscale.
// qw (n importances) overrides the per-type default weight.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw) {
  float max = 0.0f;
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {  // strict: the first of equal magnitudes keeps its sign
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, int8_t{0});
    return 0.0f;
  }
  // The code range is asymmetric, [-nmax, nmax - 1]: mapping the signed absmax to -nmax keeps the full
  // range on the side that needs it.
  const auto code = [nmax](float iscale, float v) {
    return std::clamp(nearest_int(iscale * v), -nmax, nmax - 1);
  };
  const auto nmax_f = static_cast<float>(nmax);
  float iscale = static_cast<float>(-nmax) / max;
  if (rmse_type == 0) {
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + code(iscale, x[i]));
    return 1 / iscale;
  }
  const bool return_early = rmse_type < 0;
  if (return_early) rmse_type = -rmse_type;
  const auto weight = [&](int i) { return qw ? qw[i] : default_weight(rmse_type, x[i]); };

  float sumlx = 0.0f;
  float suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = code(iscale, x[i]);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = weight(i);
    const auto lf = static_cast<float>(l);
    sumlx += w * x[i] * lf;
    suml2 += w * lf * lf;
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  if (return_early) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax_f + 0.1f * static_cast<float>(is)) / max;
    sumlx = 0.0f;
    suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const auto lf = static_cast<float>(code(iscale, x[i]));
      const float w = weight(i);
      sumlx += w * x[i] * lf;
      suml2 += w * lf * lf;
    }
    // sumlx^2 / suml2 > best, kept division-free as ggml does (the bytes depend on this exact test).
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + code(iscale, x[i]));
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Asymmetric quantization of x[0..n) to codes L[i] in [0, nmax] with x ~ scale * L[i] - *neg_min
// (ggml's make_qkx3_quants). Returns the scale and stores minus the offset in *neg_min (the offset is
// never above 0: the minimum is clamped to 0 first). The error is sum(w * diff^2), or sum(w * |diff|)
// with use_mad; w = weights[i], or x[i]^2 without weights. Candidate iscales are
// (nmax + rmin + rdelta * is) / (max - min) for is = 0..nstep; for each, (scale, min) is the weighted
// least-squares fit to its codes (min re-clamped to 0, with the scale refitted), and the best error wins.
// q4_1 uses (32, 15, rmin -0.9, rdelta 0.05, 36 steps, squared error): iscales from 14.1 to 15.9 codes
// over the range; q4_K has the same call, q5_1/q5_K use nmax 31 and q2_K (16, 3). Laux is n bytes of
// scratch.
float make_qkx3_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* neg_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
  const auto weight = [&](int i) { return weights ? weights[i] : x[i] * x[i]; };
  const auto error = [use_mad](float diff) { return use_mad ? std::fabs(diff) : diff * diff; };
  const auto nmax_f = static_cast<float>(nmax);
  float min = x[0];
  float max = x[0];
  float sum_w = weight(0);
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weight(i);
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max <= min) {  // a constant block at or below 0 (all zero included): offset only
    std::memset(L, 0, static_cast<size_t>(n));
    *neg_min = -min;
    return 0.0f;
  }
  const auto code = [nmax](float iscale, float v) { return std::clamp(nearest_int(iscale * v), 0, nmax); };
  float iscale = nmax_f / (max - min);
  float scale = 1 / iscale;
  float best_error = 0.0f;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(code(iscale, x[i] - min));
    const float diff = scale * static_cast<float>(L[i]) + min - x[i];
    best_error += weight(i) * error(diff);
  }
  if (nstep < 1) {
    *neg_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + nmax_f) / (max - min);
    float sum_l = 0.0f;
    float sum_l2 = 0.0f;
    float sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = code(iscale, x[i] - min);
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weight(i);
      const auto lf = static_cast<float>(l);
      sum_l += w * lf;
      sum_l2 += w * lf * lf;
      sum_xl += w * lf * x[i];
    }
    // Normal equations of min over (s, m) of sum(w (s l + m - x)^2), by Cramer's rule.
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (!(D > 0)) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float this_error = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
      this_error += weight(i) * error(diff);
    }
    if (this_error < best_error) {
      std::memcpy(L, Laux, static_cast<size_t>(n));
      best_error = this_error;
      scale = this_scale;
      min = this_min;
    }
  }
  *neg_min = -min;
  return scale;
}

// Symmetric quantization to codes in [-nmax, nmax) (stored + nmax) with x^2 weights, refined code by code
// (ggml's make_q3_quants). Starting from round-to-nearest at iscale = -nmax / max, each pass moves every
// code to the one its leave-one-out least-squares scale prefers, keeping a move only when it raises
// sumlx^2 / suml2 (the fit quality at the best scale); at most 5 passes, stopping early when nothing moved.
// q3_K calls it with (16, 4, do_rmse = true).
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse) {
  float max = 0.0f;
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, int8_t{0});
    return 0.0f;
  }
  const auto code = [nmax](float v) { return std::clamp(nearest_int(v), -nmax, nmax - 1); };
  const float iscale = static_cast<float>(-nmax) / max;
  if (!do_rmse) {
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(code(iscale * x[i]) + nmax);
    return 1 / iscale;
  }
  float sumlx = 0.0f;
  float suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = code(iscale * x[i]);
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    const auto lf = static_cast<float>(l);
    sumlx += w * x[i] * lf;
    suml2 += w * lf * lf;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      const auto li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      if (!(slx > 0)) continue;
      float sl2 = suml2 - w * li * li;
      const int new_l = code(x[i] * sl2 / slx);
      if (new_l == L[i]) continue;
      const auto nl = static_cast<float>(new_l);
      slx += w * x[i] * nl;
      sl2 += w * nl * nl;
      // slx^2 / sl2 > sumlx^2 / suml2 without dividing, in ggml's order of products.
      if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
        L[i] = static_cast<int8_t>(new_l);
        sumlx = slx;
        suml2 = sl2;
        ++n_changed;
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return sumlx / suml2;
}

// Codes in [0, nmax] for non-negative x (ggml's make_qp_quants): the weighted q2_K / q4_K / q5_K quantize
// their 16 or 8 group scales (and mins) with it, weighted by each group's total importance. First the
// iscale (nmax + 0.1 is) / max, is = -4..4, with the smallest weighted squared error wins; then up to 5
// passes of the same code-by-code refinement as make_q3_quants. L is uint8_t as in ggml: a negative x
// (a group whose fitted scale came out negative) wraps modulo 256, and the refinement reads the wrapped
// value back, which decides the bytes of such blocks.
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights) {
  float max = 0.0f;
  for (int i = 0; i < n; ++i) max = max > x[i] ? max : x[i];  // ggml's MAX: a NaN x[i] gets through
  if (max == 0.0f) {
    std::memset(L, 0, static_cast<size_t>(n));
    return 0.0f;
  }
  const auto nmax_f = static_cast<float>(nmax);
  float iscale = nmax_f / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
  const float scale = 1 / iscale;
  float best_mse = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * static_cast<float>(L[i]);
    best_mse += quant_weights[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * static_cast<float>(is) + nmax_f) / max;
    const float scale_is = 1 / iscale_is;
    float mse = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, nearest_int(iscale_is * x[i]));
      const float diff = x[i] - scale_is * static_cast<float>(l);
      mse += quant_weights[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0.0f;
  float suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    const float w = quant_weights[i];
    const auto lf = static_cast<float>(l);  // the unwrapped code, as ggml sums it
    sumlx += w * x[i] * lf;
    suml2 += w * lf * lf;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = quant_weights[i];
      const auto li = static_cast<float>(L[i]);
      float slx = sumlx - w * x[i] * li;
      float sl2 = suml2 - w * li * li;
      if (!(slx > 0 && sl2 > 0)) continue;
      const int new_l = std::min(nmax, nearest_int(x[i] * sl2 / slx));
      if (new_l == L[i]) continue;
      const auto nl = static_cast<float>(new_l);
      slx += w * x[i] * nl;
      sl2 += w * nl * nl;
      if (slx * slx * suml2 > sumlx * sumlx * sl2) {
        L[i] = static_cast<uint8_t>(new_l);
        sumlx = slx;
        suml2 = sl2;
        ++n_changed;
      }
    }
    if (n_changed == 0) break;
  }
  return sumlx / suml2;
}

// The mean square of the row: ggml widens each importance by sqrt(sigma2 + x^2), so that within a block
// large values count more, but a small value still counts about as much as a typical one in its row
// (without the sigma2 floor, a block's near-zero values would be free to land anywhere).
float row_sigma2(const float* x, int64_t n) {
  float sum_x2 = 0.0f;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / static_cast<float>(n);
}

}  // namespace qe::quant
