#include "convert/awq_gptq.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/blocks.h"
#include "formats/error.h"

namespace qe::convert {
namespace {

double dot(const double* a, const double* b, int64_t n) {
  double s = 0.0;
  for (int64_t k = 0; k < n; ++k) s += a[k] * b[k];
  return s;
}

// One block of 32 values rounded in order with error feedback: codes from the scale the block's values
// have when it starts (ggml's formula for that scale), each error e_j = (x_j - deq_j) / u_jj taken off
// the rest of the row with u's row j.
struct BlockRounder {
  GgmlType type;
  // Sets the block's scale from x[0..32) and writes its header. d (and q4_1's m16) decode, as stored;
  // id and q4_1's m find the codes, unrounded, as ggml's quantizer does.
  void start(const float* x, std::byte* out, float& d, float& id, float& m, float& m16) const {
    m = m16 = 0.0f;
    if (type == GgmlType::Q4_0) {
      float amax = 0.0f, max = 0.0f;
      for (int j = 0; j < 32; ++j)
        if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), max = x[j];
      const float dd = max / -8;
      id = dd != 0.0f ? 1.0f / dd : 0.0f;
      auto* b = reinterpret_cast<BlockQ4_0*>(out);
      b->d = fp32_to_fp16(dd);
      d = fp16_to_fp32(b->d);
      std::memset(b->qs, 0, sizeof(b->qs));
    } else if (type == GgmlType::Q4_1) {
      float lo = x[0], hi = x[0];
      for (int j = 1; j < 32; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
      const float dd = (hi - lo) / 15;
      id = dd != 0.0f ? 1.0f / dd : 0.0f;
      auto* b = reinterpret_cast<BlockQ4_1*>(out);
      b->d = fp32_to_fp16(dd);
      b->m = fp32_to_fp16(lo);
      d = fp16_to_fp32(b->d);
      m = lo;
      m16 = fp16_to_fp32(b->m);
      std::memset(b->qs, 0, sizeof(b->qs));
    } else {  // q8_0
      float amax = 0.0f;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
      const float dd = amax / 127;
      id = dd != 0.0f ? 1.0f / dd : 0.0f;
      auto* b = reinterpret_cast<BlockQ8_0*>(out);
      b->d = fp32_to_fp16(dd);
      d = fp16_to_fp32(b->d);
    }
  }
  // Rounds element j of the block (value v) and returns its decoded value.
  float put(std::byte* out, int j, float v, float d, float id, float m, float m16) const {
    if (type == GgmlType::Q4_0) {
      const int q = std::clamp(static_cast<int>(std::floor(v * id + 8.5f)), 0, 15);
      auto* b = reinterpret_cast<BlockQ4_0*>(out);
      b->qs[j % 16] |= static_cast<uint8_t>(j < 16 ? q : q << 4);
      return static_cast<float>(q - 8) * d;
    }
    if (type == GgmlType::Q4_1) {
      const int q = std::clamp(static_cast<int>(std::floor((v - m) * id + 0.5f)), 0, 15);
      auto* b = reinterpret_cast<BlockQ4_1*>(out);
      b->qs[j % 16] |= static_cast<uint8_t>(j < 16 ? q : q << 4);
      return static_cast<float>(q) * d + m16;
    }
    const int q = std::clamp(static_cast<int>(std::lround(v * id)), -127, 127);
    reinterpret_cast<BlockQ8_0*>(out)->qs[j] = static_cast<int8_t>(q);
    return static_cast<float>(q) * d;
  }
};

}  // namespace

bool gptq_supports(GgmlType t) { return t == GgmlType::Q4_0 || t == GgmlType::Q4_1 || t == GgmlType::Q8_0; }

std::vector<float> gptq_factor(std::span<const float> gram, int64_t n, std::span<const float> col_scale,
                               int n_threads) {
  auto s = [&](int64_t j) { return col_scale.empty() ? 1.0 : static_cast<double>(col_scale[static_cast<size_t>(j)]); };
  // a = P H P (P reverses the order), so that its lower Cholesky factor M gives H = R R^T with R = P M P
  // upper, and then (H + damp)^-1 = R^-T R^-1: U = R^-1 = P M^-1 P.
  std::vector<double> a(static_cast<size_t>(n * n));
  double mean_diag = 0.0;
  for (int64_t i = 0; i < n; ++i) mean_diag += gram[static_cast<size_t>(i * n + i)] / (s(i) * s(i)) / static_cast<double>(n);
  if (!(mean_diag > 0.0) || !std::isfinite(mean_diag)) return {};
  const double damp = 0.01 * mean_diag;
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const int64_t gi = n - 1 - i, gj = n - 1 - j;
      a[static_cast<size_t>(i * n + j)] = gram[static_cast<size_t>(gi * n + gj)] / (s(gi) * s(gj)) + (i == j ? damp : 0.0);
    }
  // Cholesky, lower, in place: row i of M at a[i * n .. i * n + i]
  for (int64_t j = 0; j < n; ++j) {
    double* aj = a.data() + j * n;
    const double djj = aj[j] - dot(aj, aj, j);
    if (!(djj > 0.0)) return {};
    aj[j] = std::sqrt(djj);
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n - j > 64)
    for (int64_t i = j + 1; i < n; ++i) {
      double* ai = a.data() + i * n;
      ai[j] = (ai[j] - dot(ai, aj, j)) / aj[j];
    }
  }
  // X = M^-1 (lower), row by row: X_i = (e_i - sum over k < i of M_ik X_k) / M_ii
  std::vector<double> x(static_cast<size_t>(n * n), 0.0);
  std::vector<double> acc(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double* mi = a.data() + i * n;
    std::fill(acc.begin(), acc.begin() + i, 0.0);
#pragma omp parallel num_threads(n_threads) if (i > 128)
    {
      const int nt = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t j0 = i * t / nt, j1 = i * (t + 1) / nt;  // this thread's columns of row i
      for (int64_t k = j0; k < i; ++k) {
        const double* xk = x.data() + k * n;
        const double mik = mi[k];
        for (int64_t j = j0; j < std::min(j1, k + 1); ++j) acc[static_cast<size_t>(j)] += mik * xk[j];
      }
    }
    double* xi = x.data() + i * n;
    for (int64_t j = 0; j < i; ++j) xi[j] = -acc[static_cast<size_t>(j)] / mi[i];
    xi[i] = 1.0 / mi[i];
  }
  std::vector<float> u(static_cast<size_t>(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j)
      u[static_cast<size_t>(i * n + j)] = static_cast<float>(x[static_cast<size_t>((n - 1 - i) * n + (n - 1 - j))]);
  return u;
}

std::vector<std::byte> gptq_round(GgmlType type, const float* w, int64_t rows, int64_t n, std::span<const float> u,
                                  std::vector<float>& deq, int n_threads) {
  QE_CHECK(gptq_supports(type) && n % 32 == 0 && u.size() == static_cast<size_t>(n * n));
  const auto row_bytes = static_cast<size_t>(ggml_row_bytes(type, static_cast<uint64_t>(n)));
  const size_t block_bytes = row_bytes / static_cast<size_t>(n / 32);
  std::vector<std::byte> out(row_bytes * static_cast<size_t>(rows));
  deq.resize(static_cast<size_t>(rows * n));
  const BlockRounder br{type};
#pragma omp parallel num_threads(n_threads)
  {
    std::vector<float> buf(static_cast<size_t>(n));
#pragma omp for schedule(dynamic, 4)
    for (int64_t r = 0; r < rows; ++r) {
      std::copy(w + r * n, w + (r + 1) * n, buf.begin());
      std::byte* row_out = out.data() + static_cast<size_t>(r) * row_bytes;
      float* dr = deq.data() + r * n;
      for (int64_t c0 = 0; c0 < n; c0 += 32) {
        std::byte* block = row_out + static_cast<size_t>(c0 / 32) * block_bytes;
        float d = 0, id = 0, m = 0, m16 = 0;
        br.start(buf.data() + c0, block, d, id, m, m16);
        for (int64_t j = c0; j < c0 + 32; ++j) {
          dr[j] = br.put(block, static_cast<int>(j - c0), buf[static_cast<size_t>(j)], d, id, m, m16);
          const float* uj = u.data() + j * n;
          const float e = (buf[static_cast<size_t>(j)] - dr[j]) / uj[j];
          for (int64_t k = j + 1; k < n; ++k) buf[static_cast<size_t>(k)] -= e * uj[k];
        }
      }
    }
  }
  return out;
}

}  // namespace qe::convert
