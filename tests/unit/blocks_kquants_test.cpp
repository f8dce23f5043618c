// k-quants (q2_K .. q6_K): dequantizers against blocks encoded by hand from ggml-common.h's layout
// description, round-trip error bands, degenerate blocks (zero, constant, tiny, huge), importance weights
// that must pay off, and the contract checks. Byte-exactness against ggml is the Python test's job
// (tests/python/test_quant_kquants.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "formats/blocks.h"
#include "formats/blocks_weighted.h"

namespace qe {
namespace {

constexpr uint32_t kSeed = 20240917;

// One k-quant under test, over raw bytes.
struct Format {
  const char* name;
  size_t block_bytes;
  void (*plain)(const float* x, void* y, int64_t n);
  void (*weighted)(const float* x, void* y, int64_t n, const float* w);
  void (*dequantize)(const void* y, float* x, int64_t n);
  // Relative RMS error band on normal data (measured with the fixed seed: q2_K 0.291, q3_K 0.143, q4_K
  // 0.067, q5_K 0.034, q6_K 0.017, each band about +-15%: an error far below the format's resolution
  // means the test is not measuring what it thinks).
  double rel_rms_band[2];
};

template <class Block, void (*Q)(const float*, Block*, int64_t),
          void (*W)(const float*, Block*, int64_t, const float*), void (*D)(const Block*, float*, int64_t)>
Format make_format(const char* name, double lo, double hi) {
  return Format{
      name,
      sizeof(Block),
      [](const float* x, void* y, int64_t n) { Q(x, static_cast<Block*>(y), n); },
      [](const float* x, void* y, int64_t n, const float* w) { W(x, static_cast<Block*>(y), n, w); },
      [](const void* y, float* x, int64_t n) { D(static_cast<const Block*>(y), x, n); },
      {lo, hi}};
}

const Format kFormats[] = {
    make_format<BlockQ2_K, quantize_row_q2_K_ref, quantize_row_q2_K_weighted, dequantize_row_q2_K>(
        "q2_K", 0.25, 0.33),
    make_format<BlockQ3_K, quantize_row_q3_K_ref, quantize_row_q3_K_weighted, dequantize_row_q3_K>(
        "q3_K", 0.12, 0.17),
    make_format<BlockQ4_K, quantize_row_q4_K_ref, quantize_row_q4_K_weighted, dequantize_row_q4_K>(
        "q4_K", 0.055, 0.08),
    make_format<BlockQ5_K, quantize_row_q5_K_ref, quantize_row_q5_K_weighted, dequantize_row_q5_K>(
        "q5_K", 0.028, 0.04),
    make_format<BlockQ6_K, quantize_row_q6_K_ref, quantize_row_q6_K_weighted, dequantize_row_q6_K>(
        "q6_K", 0.014, 0.02),
};

// Storage for n / 256 blocks, 8-byte aligned (the fp16 fields are 2-byte aligned in every block).
struct Blocks {
  std::vector<uint64_t> words;
  Blocks(const Format& f, int64_t n) : words((static_cast<size_t>(n) / QK_K * f.block_bytes + 7) / 8) {}
  void* data() { return words.data(); }
  const void* data() const { return words.data(); }
  size_t bytes(const Format& f, int64_t n) const { return static_cast<size_t>(n) / QK_K * f.block_bytes; }
};

std::vector<float> round_trip(const Format& f, const std::vector<float>& x, const float* w = nullptr,
                              bool weighted = false) {
  const auto n = static_cast<int64_t>(x.size());
  Blocks q(f, n);
  if (weighted)
    f.weighted(x.data(), q.data(), n, w);
  else
    f.plain(x.data(), q.data(), n);
  std::vector<float> y(x.size());
  f.dequantize(q.data(), y.data(), n);
  return y;
}

double rel_rms(const std::vector<float>& x, const std::vector<float>& y) {
  double err = 0.0;
  double ref = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    err += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
    ref += static_cast<double>(x[i]) * x[i];
  }
  return std::sqrt(err / ref);
}

// Normal values, each super-block scaled by its own 10^U(lo, hi) (the relative error is then per block).
std::vector<float> scaled_normal(std::mt19937& rng, int64_t n, float lo, float hi) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> expo(lo, hi);
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t b = 0; b < n; b += QK_K) {
    const float scale = std::pow(10.0f, expo(rng));
    for (int64_t j = b; j < b + QK_K; ++j) x[static_cast<size_t>(j)] = normal(rng) * scale;
  }
  return x;
}

// An imatrix-like row: log-normal channel importances (spread over ~3 decades).
std::vector<float> importances(std::mt19937& rng, int64_t n) {
  std::normal_distribution<float> normal(0.0f, 1.2f);
  std::vector<float> w(static_cast<size_t>(n));
  for (float& v : w) v = std::exp(2.0f * normal(rng));
  return w;
}

class KQuant : public ::testing::TestWithParam<Format> {};

// ---------------------------------------------------------------------------------------------------
// Golden layouts: blocks built by hand from the layout description, decoded value by value. Every scale
// and code is a small integer times a power of two, so the expected values are exact.

uint16_t fp16_bits(float f) {
  return fp32_to_fp16(f);
}

// The 2-bit code of value v in the golden blocks: a pattern that covers 0..3 in every group.
int code2(int v) {
  return (v * 7 + v / 5) % 4;
}

TEST(KQuantLayout, Q2_K) {
  BlockQ2_K b{};
  b.d = fp16_bits(0.5f);
  b.dmin = fp16_bits(0.25f);
  for (int g = 0; g < 16; ++g) b.scales[g] = static_cast<uint8_t>((g % 16) | ((15 - g) << 4));
  // Value 128h + 32s + l in bit pair s of qs[32h + l].
  for (int v = 0; v < QK_K; ++v) {
    const int h = v / 128, s = (v % 128) / 32, l = v % 32;
    b.qs[32 * h + l] |= static_cast<uint8_t>(code2(v) << (2 * s));
  }
  float y[QK_K];
  dequantize_row_q2_K(&b, y, QK_K);
  for (int v = 0; v < QK_K; ++v) {
    const int g = v / 16;
    const float want =
        0.5f * static_cast<float>(g) * static_cast<float>(code2(v)) - 0.25f * static_cast<float>(15 - g);
    ASSERT_EQ(y[v], want) << "value " << v;
  }
}

TEST(KQuantLayout, Q3_K) {
  BlockQ3_K b{};
  b.d = fp16_bits(0.25f);
  // 6-bit scale codes (scale = code - 32): low nibble of group g in byte g % 8 (low nibble for g < 8, high
  // for g >= 8), top 2 bits in byte 8 + g % 4 at bit 2 * (g / 4).
  int sc[16];
  for (int g = 0; g < 16; ++g) {
    sc[g] = (g * 37 + 5) % 64;
    b.scales[g % 8] |= static_cast<uint8_t>((sc[g] & 15) << (g < 8 ? 0 : 4));
    b.scales[8 + g % 4] |= static_cast<uint8_t>((sc[g] >> 4) << (2 * (g / 4)));
  }
  // 3-bit codes 0..7: low 2 bits as q2_K, high bit in bit v / 32 of hmask[v % 32]; x = (code - 4) * scale.
  for (int v = 0; v < QK_K; ++v) {
    const int code = (v * 5 + v / 7) % 8;
    b.qs[32 * (v / 128) + v % 32] |= static_cast<uint8_t>((code & 3) << (2 * ((v % 128) / 32)));
    if (code & 4) b.hmask[v % 32] |= static_cast<uint8_t>(1 << (v / 32));
  }
  float y[QK_K];
  dequantize_row_q3_K(&b, y, QK_K);
  for (int v = 0; v < QK_K; ++v) {
    const int code = (v * 5 + v / 7) % 8;
    const float want = 0.25f * static_cast<float>(sc[v / 16] - 32) * static_cast<float>(code - 4);
    ASSERT_EQ(y[v], want) << "value " << v;
  }
}

// q4_K / q5_K's 12 bytes of scales: groups 0-3 whole in bytes 0-3 (scale) and 4-7 (min); groups 4-7 with
// their low 4 bits in byte 8 + (g - 4) (scale low nibble, min high nibble) and their top 2 bits in the top
// bits of byte g - 4 (scale) and byte g (min).
void pack_k4_scales(const int* sc, const int* mn, uint8_t* q) {
  for (int g = 0; g < 4; ++g) {
    q[g] = static_cast<uint8_t>(sc[g] | ((sc[g + 4] >> 4) << 6));
    q[g + 4] = static_cast<uint8_t>(mn[g] | ((mn[g + 4] >> 4) << 6));
    q[g + 8] = static_cast<uint8_t>((sc[g + 4] & 15) | ((mn[g + 4] & 15) << 4));
  }
}

TEST(KQuantLayout, Q4_K) {
  BlockQ4_K b{};
  b.d = fp16_bits(0.125f);
  b.dmin = fp16_bits(0.5f);
  int sc[8], mn[8];
  for (int g = 0; g < 8; ++g) {
    sc[g] = 63 - 7 * g;  // 63 and 14: both the 6-bit top and the split bits
    mn[g] = (g * 29 + 3) % 64;
  }
  pack_k4_scales(sc, mn, b.scales);
  // Groups 2i and 2i+1 in the low and high nibbles of qs[32i .. 32i + 31].
  for (int v = 0; v < QK_K; ++v) {
    const int g = v / 32, l = v % 32;
    b.qs[32 * (g / 2) + l] |= static_cast<uint8_t>(((v * 3 + 1) % 16) << (4 * (g % 2)));
  }
  float y[QK_K];
  dequantize_row_q4_K(&b, y, QK_K);
  for (int v = 0; v < QK_K; ++v) {
    const int g = v / 32;
    const float want = 0.125f * static_cast<float>(sc[g]) * static_cast<float>((v * 3 + 1) % 16) -
                       0.5f * static_cast<float>(mn[g]);
    ASSERT_EQ(y[v], want) << "value " << v;
  }
}

TEST(KQuantLayout, Q5_K) {
  BlockQ5_K b{};
  b.d = fp16_bits(0.0625f);
  b.dmin = fp16_bits(2.0f);
  int sc[8], mn[8];
  for (int g = 0; g < 8; ++g) {
    sc[g] = (g * 19 + 50) % 64;
    mn[g] = 63 - 5 * g;
  }
  pack_k4_scales(sc, mn, b.scales);
  // As q4_K for the low 4 bits; bit 4 of value 32g + l in bit g of qh[l].
  for (int v = 0; v < QK_K; ++v) {
    const int g = v / 32, l = v % 32, code = (v * 11 + v / 3) % 32;
    b.qs[32 * (g / 2) + l] |= static_cast<uint8_t>((code & 15) << (4 * (g % 2)));
    if (code & 16) b.qh[l] |= static_cast<uint8_t>(1 << g);
  }
  float y[QK_K];
  dequantize_row_q5_K(&b, y, QK_K);
  for (int v = 0; v < QK_K; ++v) {
    const int g = v / 32, code = (v * 11 + v / 3) % 32;
    const float want =
        0.0625f * static_cast<float>(sc[g]) * static_cast<float>(code) - 2.0f * static_cast<float>(mn[g]);
    ASSERT_EQ(y[v], want) << "value " << v;
  }
}

// The quantizer writes what the layout says: values on a q6_K grid come back exactly. Every value is k / 64
// with k in [-32, 31], and every group of 16 holds k = -32: the search's first scale is then exact (1/64),
// every group scale quantizes to -128 against d = -1/8192, and each code to k + 32.
TEST(KQuantLayout, Q6_KExactGridRoundTrips) {
  std::vector<float> x(QK_K);
  for (int v = 0; v < QK_K; ++v) x[v] = static_cast<float>(v % 16 == 0 ? -32 : (v * 13) % 63 - 31) / 64.0f;
  BlockQ6_K b;
  quantize_row_q6_K_ref(x.data(), &b, QK_K);
  EXPECT_EQ(fp16_to_fp32(b.d), -1.0f / 8192.0f);
  for (int g = 0; g < 16; ++g) EXPECT_EQ(b.scales[g], -128) << "group " << g;
  std::vector<float> y(QK_K);
  dequantize_row_q6_K(&b, y.data(), QK_K);
  for (int v = 0; v < QK_K; ++v) ASSERT_EQ(y[v], x[v]) << "value " << v;
}

// ---------------------------------------------------------------------------------------------------
// Round trips

TEST_P(KQuant, RoundTripErrorInBand) {
  const Format& f = GetParam();
  SCOPED_TRACE(std::string(f.name) + " seed " + std::to_string(kSeed));
  std::mt19937 rng(kSeed);
  const std::vector<float> x = scaled_normal(rng, 64 * QK_K, -4.0f, 3.0f);
  const double e = rel_rms(x, round_trip(f, x));
  std::printf("%s: relative RMS error %.4f\n", f.name, e);
  EXPECT_GT(e, f.rel_rms_band[0]);
  EXPECT_LT(e, f.rel_rms_band[1]);
}

TEST_P(KQuant, WeightedNullptrIsPlainBytes) {
  const Format& f = GetParam();
  SCOPED_TRACE(std::string(f.name) + " seed " + std::to_string(kSeed));
  std::mt19937 rng(kSeed + 1);
  const int64_t n = 8 * QK_K;
  const std::vector<float> x = scaled_normal(rng, n, -3.0f, 1.0f);
  Blocks a(f, n), b(f, n);
  f.plain(x.data(), a.data(), n);
  f.weighted(x.data(), b.data(), n, nullptr);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.bytes(f, n)), 0);
}

TEST_P(KQuant, WeightsPayOff) {
  // With an imatrix, the error the importances weigh must drop against the plain quantizer's.
  const Format& f = GetParam();
  SCOPED_TRACE(std::string(f.name) + " seed " + std::to_string(kSeed));
  std::mt19937 rng(kSeed + 2);
  const int64_t n = 4096;
  double plain = 0.0, weighted = 0.0;
  for (int row = 0; row < 16; ++row) {
    const std::vector<float> x = scaled_normal(rng, n, -2.0f, -2.0f);
    const std::vector<float> w = importances(rng, n);
    const std::vector<float> yp = round_trip(f, x);
    const std::vector<float> yw = round_trip(f, x, w.data(), true);
    for (size_t i = 0; i < x.size(); ++i) {
      plain += w[i] * (static_cast<double>(x[i]) - yp[i]) * (static_cast<double>(x[i]) - yp[i]);
      weighted += w[i] * (static_cast<double>(x[i]) - yw[i]) * (static_cast<double>(x[i]) - yw[i]);
    }
  }
  // Measured 0.21 (q2_K) .. 0.44 (q6_K) with these importances, spread over ~4 decades.
  std::printf("%s: weighted error ratio vs plain %.4f\n", f.name, weighted / plain);
  EXPECT_LT(weighted, plain * 0.6);
}

TEST_P(KQuant, ZeroBlocksAreZeroBytes) {
  const Format& f = GetParam();
  const int64_t n = 2 * QK_K;
  const std::vector<float> x(static_cast<size_t>(n), 0.0f);
  const std::vector<float> w(static_cast<size_t>(n), 1.0f);
  for (bool weighted : {false, true}) {
    Blocks q(f, n);
    std::memset(q.data(), 0xa5, q.bytes(f, n));
    if (weighted)
      f.weighted(x.data(), q.data(), n, w.data());
    else
      f.plain(x.data(), q.data(), n);
    const auto* bytes = static_cast<const uint8_t*>(q.data());
    for (size_t i = 0; i < q.bytes(f, n); ++i) ASSERT_EQ(bytes[i], 0) << f.name << " byte " << i;
    std::vector<float> y(static_cast<size_t>(n), 1.0f);
    f.dequantize(q.data(), y.data(), n);
    for (float v : y) ASSERT_EQ(v, 0.0f) << f.name;
  }
}

TEST_P(KQuant, ConstantBlocksComeBackClose) {
  const Format& f = GetParam();
  const std::vector<float> w(QK_K, 1.0f);
  // Magnitudes where d stays a normal fp16 (q6_K's d is about |c| / 4096); below, d's fp16 subnormal
  // steps alone exceed the 2% tolerance.
  for (float c : {0.5f, -0.5f, 3.0f, -0.3f, 1000.0f}) {
    const std::vector<float> x(QK_K, c);
    for (bool weighted : {false, true}) {
      const std::vector<float> y = round_trip(f, x, w.data(), weighted);
      for (float v : y)
        ASSERT_NEAR(v, c, std::fabs(c) * 0.02f) << f.name << " c " << c << " weighted " << weighted;
    }
  }
}

TEST_P(KQuant, FiniteInputGivesFiniteOutput) {
  // From f32 subnormals to |x| ~ 4e5: d, dmin and the codes must stay finite (below fp16's range they flush
  // to 0, and the values with them). Above ~1e6 the formats themselves give out: q2_K's dmin = max_min / 15
  // overflows fp16 (ggml alike). With importances, only where x^2 does not underflow: see
  // AllZeroImportancesFollowGgml for what happens then.
  const Format& f = GetParam();
  SCOPED_TRACE(std::string(f.name) + " seed " + std::to_string(kSeed));
  std::mt19937 rng(kSeed + 3);
  for (float lo : {-42.0f, -30.0f, -12.0f, -6.0f, 0.0f, 3.0f, 4.0f}) {
    const std::vector<float> x = scaled_normal(rng, 4 * QK_K, lo, lo + 1.0f);
    const std::vector<float> w = importances(rng, 4 * QK_K);
    for (bool weighted : {false, true}) {
      if (weighted && lo < -12.0f) continue;
      const std::vector<float> y = round_trip(f, x, w.data(), weighted);
      double amax = 0.0;
      for (float v : x) amax = std::max(amax, static_cast<double>(std::fabs(v)));
      for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_TRUE(std::isfinite(y[i])) << "10^" << lo << " weighted " << weighted << " i " << i;
        ASSERT_LE(std::fabs(y[i]), 2.0 * amax + 1e-30)
            << "10^" << lo << " weighted " << weighted << " i " << i;
      }
    }
  }
}

TEST_P(KQuant, AllZeroImportancesFollowGgml) {
  // A super-block whose importances are all 0 (dead input channels, or values so small that x^2 and the
  // row's sigma2 underflow) leaves q2_K / q4_K / q5_K's second search (make_qp_quants) with no weight at
  // all: ggml then divides 0 by 0 and writes d = NaN, and so must we to keep its bytes; the converter has
  // to avoid feeding such blocks. q3_K and q6_K stay finite.
  const Format& f = GetParam();
  SCOPED_TRACE(std::string(f.name) + " seed " + std::to_string(kSeed));
  std::mt19937 rng(kSeed + 6);
  const std::vector<float> x = scaled_normal(rng, 2 * QK_K, 0.0f, 0.0f);
  std::vector<float> w = importances(rng, 2 * QK_K);
  std::fill(w.begin(), w.begin() + QK_K, 0.0f);
  const std::vector<float> y = round_trip(f, x, w.data(), true);
  const bool nan_expected = f.name[1] == '2' || f.name[1] == '4' || f.name[1] == '5';
  for (int64_t i = 0; i < QK_K; ++i) ASSERT_EQ(std::isnan(y[i]), nan_expected) << "i " << i;
  for (int64_t i = QK_K; i < 2 * QK_K; ++i) ASSERT_TRUE(std::isfinite(y[i])) << "i " << i;
}

TEST_P(KQuant, PowerOfTwoScalingCommutes) {
  // Every step of the searches is invariant under scaling the input by a power of two (products, sums and
  // comparisons scale exactly, fp16 rounding too while d stays a normal fp16), so the output must scale
  // exactly with it: a cheap check that no step depends on absolute magnitude.
  const Format& f = GetParam();
  SCOPED_TRACE(std::string(f.name) + " seed " + std::to_string(kSeed));
  std::mt19937 rng(kSeed + 4);
  const std::vector<float> x = scaled_normal(rng, 8 * QK_K, 0.0f, 0.0f);
  const std::vector<float> w = importances(rng, 8 * QK_K);
  for (bool weighted : {false, true}) {
    const std::vector<float> y = round_trip(f, x, w.data(), weighted);
    for (float s : {0x1p-3f, 0x1p8f}) {
      std::vector<float> xs(x);
      for (float& v : xs) v *= s;
      const std::vector<float> ys = round_trip(f, xs, w.data(), weighted);
      for (size_t i = 0; i < y.size(); ++i)
        ASSERT_EQ(ys[i], y[i] * s) << "scale " << s << " weighted " << weighted << " i " << i;
    }
  }
}

TEST_P(KQuant, EmptyRowIsANoOp) {
  const Format& f = GetParam();
  float x = 1.0f;
  f.plain(&x, nullptr, 0);
  f.weighted(&x, nullptr, 0, &x);
  f.dequantize(nullptr, &x, 0);
  EXPECT_EQ(x, 1.0f);
}

TEST_P(KQuant, RejectsPartialBlocks) {
  const Format& f = GetParam();
  std::vector<float> x(2 * QK_K, 1.0f), w(2 * QK_K, 1.0f);
  std::vector<uint64_t> q(64);
  EXPECT_DEATH(f.plain(x.data(), q.data(), 300), "");
  EXPECT_DEATH(f.weighted(x.data(), q.data(), 300, w.data()), "");
  EXPECT_DEATH(f.weighted(x.data(), q.data(), 32, nullptr), "");
  EXPECT_DEATH(f.dequantize(q.data(), x.data(), 128), "");
  EXPECT_DEATH(f.dequantize(q.data(), x.data(), -256), "");
}

INSTANTIATE_TEST_SUITE_P(Formats, KQuant, ::testing::ValuesIn(kFormats),
                         [](const auto& p) { return std::string(p.param.name); });

TEST(KQuantTraits, AgreeWithTheTypedFunctions) {
  std::mt19937 rng(kSeed + 5);
  const std::vector<float> x = scaled_normal(rng, 2 * QK_K, -1.0f, 1.0f);
  BlockQ4_K a[2], b[2];
  quantize_row_q4_K_ref(x.data(), a, 2 * QK_K);
  block_traits(GgmlType::Q4_K)->from_float(x.data(), b, 2 * QK_K);
  EXPECT_EQ(std::memcmp(a, b, sizeof(a)), 0);
  const std::vector<float> w = importances(rng, 2 * QK_K);
  BlockQ3_K c[2], d[2];
  quantize_row_q3_K_weighted(x.data(), c, 2 * QK_K, w.data());
  block_traits(GgmlType::Q3_K)->from_float_weighted(x.data(), d, 2 * QK_K, w.data());
  EXPECT_EQ(std::memcmp(c, d, sizeof(c)), 0);
  float ya[2 * QK_K], yb[2 * QK_K];
  dequantize_row_q3_K(c, ya, 2 * QK_K);
  block_traits(GgmlType::Q3_K)->to_float(c, yb, 2 * QK_K);
  EXPECT_EQ(std::memcmp(ya, yb, sizeof(ya)), 0);
}

}  // namespace
}  // namespace qe
