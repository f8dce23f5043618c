// Quantizers and tile (dot) kernels of every SIMD level this CPU runs, against the scalar reference.
// Quantizers must be byte-identical; integer block sums must be exact (checked with unit scales, where the
// float result IS the integer sum); random scales hold a tolerance derived from the inputs.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "formats/blocks.h"
#include "kernels/kernel_table.h"
#include "kernels/matmul.h"

namespace qe::kernels {
namespace {

constexpr int64_t kSizes[] = {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 67, 127, 129, 255, 1023, 4096};

std::vector<float> random_floats(std::mt19937& rng, int64_t n, float scale) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  // Plant an exact tie and a .5 rounding case now and then: where SIMD rounding differs from roundf.
  if (n >= 32) v[3] = -v[7];
  return v;
}

class KernelIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    simd_ = kernel_table(GetParam());
    if (!simd_) GTEST_SKIP() << "skipping " << isa_name(GetParam()) << ": this CPU/build lacks it";
    ref_ = kernel_table(Isa::ref);
    ASSERT_NE(ref_, nullptr);
  }
  const KernelTable* simd_ = nullptr;
  const KernelTable* ref_ = nullptr;
};

template <class Block>
void expect_same_bytes(const std::vector<Block>& a, const std::vector<Block>& b, uint32_t seed, int64_t n) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_EQ(0, std::memcmp(&a[i], &b[i], sizeof(Block))) << "block " << i << " seed " << seed << " n " << n;
}

TEST_P(KernelIsa, QuantizersMatchReferenceBytes) {
  for (int64_t nb : kSizes) {
    if (nb > 1023) continue;
    const uint32_t seed = static_cast<uint32_t>(1000 + nb);
    std::mt19937 rng(seed);
    const int64_t n = nb * 32;
    auto x = random_floats(rng, n, 3.0f);
    if (nb > 2) std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // all-zero block: d = 0 path
    // x/d landing exactly on .5: scale a block so amax = 127 and put 2.5 / -3.5 in it.
    x[0] = 127.0f, x[1] = 2.5f, x[2] = -3.5f;
    // ... and just below a half (a nearest-rounded x + 0.5 would carry them up), on 0.5 itself, at the top.
    x[3] = 0.49999997f, x[4] = -0.49999997f, x[5] = 1.4999999f, x[6] = -2.4999998f, x[7] = 0.5f,
    x[8] = -126.5f;
    {
      std::vector<BlockQ8_0> a(nb), b(nb);
      simd_->quantize_q8_0(x.data(), a.data(), n);
      quantize_row_q8_0_ref(x.data(), b.data(), n);
      expect_same_bytes(a, b, seed, n);
    }
    {
      std::vector<BlockQ8_1> a(nb), b(nb);
      simd_->quantize_q8_1(x.data(), a.data(), n);
      quantize_row_q8_1_ref(x.data(), b.data(), n);
      expect_same_bytes(a, b, seed, n);
    }
    if (nb % 8 == 0 || nb < 8) {
      const int64_t nk = std::max<int64_t>(1, nb / 8) * QK_K;
      auto xk = random_floats(rng, nk, 2.0f);
      xk[5] = -9.0f, xk[9] = 9.0f;  // |max| tie between signs: the first one decides the sign
      std::vector<BlockQ8_K> a(nk / QK_K), b(nk / QK_K);
      simd_->quantize_q8_K(xk.data(), a.data(), nk);
      quantize_row_q8_K_ref(xk.data(), b.data(), nk);
      expect_same_bytes(a, b, seed, nk);
    }
  }
}

void to_float(GgmlType t, const void* x, float* y, int64_t n) {
  switch (t) {
    case GgmlType::Q4_0: dequantize_row_q4_0(static_cast<const BlockQ4_0*>(x), y, n); break;
    case GgmlType::Q4_1: dequantize_row_q4_1(static_cast<const BlockQ4_1*>(x), y, n); break;
    case GgmlType::Q8_0: dequantize_row_q8_0(static_cast<const BlockQ8_0*>(x), y, n); break;
    case GgmlType::Q8_1: dequantize_row_q8_1(static_cast<const BlockQ8_1*>(x), y, n); break;
    case GgmlType::Q6_K: dequantize_row_q6_K(static_cast<const BlockQ6_K*>(x), y, n); break;
    case GgmlType::Q5_0: dequantize_row_q5_0(static_cast<const BlockQ5_0*>(x), y, n); break;
    case GgmlType::Q5_1: dequantize_row_q5_1(static_cast<const BlockQ5_1*>(x), y, n); break;
    case GgmlType::IQ4_NL: dequantize_row_iq4_nl(static_cast<const BlockIQ4_NL*>(x), y, n); break;
    case GgmlType::Q2_K: dequantize_row_q2_K(static_cast<const BlockQ2_K*>(x), y, n); break;
    case GgmlType::Q3_K: dequantize_row_q3_K(static_cast<const BlockQ3_K*>(x), y, n); break;
    case GgmlType::Q4_K: dequantize_row_q4_K(static_cast<const BlockQ4_K*>(x), y, n); break;
    case GgmlType::Q5_K: dequantize_row_q5_K(static_cast<const BlockQ5_K*>(x), y, n); break;
    case GgmlType::IQ4_XS: dequantize_row_iq4_xs(static_cast<const BlockIQ4_XS*>(x), y, n); break;
    case GgmlType::Q8_K: dequantize_row_q8_K(static_cast<const BlockQ8_K*>(x), y, n); break;
    case GgmlType::F16: dequantize_row_f16(static_cast<const uint16_t*>(x), y, n); break;
    case GgmlType::BF16: dequantize_row_bf16(static_cast<const uint16_t*>(x), y, n); break;
    default: std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float)); break;
  }
}

// ---- Random operands per type. `unit` = all scales 1 and small integers so every partial sum is an
// integer below 2^24: then the float result equals the integer sum exactly, in any order.
struct Operands {
  std::vector<uint8_t> w, a;
  int64_t w_stride = 0, a_stride = 0;
  std::vector<float> wf, af;  // dequantized
  // |w| for tolerances: |d * q| + |m| per element where a type subtracts a minimum, since the kernels
  // round the two terms apart (their cancellation is not an error of the kernel).
  std::vector<float> wabs;
};

// The generators below keep d, dmin >= 0 and m <= 0, so flipping the minimum's sign bit and
// dequantizing gives |d * q| + |min| element by element.
void to_float_abs(GgmlType t, const uint8_t* row, float* y, int64_t n, int64_t row_bytes) {
  std::vector<uint8_t> copy(row, row + row_bytes);
  const auto info = ggml_type_info(t);
  const int64_t nb = n / info.block_size;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* blk = copy.data() + b * static_cast<int64_t>(info.type_size);
    uint16_t* m = nullptr;
    switch (t) {
      case GgmlType::Q4_1: m = &reinterpret_cast<BlockQ4_1*>(blk)->m; break;
      case GgmlType::Q5_1: m = &reinterpret_cast<BlockQ5_1*>(blk)->m; break;
      case GgmlType::Q2_K: m = &reinterpret_cast<BlockQ2_K*>(blk)->dmin; break;
      case GgmlType::Q4_K: m = &reinterpret_cast<BlockQ4_K*>(blk)->dmin; break;
      case GgmlType::Q5_K: m = &reinterpret_cast<BlockQ5_K*>(blk)->dmin; break;
      default: break;
    }
    if (m) *m ^= 0x8000;
  }
  to_float(t, copy.data(), y, n);
  for (int64_t i = 0; i < n; ++i) y[i] = std::fabs(y[i]);
}

const uint16_t kOne = 0x3C00;  // fp16 1.0

// Extremes (unit only): fill >= 0 sets every weight byte but the scales to it, a_value != 0 every
// activation to it.
Operands make_operands(GgmlType wt, int64_t n, int64_t nr, int64_t nc, bool unit, std::mt19937& rng,
                       const KernelTable& ref, int fill = -1, int a_value = 0) {
  Operands o;
  std::uniform_int_distribution<int> byte(0, 255), small(-7, 7), sc(-8, 8);
  std::uniform_real_distribution<float> dscale(0.001f, 0.05f);
  const auto info = ggml_type_info(wt);
  o.w_stride = static_cast<int64_t>(ggml_row_bytes(wt, static_cast<uint64_t>(n)));
  o.w.resize(static_cast<size_t>(o.w_stride * nr));
  for (auto& b : o.w) b = static_cast<uint8_t>(fill >= 0 ? fill : byte(rng));
  const int64_t nb = n / info.block_size;
  for (int64_t r = 0; r < nr; ++r) {
    uint8_t* row = o.w.data() + r * o.w_stride;
    for (int64_t b = 0; b < nb; ++b) {
      const uint16_t d = unit ? kOne : fp32_to_fp16(dscale(rng));
      switch (wt) {
        case GgmlType::Q4_0: reinterpret_cast<BlockQ4_0*>(row)[b].d = d; break;
        case GgmlType::Q4_1:
          reinterpret_cast<BlockQ4_1*>(row)[b].d = d;
          reinterpret_cast<BlockQ4_1*>(row)[b].m = unit ? 0 : fp32_to_fp16(-8.0f * dscale(rng));
          break;
        case GgmlType::Q8_0: reinterpret_cast<BlockQ8_0*>(row)[b].d = d; break;
        case GgmlType::Q6_K: {
          auto& blk = reinterpret_cast<BlockQ6_K*>(row)[b];
          blk.d = unit ? kOne : fp32_to_fp16(dscale(rng) * 0.05f);
          for (auto& s : blk.scales) s = static_cast<int8_t>(unit ? sc(rng) : byte(rng) - 128);
          break;
        }
        case GgmlType::Q5_0: reinterpret_cast<BlockQ5_0*>(row)[b].d = d; break;
        case GgmlType::Q5_1:
          reinterpret_cast<BlockQ5_1*>(row)[b].d = d;
          reinterpret_cast<BlockQ5_1*>(row)[b].m = unit ? 0 : fp32_to_fp16(-16.0f * dscale(rng));
          break;
        case GgmlType::IQ4_NL:
          reinterpret_cast<BlockIQ4_NL*>(row)[b].d = unit ? kOne : fp32_to_fp16(dscale(rng) / 16);
          break;
        // k-quants: random quants and sub-scales (unit: sub-scales small enough that every partial sum
        // stays an integer below 2^24 over 33 super-blocks), positive super-block scales.
        case GgmlType::Q2_K: {
          auto& blk = reinterpret_cast<BlockQ2_K*>(row)[b];
          blk.d = unit ? kOne : fp32_to_fp16(dscale(rng) * 0.3f);
          blk.dmin = unit ? kOne : fp32_to_fp16(dscale(rng) * 0.3f);
          break;
        }
        case GgmlType::Q3_K:
          reinterpret_cast<BlockQ3_K*>(row)[b].d = unit ? kOne : fp32_to_fp16(dscale(rng) * 0.05f);
          break;
        case GgmlType::Q4_K: {
          auto& blk = reinterpret_cast<BlockQ4_K*>(row)[b];
          blk.d = unit ? kOne : fp32_to_fp16(dscale(rng) * 0.03f);
          blk.dmin = unit ? kOne : fp32_to_fp16(dscale(rng) * 0.1f);
          if (unit) for (auto& s : blk.scales) s &= 0x0F;  // scales and mins 0..15
          break;
        }
        case GgmlType::Q5_K: {
          auto& blk = reinterpret_cast<BlockQ5_K*>(row)[b];
          blk.d = unit ? kOne : fp32_to_fp16(dscale(rng) * 0.015f);
          blk.dmin = unit ? kOne : fp32_to_fp16(dscale(rng) * 0.1f);
          if (unit) for (auto& s : blk.scales) s &= 0x07;  // scales and mins 0..7
          break;
        }
        case GgmlType::IQ4_XS: {
          auto& blk = reinterpret_cast<BlockIQ4_XS*>(row)[b];
          blk.d = unit ? kOne : fp32_to_fp16(dscale(rng) * 0.005f);
          if (unit) {  // ls - 32 in -2..2
            std::uniform_int_distribution<int> ls_d(30, 34);
            blk.scales_h = 0;
            for (int g = 0; g < 8; ++g) {
              const int ls = ls_d(rng);
              if (g % 2 == 0) blk.scales_l[g / 2] = static_cast<uint8_t>(ls & 0x0F);
              else blk.scales_l[g / 2] = static_cast<uint8_t>(blk.scales_l[g / 2] | (ls & 0x0F) << 4);
              blk.scales_h = static_cast<uint16_t>(blk.scales_h | (ls >> 4) << (2 * g));
            }
          }
          break;
        }
        default: break;
      }
    }
    if (wt == GgmlType::F16 || wt == GgmlType::BF16 || wt == GgmlType::F32) {
      auto f = random_floats(rng, n, 1.0f);
      if (wt == GgmlType::F32) std::memcpy(row, f.data(), static_cast<size_t>(n) * 4);
      else if (wt == GgmlType::F16) quantize_row_f16_ref(f.data(), reinterpret_cast<uint16_t*>(row), n);
      else quantize_row_bf16_ref(f.data(), reinterpret_cast<uint16_t*>(row), n);
    }
  }
  const GgmlType at = *activation_type(wt);
  o.a_stride = static_cast<int64_t>(ggml_row_bytes(at, static_cast<uint64_t>(n)));
  o.a.resize(static_cast<size_t>(o.a_stride * nc));
  for (int64_t c = 0; c < nc; ++c) {
    std::vector<float> x = random_floats(rng, n, 1.0f);
    if (unit) for (float& v : x) v = static_cast<float>(a_value != 0 ? a_value : small(rng));
    uint8_t* row = o.a.data() + c * o.a_stride;
    if (at == GgmlType::F32) {
      std::memcpy(row, x.data(), static_cast<size_t>(n) * 4);
    } else if (!unit) {
      (at == GgmlType::Q8_0 ? ref.quantize_q8_0 : at == GgmlType::Q8_1 ? ref.quantize_q8_1 : ref.quantize_q8_K)(
          x.data(), row, n);
    } else if (at == GgmlType::Q8_K) {  // d = 1: q = x, bsums consistent with q
      for (int64_t b = 0; b < n / QK_K; ++b) {
        auto& blk = reinterpret_cast<BlockQ8_K*>(row)[b];
        blk.d = 1.0f;
        for (int j = 0; j < QK_K; ++j) blk.qs[j] = static_cast<int8_t>(x[b * QK_K + j]);
        for (int g = 0; g < 16; ++g) {
          int s = 0;
          for (int j = 0; j < 16; ++j) s += blk.qs[16 * g + j];
          blk.bsums[g] = static_cast<int16_t>(s);
        }
      }
    } else {
      for (int64_t b = 0; b < n / 32; ++b) {
        int8_t* qs = at == GgmlType::Q8_0 ? reinterpret_cast<BlockQ8_0*>(row)[b].qs : reinterpret_cast<BlockQ8_1*>(row)[b].qs;
        for (int j = 0; j < 32; ++j) qs[j] = static_cast<int8_t>(x[b * 32 + j]);
        if (at == GgmlType::Q8_0) reinterpret_cast<BlockQ8_0*>(row)[b].d = kOne;
        else reinterpret_cast<BlockQ8_1*>(row)[b].d = kOne, reinterpret_cast<BlockQ8_1*>(row)[b].s = 0;
      }
    }
  }
  // Dequantized copies for |w|.|a| (tolerances).
  o.wf.resize(static_cast<size_t>(n * nr));
  o.af.resize(static_cast<size_t>(n * nc));
  o.wabs.resize(o.wf.size());
  for (int64_t r = 0; r < nr; ++r) {
    to_float(wt, o.w.data() + r * o.w_stride, o.wf.data() + r * n, n);
    to_float_abs(wt, o.w.data() + r * o.w_stride, o.wabs.data() + r * n, n, o.w_stride);
  }
  for (int64_t c = 0; c < nc; ++c) to_float(at, o.a.data() + c * o.a_stride, o.af.data() + c * n, n);
  return o;
}

}  // namespace

MatmulTileFn tile_of(const KernelTable& k, GgmlType t) {
  switch (t) {
    case GgmlType::Q4_0: return k.tile_q4_0_q8_0;
    case GgmlType::Q4_1: return k.tile_q4_1_q8_1;
    case GgmlType::Q8_0: return k.tile_q8_0_q8_0;
    case GgmlType::Q6_K: return k.tile_q6_K_q8_K;
    case GgmlType::Q5_0: return k.tile_q5_0_q8_0;
    case GgmlType::Q5_1: return k.tile_q5_1_q8_1;
    case GgmlType::IQ4_NL: return k.tile_iq4_nl_q8_0;
    case GgmlType::Q2_K: return k.tile_q2_K_q8_K;
    case GgmlType::Q3_K: return k.tile_q3_K_q8_K;
    case GgmlType::Q4_K: return k.tile_q4_K_q8_K;
    case GgmlType::Q5_K: return k.tile_q5_K_q8_K;
    case GgmlType::IQ4_XS: return k.tile_iq4_xs_q8_K;
    case GgmlType::F16: return k.tile_f16_f32;
    case GgmlType::BF16: return k.tile_bf16_f32;
    default: return k.tile_f32_f32;
  }
}

constexpr GgmlType kWeightTypes[] = {GgmlType::Q4_0, GgmlType::Q4_1,  GgmlType::Q8_0, GgmlType::Q6_K,
                                     GgmlType::Q5_0, GgmlType::Q5_1,  GgmlType::IQ4_NL, GgmlType::Q2_K,
                                     GgmlType::Q3_K, GgmlType::Q4_K,  GgmlType::Q5_K, GgmlType::IQ4_XS,
                                     GgmlType::F16,  GgmlType::BF16, GgmlType::F32};

bool is_float(GgmlType t) { return t == GgmlType::F16 || t == GgmlType::BF16 || t == GgmlType::F32; }

// Row length in elements for a sweep value: block counts for quantized types (super-blocks capped to
// keep q6_K fast), element counts for float types (exercises the scalar tails).
int64_t row_length(GgmlType t, int64_t size) {
  if (is_float(t)) return size;
  if (ggml_type_info(t).block_size == QK_K) return std::min<int64_t>(size, 33) * QK_K;
  return std::min<int64_t>(size, 1023) * 32;
}

struct TileCase { int64_t n, nr, nc; };

std::vector<TileCase> tile_cases(GgmlType t) {
  std::vector<TileCase> cases;
  for (int64_t s : kSizes) cases.push_back({row_length(t, s), 1, 1});        // one long dot per size
  for (int64_t s : {1, 2, 3, 5, 7, 8, 9, 15, 17}) cases.push_back({row_length(t, 3), s, 1});  // GEMV rows
  for (int64_t s : {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33}) cases.push_back({row_length(t, 2), 5, s});  // tokens
  cases.push_back({row_length(t, 7), 7, 3});
  return cases;
}

// Each (r, c) vs the reference: exact when unit scales, else |d| <= 20 * sum|w*a| * eps.
void check_tiles(const KernelTable& simd, const KernelTable& ref, bool unit) {
  for (GgmlType wt : kWeightTypes) {
    if (unit && is_float(wt)) continue;
    for (const TileCase& tc : tile_cases(wt)) {
      const uint32_t seed = static_cast<uint32_t>(tc.n * 131 + tc.nr * 17 + tc.nc + (unit ? 7 : 0));
      std::mt19937 rng(seed);
      const Operands o = make_operands(wt, tc.n, tc.nr, tc.nc, unit, rng, ref);
      std::vector<float> ys(static_cast<size_t>(tc.nr * tc.nc)), yr(ys.size());
      tile_of(simd, wt)(tc.n, o.w.data(), o.w_stride, tc.nr, o.a.data(), o.a_stride, tc.nc, ys.data(), tc.nr);
      tile_of(ref, wt)(tc.n, o.w.data(), o.w_stride, tc.nr, o.a.data(), o.a_stride, tc.nc, yr.data(), tc.nr);
      for (int64_t c = 0; c < tc.nc; ++c)
        for (int64_t r = 0; r < tc.nr; ++r) {
          const float got = ys[static_cast<size_t>(c * tc.nr + r)], want = yr[static_cast<size_t>(c * tc.nr + r)];
          const char* what = unit ? "exact integer sum" : "tolerance";
          if (unit) {
            ASSERT_EQ(got, want) << ggml_type_name(wt) << " " << what << " n=" << tc.n << " r=" << r << " c=" << c
                                 << " seed=" << seed;
          } else {
            double mag = 0;
            for (int64_t i = 0; i < tc.n; ++i)
              mag += static_cast<double>(o.wabs[static_cast<size_t>(r * tc.n + i)]) *
                     std::fabs(o.af[static_cast<size_t>(c * tc.n + i)]);
            const double tol = 20.0 * mag * FLT_EPSILON;
            ASSERT_LE(std::fabs(static_cast<double>(got) - want), tol)
                << ggml_type_name(wt) << " " << what << " n=" << tc.n << " r=" << r << " c=" << c << " seed=" << seed;
          }
        }
      // GEMM == GEMV column by column, bit for bit: the result may not depend on the tile shape.
      for (int64_t c = 0; c < tc.nc; ++c) {
        std::vector<float> col(static_cast<size_t>(tc.nr));
        tile_of(simd, wt)(tc.n, o.w.data(), o.w_stride, tc.nr, o.a.data() + c * o.a_stride, o.a_stride, 1, col.data(), tc.nr);
        for (int64_t r = 0; r < tc.nr; ++r)
          ASSERT_EQ(col[static_cast<size_t>(r)], ys[static_cast<size_t>(c * tc.nr + r)])
              << ggml_type_name(wt) << " GEMV != GEMM n=" << tc.n << " r=" << r << " c=" << c << " seed=" << seed;
      }
    }
  }
}

TEST_P(KernelIsa, TilesExactIntegerSums) { check_tiles(*simd_, *ref_, true); }
TEST_P(KernelIsa, TilesWithinToleranceOfReference) { check_tiles(*simd_, *ref_, false); }

// The largest quants against +-127 activations, unit scales: where a maddubs pair would saturate if a
// policy's bound were wrong (iq4 levels -127 x -127 reach 2 * 127 * 127). Every product has one sign,
// so the sums are as large as they get; all stay integers below 2^24.
TEST_P(KernelIsa, TilesExactAtExtremes) {
  for (GgmlType wt : kWeightTypes) {
    if (is_float(wt)) continue;
    for (int fill : {0x00, 0xFF})
      for (int av : {127, -127}) {
        std::mt19937 rng(static_cast<uint32_t>(fill + av));
        const int64_t n = QK_K, nr = 3, nc = 9;
        const Operands o = make_operands(wt, n, nr, nc, true, rng, *ref_, fill, av);
        std::vector<float> ys(static_cast<size_t>(nr * nc)), yr(ys.size());
        tile_of(*simd_, wt)(n, o.w.data(), o.w_stride, nr, o.a.data(), o.a_stride, nc, ys.data(), nr);
        tile_of(*ref_, wt)(n, o.w.data(), o.w_stride, nr, o.a.data(), o.a_stride, nc, yr.data(), nr);
        for (size_t i = 0; i < ys.size(); ++i)
          ASSERT_EQ(ys[i], yr[i]) << ggml_type_name(wt) << " fill=" << fill << " a=" << av << " i=" << i;
      }
  }
}

// The reference itself against plain dequantize-then-dot in double (guards the reference's layout).
TEST(KernelRef, TilesMatchDequantizedDot) {
  const KernelTable& ref = *kernel_table(Isa::ref);
  for (GgmlType wt : kWeightTypes) {
    const int64_t n = row_length(wt, 5);
    const uint32_t seed = 77;
    std::mt19937 rng(seed);
    const Operands o = make_operands(wt, n, 3, 2, false, rng, ref);
    std::vector<float> y(6);
    tile_of(ref, wt)(n, o.w.data(), o.w_stride, 3, o.a.data(), o.a_stride, 2, y.data(), 3);
    for (int c = 0; c < 2; ++c)
      for (int r = 0; r < 3; ++r) {
        double want = 0, mag = 0;
        for (int64_t i = 0; i < n; ++i) {
          const size_t wi = static_cast<size_t>(r * n + i), ai = static_cast<size_t>(c * n + i);
          want += static_cast<double>(o.wf[wi]) * o.af[ai];
          mag += static_cast<double>(o.wabs[wi]) * std::fabs(o.af[ai]);
        }
        // q4_1 / q5_1's m * s uses the fp16-rounded s = d * sum(q): allow its rounding (2^-11 relative).
        const bool fp16_s = wt == GgmlType::Q4_1 || wt == GgmlType::Q5_1;
        const double tol = 20.0 * mag * FLT_EPSILON + (fp16_s ? mag * 0x1p-10 : 0.0);
        EXPECT_NEAR(y[static_cast<size_t>(c * 3 + r)], want, tol) << ggml_type_name(wt) << " r=" << r << " c=" << c;
      }
  }
}

INSTANTIATE_TEST_SUITE_P(AllLevels, KernelIsa, ::testing::Values(Isa::avx2, Isa::avx512, Isa::neon),
                         [](const auto& p) { return std::string(isa_name(p.param)); });

}  // namespace qe::kernels
