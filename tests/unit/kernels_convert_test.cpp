// Weight-conversion kernels (qconvert's f16/bf16 -> f32, f32 -> q4_0/q4_1/q8_0/f16/bf16, dequantize, error
// pass) of every SIMD level this CPU runs, byte for byte against the reference level (formats/blocks.cpp):
// random rows at fixed seeds, random bit patterns (every NaN payload, Inf, subnormal), and hand-made edge
// blocks (zeros of both signs, constants, one outlier, f16 range ends and subnormals, exact .5 ties).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "formats/blocks.h"
#include "kernels/kernel_table.h"

namespace qe::kernels {
namespace {

constexpr int64_t kBlockSizes[] = {32, 64, 96, 4096};
constexpr int64_t kElementSizes[] = {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 67, 127, 129, 255, 1023, 4096};
constexpr int64_t kRows = 3;
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> normal_row(uint32_t seed, int64_t n, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

// Any 32-bit pattern: NaNs with every payload (signalling too), infinities, subnormals, huge values.
std::vector<float> bits_row(uint32_t seed, int64_t n) {
  std::mt19937 rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = std::bit_cast<float>(static_cast<uint32_t>(rng()));
  return v;
}

std::vector<uint16_t> bits16(uint32_t seed, int64_t n) {
  std::mt19937 rng(seed);
  std::vector<uint16_t> v(static_cast<size_t>(n));
  for (uint16_t& h : v) h = static_cast<uint16_t>(rng());
  return v;
}

// Blocks on which fusing the reference's product and sum into one FMA changes q: x * id + c rounds the
// product first, so a product just below id * x = (midpoint under an integer) - c rounds onto the
// midpoint, whose tie goes up to the integer, while the fused sum stays below it. Found by searching
// around each integer boundary for a few scales d; the search's own product is volatile (GCC would fuse
// it on FMA targets). q4_0 blocks start with -8d (so d = -8d / -8), q4_1 blocks with min 1, max 1 + 15d.
// Returns the row and, through found, how many sensitive values it holds.
std::vector<float> fma_sensitive_row(bool q4_1, int* found) {
  const float c = q4_1 ? 0.5f : 8.5f;
  std::vector<float> row;
  *found = 0;
  for (float d : {3.0f, 5.0f, 7.0f, 11.0f, 13.0f, 0.75f, 0.3f}) {
    const float lo = q4_1 ? 1.0f : -8.0f * d, id = 1.0f / (q4_1 ? (1.0f + 15.0f * d - lo) / 15 : lo / -8);
    std::vector<float> v{lo};
    if (q4_1) v.push_back(1.0f + 15.0f * d);
    for (int k = 1; k <= 16 && v.size() < 32; ++k) {
      float x = (static_cast<float>(k) - c) * d + (q4_1 ? lo : 0.0f);
      for (int step = 0; step < 3000; ++step) x = std::nextafter(x, -kInf);
      for (int step = 0; step < 6000 && v.size() < 32; ++step, x = std::nextafter(x, kInf)) {
        const float xs = q4_1 ? x - lo : x;
        volatile float p = xs * id;
        const float sum = p + c;
        if (x > lo && static_cast<int>(sum) != static_cast<int>(std::fma(xs, id, c))) {
          v.push_back(x);
          ++*found;
        }
      }
    }
    while (v.size() < 32) v.push_back(q4_1 ? 2.0f : 1.0f);
    row.insert(row.end(), v.begin(), v.end());
  }
  return row;
}

// 32-element blocks a quantizer's special cases live in. Each is a named block; rows are built from them.
std::vector<std::pair<std::string, std::vector<float>>> edge_blocks() {
  std::vector<std::pair<std::string, std::vector<float>>> b;
  auto add = [&](std::string name, auto f) {
    std::vector<float> v(32);
    for (int j = 0; j < 32; ++j) v[static_cast<size_t>(j)] = f(j);
    b.emplace_back(std::move(name), std::move(v));
  };
  add("zeros", [](int) { return 0.0f; });
  add("neg_zeros", [](int) { return -0.0f; });
  add("mixed_zeros", [](int j) { return j % 3 ? 0.0f : -0.0f; });
  add("neg_zero_first", [](int j) { return j == 0 ? -0.0f : 0.0f; });
  add("zeros_then_positive", [](int j) { return j < 31 ? (j % 2 ? -0.0f : 0.0f) : 1.0f; });
  add("zeros_then_negative", [](int j) { return j < 31 ? (j % 2 ? 0.0f : -0.0f) : -1.0f; });
  add("constant", [](int) { return 0.75f; });
  add("neg_constant", [](int) { return -3.0f; });
  add("outlier", [](int j) { return j == 17 ? 1000.0f : 0.001f * static_cast<float>(j - 16); });
  add("neg_outlier", [](int j) { return j == 5 ? -1000.0f : 0.001f * static_cast<float>(j); });
  add("tie_magnitude", [](int j) { return j == 3 ? 2.0f : (j == 9 ? -2.0f : 0.1f); });
  add("tie_magnitude_neg_first", [](int j) { return j == 3 ? -2.0f : (j == 9 ? 2.0f : 0.1f); });
  add("f16_max", [](int j) { return j % 2 ? 65504.0f : -65504.0f; });
  add("f16_overflow", [](int j) { return j == 0 ? 65520.0f * 8 : 1.0f; });
  add("f16_subnormal", [](int j) { return static_cast<float>(j - 16) * 0x1p-24f; });
  add("f16_tiny_scale", [](int j) { return static_cast<float>(j) * 0x1p-27f; });
  add("f32_subnormal", [](int j) { return static_cast<float>(j - 7) * 0x1p-140f; });
  add("f32_min_subnormal", [](int j) { return j == 4 ? 0x1p-149f : 0.0f; });
  add("huge", [](int j) { return (j % 2 ? 3e38f : -2e38f) * static_cast<float>(j + 1) / 32.0f; });
  // d = 1 (max -8 for q4_0, amax 127 for q8_0, range 15 for q4_1): x * id + 8.5 and roundf sit on .5 ties.
  add("q4_0_ties", [](int j) { return j == 0 ? -8.0f : static_cast<float>(j % 16) - 8.0f + 0.5f; });
  add("q8_0_ties", [](int j) { return j == 0 ? 127.0f : static_cast<float>(j * 4 - 64) + 0.5f; });
  add("q8_0_neg_ties", [](int j) { return j == 31 ? -127.0f : -0.5f - static_cast<float>(j); });
  add("q4_1_ties",
      [](int j) { return j == 0 ? 0.0f + 1 : (j == 1 ? 16.0f : 1.0f + static_cast<float>(j % 15) + 0.5f); });
  add("inf", [](int j) { return j == 7 ? kInf : 1.0f; });
  add("neg_inf", [](int j) { return j == 7 ? -kInf : 1.0f; });
  add("both_inf", [](int j) { return j == 7 ? -kInf : (j == 20 ? kInf : 0.5f); });
  add("all_inf", [](int) { return kInf; });
  add("nan_first", [](int j) { return j == 0 ? kNaN : static_cast<float>(j); });
  add("nan_middle", [](int j) { return j == 16 ? kNaN : static_cast<float>(j) - 20.0f; });
  add("nan_last", [](int j) { return j == 31 ? kNaN : static_cast<float>(j); });
  add("all_nan", [](int) { return kNaN; });
  add("signalling_nan", [](int j) { return j == 2 ? std::bit_cast<float>(0x7f800001u) : -1.5f; });
  add("nan_payload_low_bits", [](int j) { return j % 4 ? std::bit_cast<float>(0xff800fffu) : 2.0f; });
  add("nan_and_inf", [](int j) { return j == 3 ? kNaN : (j == 4 ? kInf : 1.0f); });
  // f16 rounding ties: low 13 mantissa bits exactly 0x1000, even and odd kept bits; bf16 ties at 0x8000.
  add("f16_ties",
      [](int j) { return std::bit_cast<float>(0x3f800000u + (static_cast<uint32_t>(j) << 13) + 0x1000u); });
  add("bf16_ties",
      [](int j) { return std::bit_cast<float>(0x3f800000u + (static_cast<uint32_t>(j) << 16) + 0x8000u); });
  return b;
}

std::vector<uint32_t> as_bits(const std::vector<float>& v) {
  std::vector<uint32_t> u(v.size());
  std::memcpy(u.data(), v.data(), v.size() * sizeof(float));
  return u;
}

using Quantizer = QuantizeRowFn KernelTable::*;
using Dequantizer = RowToF32Fn KernelTable::*;

struct OutType {
  const char* name;
  Quantizer quantize;
  Dequantizer dequantize;  // nullptr for f16/bf16 (covered by the element tests)
  size_t block_bytes;      // bytes per 32 elements
};

constexpr OutType kOutTypes[] = {
    {"q4_0", &KernelTable::quantize_row_q4_0, &KernelTable::to_f32_q4_0, sizeof(BlockQ4_0)},
    {"q4_1", &KernelTable::quantize_row_q4_1, &KernelTable::to_f32_q4_1, sizeof(BlockQ4_1)},
    {"q8_0", &KernelTable::quantize_row_q8_0, &KernelTable::to_f32_q8_0, sizeof(BlockQ8_0)},
    {"f16", &KernelTable::from_f32_f16, nullptr, 64},
    {"bf16", &KernelTable::from_f32_bf16, nullptr, 64},
};

class ConvertIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    simd_ = kernel_table(GetParam());
    if (!simd_) GTEST_SKIP() << "skipping " << isa_name(GetParam()) << ": this CPU/build lacks it";
    ref_ = kernel_table(Isa::ref);
  }

  // Quantizes x (n a multiple of 32) with both levels, compares the bytes, then dequantizes them with
  // both levels and compares the floats' bits.
  void expect_same_quant(const OutType& t, const std::vector<float>& x, const std::string& what) {
    const auto n = static_cast<int64_t>(x.size());
    const size_t bytes = x.size() / 32 * t.block_bytes;
    std::vector<uint8_t> qs(bytes, 0xcd), qr(bytes, 0xcd);
    (simd_->*t.quantize)(x.data(), qs.data(), n);
    (ref_->*t.quantize)(x.data(), qr.data(), n);
    for (size_t i = 0; i < bytes; ++i)
      ASSERT_EQ(qs[i], qr[i]) << t.name << " " << what << ": byte " << i << " (block " << i / t.block_bytes
                              << ", first value " << x[i / t.block_bytes * 32] << ")";
    if (t.dequantize == nullptr) return;
    std::vector<float> ys(x.size()), yr(x.size());
    (simd_->*t.dequantize)(qr.data(), ys.data(), n);
    (ref_->*t.dequantize)(qr.data(), yr.data(), n);
    ASSERT_EQ(as_bits(ys), as_bits(yr)) << t.name << " dequantize " << what;
  }

  const KernelTable* simd_ = nullptr;
  const KernelTable* ref_ = nullptr;
};

TEST_P(ConvertIsa, QuantizersMatchReferenceOnRandomRows) {
  for (const OutType& t : kOutTypes) {
    for (int64_t n : kBlockSizes) {
      for (float scale : {0.02f, 1.0f, 3000.0f}) {
        const auto seed = static_cast<uint32_t>(n * 7 + static_cast<int64_t>(scale * 10));
        expect_same_quant(t, normal_row(seed, n * kRows, scale),
                          "normal n=" + std::to_string(n) + " scale=" + std::to_string(scale) +
                              " seed=" + std::to_string(seed));
      }
      const auto seed = static_cast<uint32_t>(1000 + n);
      expect_same_quant(t, bits_row(seed, n * kRows),
                        "random bits n=" + std::to_string(n) + " seed=" + std::to_string(seed));
    }
  }
}

TEST_P(ConvertIsa, QuantizersMatchReferenceOnEdgeBlocks) {
  const auto edges = edge_blocks();
  for (const OutType& t : kOutTypes) {
    for (const auto& [name, block] : edges) expect_same_quant(t, block, name);
    // All edge blocks in one row, and each behind a random block (the kernels keep no state across
    // blocks, which this checks too).
    std::vector<float> row;
    for (const auto& e : edges) {
      const auto r = normal_row(static_cast<uint32_t>(row.size()), 32, 1.0f);
      row.insert(row.end(), r.begin(), r.end());
      row.insert(row.end(), e.second.begin(), e.second.end());
    }
    expect_same_quant(t, row, "edge row");
    int found = 0;
    expect_same_quant(t, fma_sensitive_row(false, &found), "q4_0 fma-sensitive row");
    expect_same_quant(t, fma_sensitive_row(true, &found), "q4_1 fma-sensitive row");
  }
}

TEST(ConvertEdges, FmaSensitiveRowsHoldSensitiveValues) {
  int found = 0;
  fma_sensitive_row(false, &found);
  EXPECT_GE(found, 8) << "q4_0: too few values to catch a fused multiply-add";
  fma_sensitive_row(true, &found);
  EXPECT_GE(found, 1) << "q4_1: too few values to catch a fused multiply-add";
}

TEST_P(ConvertIsa, HalfConversionsMatchReferenceBitForBit) {
  for (int64_t n : kElementSizes) {
    for (int kind = 0; kind < 2; ++kind) {
      const auto seed = static_cast<uint32_t>(n * 3 + kind);
      const auto x = kind == 0 ? normal_row(seed, n, 100.0f) : bits_row(seed, n);
      const std::string what = "n=" + std::to_string(n) + " seed=" + std::to_string(seed);
      std::vector<uint16_t> hs(x.size()), hr(x.size());
      simd_->from_f32_f16(x.data(), hs.data(), n);
      ref_->from_f32_f16(x.data(), hr.data(), n);
      ASSERT_EQ(hs, hr) << "f32 -> f16 " << what;
      simd_->from_f32_bf16(x.data(), hs.data(), n);
      ref_->from_f32_bf16(x.data(), hr.data(), n);
      ASSERT_EQ(hs, hr) << "f32 -> bf16 " << what;

      const auto h = bits16(seed, n);  // every f16/bf16 pattern class: subnormals, Inf, quiet/signalling NaN
      std::vector<float> ys(x.size()), yr(x.size());
      simd_->to_f32_f16(h.data(), ys.data(), n);
      ref_->to_f32_f16(h.data(), yr.data(), n);
      ASSERT_EQ(as_bits(ys), as_bits(yr)) << "f16 -> f32 " << what;
      simd_->to_f32_bf16(h.data(), ys.data(), n);
      ref_->to_f32_bf16(h.data(), yr.data(), n);
      ASSERT_EQ(as_bits(ys), as_bits(yr)) << "bf16 -> f32 " << what;
    }
  }
}

TEST_P(ConvertIsa, HalfToF32CoversEveryPattern) {
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> ys(all.size()), yr(all.size());
  simd_->to_f32_f16(all.data(), ys.data(), static_cast<int64_t>(all.size()));
  ref_->to_f32_f16(all.data(), yr.data(), static_cast<int64_t>(all.size()));
  ASSERT_EQ(as_bits(ys), as_bits(yr));
  simd_->to_f32_bf16(all.data(), ys.data(), static_cast<int64_t>(all.size()));
  ref_->to_f32_bf16(all.data(), yr.data(), static_cast<int64_t>(all.size()));
  ASSERT_EQ(as_bits(ys), as_bits(yr));
}

TEST_P(ConvertIsa, DequantizersMatchReferenceOnArbitraryBlocks) {
  // Blocks as a GGUF source may hold them: any bytes, scales included (f16 NaN/Inf/subnormal).
  for (const OutType& t : kOutTypes) {
    if (t.dequantize == nullptr) continue;
    for (int64_t n : kBlockSizes) {
      const auto seed = static_cast<uint32_t>(n + 17);
      const auto h = bits16(seed, static_cast<int64_t>(static_cast<size_t>(n) / 32 * t.block_bytes / 2));
      std::vector<float> ys(static_cast<size_t>(n)), yr(ys.size());
      (simd_->*t.dequantize)(h.data(), ys.data(), n);
      (ref_->*t.dequantize)(h.data(), yr.data(), n);
      ASSERT_EQ(as_bits(ys), as_bits(yr)) << t.name << " n=" << n << " seed=" << seed;
    }
  }
}

TEST_P(ConvertIsa, ErrorStats) {
  for (int64_t n : kElementSizes) {
    const auto seed = static_cast<uint32_t>(n * 11);
    const auto x = normal_row(seed, n, 1.0f);
    auto y = x;
    for (size_t i = 0; i < y.size(); ++i) y[i] += 0.01f * static_cast<float>(static_cast<int64_t>(i % 7) - 3);
    const RowError s = simd_->error_stats(x.data(), y.data(), n);
    const RowError r = ref_->error_stats(x.data(), y.data(), n);
    // Squares are exact in double and non-negative, so any summation order is within n roundings.
    EXPECT_NEAR(s.sum_sq, r.sum_sq, static_cast<double>(n) * DBL_EPSILON * r.sum_sq)
        << "n=" << n << " seed=" << seed;
    EXPECT_GT(r.sum_sq, 0.0);
    EXPECT_EQ(s.max_abs, r.max_abs) << "n=" << n << " seed=" << seed;
  }
  // A NaN difference poisons the sum but never becomes the maximum; an infinite one is both.
  std::vector<float> x(40, 1.0f), y(40, 1.5f);
  y[3] = kNaN;
  y[33] = 2.0f;
  RowError s = simd_->error_stats(x.data(), y.data(), 40);
  EXPECT_TRUE(std::isnan(s.sum_sq));
  EXPECT_EQ(s.max_abs, 1.0f);
  y[3] = -kInf;
  s = simd_->error_stats(x.data(), y.data(), 40);
  EXPECT_EQ(s.sum_sq, kInf);
  EXPECT_EQ(s.max_abs, kInf);
}

INSTANTIATE_TEST_SUITE_P(Levels, ConvertIsa, ::testing::Values(Isa::avx2, Isa::avx512, Isa::neon),
                         [](const auto& p) { return std::string(isa_name(p.param)); });

// The reference level is the blocks.cpp routines themselves, and dequantize(quantize(x)) of a q4_0 ramp
// lands on ggml's grid (pinned values, so the reference cannot drift with the SIMD code).
TEST(ConvertRef, Q4_0RampIsPinned) {
  const KernelTable* ref = kernel_table(Isa::ref);
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[static_cast<size_t>(j)] = static_cast<float>(j) - 16.0f;  // max -16: d = 2
  BlockQ4_0 b{};
  ref->quantize_row_q4_0(x.data(), &b, 32);
  EXPECT_EQ(fp16_to_fp32(b.d), 2.0f);
  std::vector<float> y(32);
  ref->to_f32_q4_0(&b, y.data(), 32);
  // q = min(15, trunc(x * 0.5 + 8.5)): -16 -> 0, -15 -> 1, -1 -> 8, 0 -> 8, 1 -> 9, 14 -> 15, 15 -> 15.
  for (int j = 0; j < 32; ++j) {
    const int q = std::min(15, static_cast<int>(static_cast<float>(j - 16) / 2.0f + 8.5f));
    EXPECT_EQ(y[static_cast<size_t>(j)], static_cast<float>(q - 8) * 2.0f) << "j=" << j;
  }
}

}  // namespace
}  // namespace qe::kernels
