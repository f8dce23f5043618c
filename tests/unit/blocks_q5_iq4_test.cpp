// q5_0, q5_1, iq4_nl and iq4_xs: the block layouts pinned by hand-built blocks (written from the layout
// description in blocks.h, not from our packer), round-trip error inside two-sided bands, the zero /
// constant / tiny / huge special cases, importances that help, weighted(nullptr) == plain, and bad
// lengths that die. Byte-exactness against ggml is tests/python/test_quant_q5_iq4.py's job.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "formats/blocks.h"
#include "formats/blocks_weighted.h"

namespace qe {
namespace {

constexpr uint32_t kSeed = 20240917;

// One format under test, over raw bytes.
struct Format {
  const char* name;
  int64_t block;  // values per block
  size_t block_bytes;
  void (*plain)(const float* x, void* y, int64_t n);
  void (*weighted)(const float* x, void* y, int64_t n, const float* w);
  void (*dequantize)(const void* y, float* x, int64_t n);
  // Round trip of N(0, 1) rows: relative RMS error (rms(x - x') / rms(x)) is inside this band (measured
  // value +- about 10%): a broken quantizer fails above, a test that compares a thing with itself below.
  double rel_rmse[2];
  // sum(w * err^2) of the weighted quantizer over the plain one's, for imatrix-like w: inside this band
  // (measured +- about 15%). q5_1's plain min/max fit has the most to gain.
  double weighted_ratio[2];
};

void PrintTo(const Format& f, std::ostream* os) {
  *os << f.name;
}

template <class B, void (*Q)(const float*, B*, int64_t), void (*W)(const float*, B*, int64_t, const float*),
          void (*D)(const B*, float*, int64_t)>
constexpr Format make_format(const char* name, int64_t block, double lo, double hi, double wlo, double whi) {
  return Format{name,
                block,
                sizeof(B),
                [](const float* x, void* y, int64_t n) { Q(x, static_cast<B*>(y), n); },
                [](const float* x, void* y, int64_t n, const float* w) { W(x, static_cast<B*>(y), n, w); },
                [](const void* y, float* x, int64_t n) { D(static_cast<const B*>(y), x, n); },
                {lo, hi},
                {wlo, whi}};
}

const Format kQ5_0 =
    make_format<BlockQ5_0, quantize_row_q5_0_ref, quantize_row_q5_0_weighted, dequantize_row_q5_0>(
        "q5_0", QK5_0, 0.038, 0.047, 0.33, 0.46);
const Format kQ5_1 =
    make_format<BlockQ5_1, quantize_row_q5_1_ref, quantize_row_q5_1_weighted, dequantize_row_q5_1>(
        "q5_1", QK5_1, 0.034, 0.041, 0.16, 0.24);
const Format kIQ4_NL =
    make_format<BlockIQ4_NL, quantize_row_iq4_nl_ref, quantize_row_iq4_nl_weighted, dequantize_row_iq4_nl>(
        "iq4_nl", QK4_NL, 0.068, 0.083, 0.40, 0.54);
const Format kIQ4_XS =
    make_format<BlockIQ4_XS, quantize_row_iq4_xs_ref, quantize_row_iq4_xs_weighted, dequantize_row_iq4_xs>(
        "iq4_xs", QK_K, 0.069, 0.084, 0.42, 0.56);

std::vector<uint8_t> quantize(const Format& f, const std::vector<float>& x, const float* w = nullptr,
                              bool weighted = false) {
  const auto n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(static_cast<size_t>(n / f.block) * f.block_bytes, 0xAB);  // poison: all written
  if (weighted) {
    f.weighted(x.data(), q.data(), n, w);
  } else {
    f.plain(x.data(), q.data(), n);
  }
  return q;
}

std::vector<float> dequantize(const Format& f, const std::vector<uint8_t>& q) {
  const auto n = static_cast<int64_t>(q.size() / f.block_bytes) * f.block;
  std::vector<float> y(static_cast<size_t>(n));
  f.dequantize(q.data(), y.data(), n);
  return y;
}

std::vector<float> normal_row(std::mt19937& rng, int64_t n, float sigma = 1.0f) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = dist(rng);
  return x;
}

double weighted_sq_error(const std::vector<float>& x, const std::vector<float>& y,
                         const std::vector<float>& w) {
  double s = 0.0;
  for (size_t i = 0; i < x.size(); ++i) s += static_cast<double>(w[i]) * (x[i] - y[i]) * (x[i] - y[i]);
  return s;
}

// An imatrix-like importance row: log-normal channel scales over ~3 decades (as real activations have).
std::vector<float> imatrix_row(std::mt19937& rng, int64_t n) {
  std::normal_distribution<float> dist(0.0f, 1.2f);
  std::vector<float> w(static_cast<size_t>(n));
  for (auto& v : w) v = std::exp(2.0f * dist(rng));
  return w;
}

template <class Block>
std::vector<uint8_t> as_bytes(const Block& b) {
  std::vector<uint8_t> out(sizeof(Block));
  std::memcpy(out.data(), &b, sizeof(Block));
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Golden layouts: blocks written byte by byte from the description, then decoded.

TEST(Q5Layout, Q5_0CodesSplitIntoNibblesAndHighBits) {
  // Codes q[j] = j: the low nibble of qs[j] is q[j] & 15 = j, the high nibble q[j + 16] & 15 = j; bit 4
  // is set exactly for elements 16..31, i.e. bits 16..31 of the little-endian qh.
  BlockQ5_0 b{};
  b.d = fp32_to_fp16(0.5f);
  const uint8_t qh[4] = {0x00, 0x00, 0xff, 0xff};
  std::memcpy(b.qh, qh, 4);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | (j << 4));
  float y[32];
  dequantize_row_q5_0(&b, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 0.5f * static_cast<float>(j - 16)) << j;

  // Codes q[j] = 31 - j: elements 0..15 carry bit 4 (bits 0..15 of qh), and one odd bit (element 21 has
  // code 10, clear) is flipped on by hand to show qh is read bit by bit: element 21 becomes 26.
  const uint8_t qh2[4] = {0xff, 0xff, 0x20, 0x00};
  std::memcpy(b.qh, qh2, 4);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(((31 - j) & 15) | ((15 - j) << 4));
  dequantize_row_q5_0(&b, y, 32);
  for (int j = 0; j < 32; ++j) {
    const int code = j == 21 ? 26 : 31 - j;
    EXPECT_EQ(y[j], 0.5f * static_cast<float>(code - 16)) << j;
  }
}

TEST(Q5Layout, Q5_1AddsTheMinimum) {
  BlockQ5_1 b{};
  b.d = fp32_to_fp16(0.25f);
  b.m = fp32_to_fp16(-1.0f);
  const uint8_t qh[4] = {0x00, 0x00, 0xff, 0xff};
  std::memcpy(b.qh, qh, 4);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | (j << 4));
  float y[64];
  BlockQ5_1 two[2] = {b, b};
  two[1].m = fp32_to_fp16(3.0f);
  dequantize_row_q5_1(two, y, 64);
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(y[j], 0.25f * static_cast<float>(j) - 1.0f) << j;
    EXPECT_EQ(y[32 + j], 0.25f * static_cast<float>(j) + 3.0f) << j;
  }
}

TEST(IQ4Layout, NlIndexesTheTable) {
  BlockIQ4_NL b{};
  b.d = fp32_to_fp16(2.0f);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  float y[32];
  dequantize_row_iq4_nl(&b, y, 32);
  // ggml's kvalues_iq4nl, written out again on purpose: the table itself is part of the format.
  const int table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 2.0f * static_cast<float>(table[j])) << j;
    EXPECT_EQ(y[j + 16], 2.0f * static_cast<float>(table[15 - j])) << j;
  }
}

TEST(IQ4Layout, XsSixBitGroupScales) {
  // Group scales ls = {0, 1, 31, 32, 33, 47, 62, 63}: low nibbles two per byte (even group low),
  // high 2 bits at bits 2g..2g+1 of scales_h: 0b11'11'10'10'10'01'00'00 = 0xfa90.
  const int ls[8] = {0, 1, 31, 32, 33, 47, 62, 63};
  BlockIQ4_XS b{};
  b.d = fp32_to_fp16(0.5f);
  b.scales_l[0] = 0x10;
  b.scales_l[1] = 0x0f;
  b.scales_l[2] = 0xf1;
  b.scales_l[3] = 0xfe;
  b.scales_h = 0xfa90;
  for (int i = 0; i < QK_K / 2; ++i) b.qs[i] = static_cast<uint8_t>((i * 7 + 3) & 0xff);
  std::vector<float> y(QK_K);
  dequantize_row_iq4_xs(&b, y.data(), QK_K);
  const int table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  for (int g = 0; g < 8; ++g) {
    const float dl = 0.5f * static_cast<float>(ls[g] - 32);
    for (int j = 0; j < 16; ++j) {
      const uint8_t byte = b.qs[16 * g + j];
      EXPECT_EQ(y[32 * g + j], dl * static_cast<float>(table[byte & 15])) << g << " " << j;
      EXPECT_EQ(y[32 * g + j + 16], dl * static_cast<float>(table[byte >> 4])) << g << " " << j;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Every format.

class Q5IQ4 : public ::testing::TestWithParam<Format> {};

TEST_P(Q5IQ4, RoundTripErrorInBand) {
  const Format& f = GetParam();
  std::mt19937 rng(kSeed);
  const int64_t n = 64 * QK_K;
  const auto x = normal_row(rng, n);
  const auto y = dequantize(f, quantize(f, x));
  double se = 0.0;
  double sx = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    se += (x[i] - y[i]) * (x[i] - y[i]);
    sx += static_cast<double>(x[i]) * x[i];
    ASSERT_TRUE(std::isfinite(y[i])) << f.name << " seed " << kSeed << " at " << i;
  }
  const double rel = std::sqrt(se / sx);
  EXPECT_GT(rel, f.rel_rmse[0]) << f.name << " seed " << kSeed;
  EXPECT_LT(rel, f.rel_rmse[1]) << f.name << " seed " << kSeed;
}

TEST_P(Q5IQ4, WeightedNullptrIsPlain) {
  const Format& f = GetParam();
  std::mt19937 rng(kSeed + 1);
  for (const int64_t n : {QK_K, 4 * QK_K}) {
    const auto x = normal_row(rng, n, 0.03f);
    EXPECT_EQ(quantize(f, x), quantize(f, x, nullptr, true)) << f.name << " n " << n << " seed " << kSeed + 1;
  }
}

TEST_P(Q5IQ4, ImportancesLowerTheWeightedError) {
  // The weighted quantizer minimises sum(w * err^2) (with an extra sigma2 term), so on that measure it
  // must beat the plain one by a clear margin (iq4's plain search already weighs by x^2).
  const Format& f = GetParam();
  std::mt19937 rng(kSeed + 2);
  const int64_t n = 16 * QK_K;
  const auto x = normal_row(rng, n, 0.02f);
  const auto w = imatrix_row(rng, n);
  const double plain = weighted_sq_error(x, dequantize(f, quantize(f, x)), w);
  const double weighted = weighted_sq_error(x, dequantize(f, quantize(f, x, w.data(), true)), w);
  EXPECT_GT(weighted / plain, f.weighted_ratio[0]) << f.name << " seed " << kSeed + 2;
  EXPECT_LT(weighted / plain, f.weighted_ratio[1]) << f.name << " seed " << kSeed + 2;
}

TEST_P(Q5IQ4, ZeroRowDecodesToZero) {
  const Format& f = GetParam();
  const std::vector<float> x(static_cast<size_t>(2 * QK_K), 0.0f);
  const std::vector<float> w(x.size(), 1.0f);
  for (const bool weighted : {false, true}) {
    const auto y = dequantize(f, quantize(f, x, w.data(), weighted));
    for (size_t i = 0; i < y.size(); ++i)
      ASSERT_EQ(y[i], 0.0f) << f.name << " weighted " << weighted << " at " << i;
  }
}

TEST_P(Q5IQ4, ConstantBlocksComeBackWithinFp16Precision) {
  const Format& f = GetParam();
  for (const float c : {1.0f, -3.0f, 0.25f, 1234.5f, -0.375f}) {
    const std::vector<float> x(static_cast<size_t>(QK_K), c);
    const std::vector<float> w(x.size(), 1.0f);
    for (const bool weighted : {false, true}) {
      const auto y = dequantize(f, quantize(f, x, w.data(), weighted));
      // One fp16 rounding of d (or m), relative 2^-11, is the only loss (bound doubled for the float
      // products).
      for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_NEAR(y[i], c, std::fabs(c) * 0x1p-10f) << f.name << " c " << c << " weighted " << weighted;
      }
    }
  }
}

TEST_P(Q5IQ4, TinyAndHugeMagnitudes) {
  const Format& f = GetParam();
  std::mt19937 rng(kSeed + 3);
  // Below fp16's smallest subnormal scale: d flushes to 0 and the block decodes to zeros, never NaN.
  for (const float sigma : {1e-12f, 1e-20f}) {
    const auto y = dequantize(f, quantize(f, normal_row(rng, QK_K, sigma)));
    for (const float v : y) ASSERT_EQ(std::fabs(v), 0.0f) << f.name << " sigma " << sigma;
  }
  // Large but with d inside fp16's range: same relative error as at unit scale.
  for (const float sigma : {1e3f, 1e4f}) {
    const auto x = normal_row(rng, 4 * QK_K, sigma);
    const auto y = dequantize(f, quantize(f, x));
    double se = 0.0;
    double sx = 0.0;
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_TRUE(std::isfinite(y[i])) << f.name << " sigma " << sigma;
      se += static_cast<double>(x[i] - y[i]) * (x[i] - y[i]);
      sx += static_cast<double>(x[i]) * x[i];
    }
    EXPECT_LT(std::sqrt(se / sx), f.rel_rmse[1] * 1.3)
        << f.name << " sigma " << sigma << " seed " << kSeed + 3;
  }
}

TEST_P(Q5IQ4, EmptyRowWritesNothing) {
  const Format& f = GetParam();
  const float x = 1.0f;
  const float w = 1.0f;
  uint8_t sentinel = 0x5a;
  f.plain(&x, &sentinel, 0);
  f.weighted(&x, &sentinel, 0, &w);
  EXPECT_EQ(sentinel, 0x5a);
}

TEST_P(Q5IQ4, LengthNotAMultipleOfTheBlockDies) {
  const Format& f = GetParam();
  std::vector<float> x(2 * QK_K, 1.0f);
  std::vector<uint8_t> q(2 * f.block_bytes * (QK_K / f.block));
  const int64_t bad = f.block + 16;
  EXPECT_DEATH(f.plain(x.data(), q.data(), bad), "");
  EXPECT_DEATH(f.weighted(x.data(), q.data(), bad, x.data()), "");
  EXPECT_DEATH(f.dequantize(q.data(), x.data(), bad), "");
  EXPECT_DEATH(f.dequantize(q.data(), x.data(), -f.block), "");
}

INSTANTIATE_TEST_SUITE_P(Formats, Q5IQ4, ::testing::Values(kQ5_0, kQ5_1, kIQ4_NL, kIQ4_XS),
                         [](const auto& p) { return std::string(p.param.name); });

// ---------------------------------------------------------------------------------------------------
// Format-specific bytes.

TEST(Q5Quant, ZeroBlockBytes) {
  // q5_0: id = 0, every code 0 * id + 16.5 -> 16, so all fifth bits are set, and d = +0 / -16 = -0 (as
  // ggml, which keeps max = +0 when nothing beats |x| = 0); q5_1: codes 0 and d = m = +0.
  const std::vector<float> x(32, 0.0f);
  BlockQ5_0 b0;
  quantize_row_q5_0_ref(x.data(), &b0, 32);
  EXPECT_EQ(b0.d, 0x8000);
  for (const uint8_t v : b0.qh) EXPECT_EQ(v, 0xff);
  for (const uint8_t v : b0.qs) EXPECT_EQ(v, 0x00);
  BlockQ5_1 b1;
  quantize_row_q5_1_ref(x.data(), &b1, 32);
  EXPECT_EQ(b1.d, 0);
  EXPECT_EQ(b1.m, 0);
  for (const uint8_t v : b1.qh) EXPECT_EQ(v, 0x00);
  for (const uint8_t v : b1.qs) EXPECT_EQ(v, 0x00);
}

TEST(Q5Quant, Q5_0ExtremeMapsToCodeZero) {
  // max |x| = -8 at element 5: d = -8 / -16 = 0.5, and x = -8 is code 0 (-16 * d = -8 exactly); +7.5
  // is code 31; element 9 (+8) would need code 32 and clips to 31.
  std::vector<float> x(32, 0.0f);
  x[5] = -8.0f;
  x[7] = 7.5f;
  x[9] = 8.0f;
  BlockQ5_0 b;
  quantize_row_q5_0_ref(x.data(), &b, 32);
  EXPECT_EQ(fp16_to_fp32(b.d), 0.5f);
  float y[32];
  dequantize_row_q5_0(&b, y, 32);
  EXPECT_EQ(y[5], -8.0f);
  EXPECT_EQ(y[7], 7.5f);
  EXPECT_EQ(y[9], 7.5f);
  EXPECT_EQ(y[0], 0.0f);
}

TEST(Q5Quant, Q5_1GridIsExact) {
  // Values on the grid m + d * k (d = 1/8, m = -2) come back bit for bit.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = -2.0f + 0.125f * static_cast<float>((j * 13) % 32);
  BlockQ5_1 b;
  quantize_row_q5_1_ref(x.data(), &b, 32);
  float y[32];
  dequantize_row_q5_1(&b, y, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], x[j]) << j;
}

TEST(IQ4Quant, ZeroBlockBytes) {
  // A zero group takes the code of the level nearest 0 (index 8, value 1) with d = 0; iq4_xs also writes
  // d = -0 (ggml's -max_scale / 32 with max_scale = +0) and every 6-bit scale 32 (i.e. 0).
  const std::vector<float> x(QK_K, 0.0f);
  BlockIQ4_NL nl;
  quantize_row_iq4_nl_ref(x.data(), &nl, 32);
  EXPECT_EQ(nl.d, 0);
  for (const uint8_t v : nl.qs) EXPECT_EQ(v, 0x88);
  BlockIQ4_XS xs;
  quantize_row_iq4_xs_ref(x.data(), &xs, QK_K);
  EXPECT_EQ(xs.d, 0x8000);
  EXPECT_EQ(xs.scales_h, 0xaaaa);
  for (const uint8_t v : xs.scales_l) EXPECT_EQ(v, 0x00);
  for (const uint8_t v : xs.qs) EXPECT_EQ(v, 0x88);
}

TEST(IQ4Quant, XsZeroGroupBesideLiveOnes) {
  // One group below GROUP_MAX_EPS among normal ones: its scale rounds to 0 and it decodes to zeros while
  // the others keep their accuracy.
  std::mt19937 rng(kSeed + 4);
  auto x = normal_row(rng, QK_K);
  for (int j = 64; j < 96; ++j) x[j] = 1e-16f;
  BlockIQ4_XS b;
  quantize_row_iq4_xs_ref(x.data(), &b, QK_K);
  const int ls2 = ((b.scales_l[1] & 0xf) | (((b.scales_h >> 4) & 3) << 4)) - 32;
  EXPECT_EQ(ls2, 0);
  std::vector<float> y(QK_K);
  dequantize_row_iq4_xs(&b, y.data(), QK_K);
  for (int j = 64; j < 96; ++j) EXPECT_EQ(std::fabs(y[j]), 0.0f) << j;
  for (int j = 0; j < 64; ++j) EXPECT_NEAR(y[j], x[j], 0.5f) << j << " seed " << kSeed + 4;
}

TEST(IQ4Quant, XsLargestGroupScaleIsMinus32) {
  // The group with the largest |scale| sets d so that its 6-bit scale is exactly -32 (ls = 0), whatever
  // the sign of its fitted scale.
  std::mt19937 rng(kSeed + 5);
  for (int trial = 0; trial < 8; ++trial) {
    auto x = normal_row(rng, QK_K);
    for (int j = 32 * trial; j < 32 * trial + 32; ++j) x[j] *= 50.0f;
    BlockIQ4_XS b;
    quantize_row_iq4_xs_ref(x.data(), &b, QK_K);
    const int ls =
        ((b.scales_l[trial / 2] >> (4 * (trial % 2))) & 0xf) | (((b.scales_h >> (2 * trial)) & 3) << 4);
    EXPECT_EQ(ls, 0) << "trial " << trial << " seed " << kSeed + 5;
  }
}

TEST(IQ4Quant, WeightsAreUsedPerSuperBlock) {
  // A zero importance on half of a group frees the codes for the other half: the weighted values err
  // less there than the plain ones.
  std::mt19937 rng(kSeed + 6);
  const auto x = normal_row(rng, QK_K);
  std::vector<float> w(QK_K, 1.0f);
  for (int j = 0; j < QK_K; j += 2) w[j] = 0.0f;
  const auto plain = dequantize(kIQ4_XS, quantize(kIQ4_XS, x));
  const auto weighted = dequantize(kIQ4_XS, quantize(kIQ4_XS, x, w.data(), true));
  EXPECT_LT(weighted_sq_error(x, weighted, w), weighted_sq_error(x, plain, w)) << "seed " << kSeed + 6;
}

}  // namespace
}  // namespace qe
