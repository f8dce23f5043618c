// Block formats: golden values, error bands, edge blocks, conversions over every 16-bit pattern, traits.
// Byte-exactness against ggml is the Python test's job (tests/python/test_quant_bitexact.py); these tests
// pin behaviour that must never drift and the maths each format promises.
#include "formats/blocks.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "formats/ggml_type.h"

namespace qe {
namespace {

constexpr uint32_t kSeed = 1234567;

uint32_t bits(float f) {
  return std::bit_cast<uint32_t>(f);
}
float from_bits(uint32_t u) {
  return std::bit_cast<float>(u);
}
bool fp16_is_nan(uint16_t h) {
  return (h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0;
}
bool bf16_is_nan(uint16_t h) {
  return (h & 0x7f80) == 0x7f80 && (h & 0x007f) != 0;
}

std::vector<float> ramp(int n) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) x[static_cast<size_t>(i)] = static_cast<float>(i);
  return x;
}

// Normal values, each block of `block` scaled by its own 10^U(lo, hi).
std::vector<float> scaled_normal(std::mt19937& rng, int64_t n, int64_t block, float lo = -3.0f,
                                 float hi = 3.0f) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> expo(lo, hi);
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t b = 0; b < n; b += block) {
    const float scale = std::pow(10.0f, expo(rng));
    for (int64_t j = b; j < b + block; ++j) x[static_cast<size_t>(j)] = normal(rng) * scale;
  }
  return x;
}

// Quantize + dequantize a row through the traits table.
std::vector<float> round_trip(GgmlType type, const std::vector<float>& x) {
  const BlockTraits* t = block_traits(type);
  const GgmlTypeInfo info = ggml_type_info(type);
  const auto n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(static_cast<size_t>(n) / info.block_size * info.type_size);
  t->from_float(x.data(), q.data(), n);
  std::vector<float> y(x.size());
  t->to_float(q.data(), y.data(), n);
  return y;
}

// ---------------------------------------------------------------------------------------------------
// fp16 / bf16 conversions

TEST(Fp16, EveryBitPatternRoundTrips) {
  for (uint32_t i = 0; i < 0x10000; ++i) {
    const auto h = static_cast<uint16_t>(i);
    const float f = fp16_to_fp32(h);
    ASSERT_EQ(std::isnan(f), fp16_is_nan(h)) << std::hex << i;
    ASSERT_EQ(fp32_to_fp16(f), h) << std::hex << i;  // NaN payloads survive too (numpy semantics)
  }
}

TEST(Fp16, DecodesToTheEncodedValue) {
  // Independent decoding from the IEEE definition, in double.
  for (uint32_t i = 0; i < 0x10000; ++i) {
    const uint32_t e = (i >> 10) & 0x1f, m = i & 0x3ff;
    if (e == 0x1f) continue;
    const double mag =
        e == 0 ? std::ldexp(static_cast<double>(m), -24) : std::ldexp(1024.0 + m, static_cast<int>(e) - 25);
    const double want = (i & 0x8000) ? -mag : mag;
    ASSERT_EQ(bits(fp16_to_fp32(static_cast<uint16_t>(i))), bits(static_cast<float>(want))) << std::hex << i;
  }
  EXPECT_EQ(bits(fp16_to_fp32(0x7c00)), 0x7f800000u);
  EXPECT_EQ(bits(fp16_to_fp32(0xfc00)), 0xff800000u);
}

TEST(Fp16, EncodesToNearestEven) {
  SCOPED_TRACE("seed " + std::to_string(kSeed));
  std::mt19937 rng(kSeed);
  for (int k = 0; k < 2'000'000; ++k) {
    const float x = from_bits(static_cast<uint32_t>(rng()));
    if (std::isnan(x)) continue;
    const uint16_t h = fp32_to_fp16(x);
    ASSERT_EQ(h & 0x8000, (bits(x) >> 16) & 0x8000) << x;
    const double ax = std::fabs(static_cast<double>(x));
    if (ax >= 65520.0) {  // halfway between 65504 and the next step (65536) and beyond: Inf
      ASSERT_EQ(h & 0x7fff, 0x7c00) << x;
      continue;
    }
    const uint16_t m = h & 0x7fff;
    ASSERT_LT(m, 0x7c00) << x;
    const double err = std::fabs(ax - fp16_to_fp32(m));
    for (int step : {-1, 1}) {
      const int nb = m + step;
      if (nb < 0 || nb >= 0x7c00) continue;
      const double other = std::fabs(ax - fp16_to_fp32(static_cast<uint16_t>(nb)));
      ASSERT_LE(err, other) << x;
      if (err == other) {
        ASSERT_EQ(m & 1, 0) << "tie must go to even: " << x;
      }
    }
  }
}

TEST(Fp16, PinnedConversions) {
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65519.996f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(-65520.0f), 0xfc00);
  EXPECT_EQ(fp32_to_fp16(0x1p-24f), 0x0001);
  EXPECT_EQ(fp32_to_fp16(0x1p-25f), 0x0000);  // tie to even (zero)
  EXPECT_EQ(fp32_to_fp16(-0x1p-25f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(0x1.000002p-25f), 0x0001);  // just above the tie
  EXPECT_EQ(fp32_to_fp16(0x1.8p-24f), 0x0002);       // 1.5 units: tie to even (2)
  EXPECT_EQ(fp32_to_fp16(0x1.ff8p-15f), 0x03ff);     // largest subnormal
  EXPECT_EQ(fp32_to_fp16(0x1.ffcp-15f), 0x0400);     // tie: rounds to even, the smallest normal
  EXPECT_EQ(fp32_to_fp16(0x1.ffbfep-15f), 0x03ff);   // just below that tie
  EXPECT_EQ(fp32_to_fp16(1.0f + 0x1p-11f), 0x3c00);  // tie to even
  EXPECT_EQ(fp32_to_fp16(1.0f + 0x3p-11f), 0x3c02);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(from_bits(0x7fc00000)), 0x7e00);
  EXPECT_EQ(fp32_to_fp16(from_bits(0xffc00000)), 0xfe00);
  // numpy keeps the top payload bits and does not quieten; a payload only in the low bits becomes 1.
  EXPECT_EQ(fp32_to_fp16(from_bits(0x7f800001)), 0x7c01);
  EXPECT_EQ(fp32_to_fp16(from_bits(0x7fa00000)), 0x7d00);
  EXPECT_EQ(fp32_to_fp16(from_bits(0xff801fff)), 0xfc01);
  EXPECT_EQ(bits(fp16_to_fp32(0x7c01)), 0x7f802000u);
}

TEST(Bf16, EveryBitPatternRoundTrips) {
  for (uint32_t i = 0; i < 0x10000; ++i) {
    const auto h = static_cast<uint16_t>(i);
    const float f = bf16_to_fp32(h);
    ASSERT_EQ(bits(f), i << 16);
    ASSERT_EQ(std::isnan(f), bf16_is_nan(h)) << std::hex << i;
    const uint16_t back = fp32_to_bf16(f);
    if (bf16_is_nan(h)) {
      // NaN stays NaN, of the same sign, forced quiet (ggml_compute_fp32_to_bf16).
      ASSERT_EQ(back, h | 0x0040) << std::hex << i;
    } else {
      ASSERT_EQ(back, h) << std::hex << i;
    }
  }
}

TEST(Bf16, EncodesToNearestEven) {
  SCOPED_TRACE("seed " + std::to_string(kSeed));
  std::mt19937 rng(kSeed + 1);
  for (int k = 0; k < 2'000'000; ++k) {
    const float x = from_bits(static_cast<uint32_t>(rng()));
    if (!std::isfinite(x)) continue;
    const uint16_t m = fp32_to_bf16(std::fabs(x));
    ASSERT_EQ(fp32_to_bf16(x), m | ((bits(x) >> 16) & 0x8000)) << x;
    if (m == 0x7f80) {  // overflow: only from at or above the midpoint of FLT_MAX's bf16 and Inf
      ASSERT_GE(bits(std::fabs(x)), 0x7f7f8000u) << x;
      continue;
    }
    const double ax = std::fabs(static_cast<double>(x));
    const double err = std::fabs(ax - bf16_to_fp32(m));
    for (int step : {-1, 1}) {
      const int nb = m + step;
      if (nb < 0 || nb >= 0x7f80) continue;
      const double other = std::fabs(ax - bf16_to_fp32(static_cast<uint16_t>(nb)));
      ASSERT_LE(err, other) << x;
      if (err == other) {
        ASSERT_EQ(m & 1, 0) << "tie must go to even: " << x;
      }
    }
  }
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3f808000)), 0x3f80);  // tie, even stays
  EXPECT_EQ(fp32_to_bf16(from_bits(0x3f818000)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(fp32_to_bf16(from_bits(0x7f7fffff)), 0x7f80);  // FLT_MAX rounds to Inf
  EXPECT_EQ(fp32_to_bf16(from_bits(0x7f800001)), 0x7fc0);  // signalling NaN forced quiet
}

// ---------------------------------------------------------------------------------------------------
// Golden values: the 0..127 ramp, from gguf.quants (== ggml's reference), pinned bit for bit.

void expect_bits_eq(const std::vector<float>& got, const float* want, const char* what) {
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(bits(got[i]), bits(want[i])) << what << " element " << i << ": " << got[i] << " vs " << want[i];
}

TEST(Golden, Q4_0Ramp) {
  // clang-format off
  static const float kWant[128] = {
      -0.0f, -0.0f, 3.875f, 3.875f, 3.875f, 3.875f, 7.75f, 7.75f,
      7.75f, 7.75f, 11.625f, 11.625f, 11.625f, 11.625f, 15.5f, 15.5f,
      15.5f, 15.5f, 19.375f, 19.375f, 19.375f, 19.375f, 23.25f, 23.25f,
      23.25f, 23.25f, 27.125f, 27.125f, 27.125f, 27.125f, 31.0f, 31.0f,
      31.5f, 31.5f, 31.5f, 31.5f, 39.375f, 39.375f, 39.375f, 39.375f,
      39.375f, 39.375f, 39.375f, 39.375f, 47.25f, 47.25f, 47.25f, 47.25f,
      47.25f, 47.25f, 47.25f, 47.25f, 55.125f, 55.125f, 55.125f, 55.125f,
      55.125f, 55.125f, 55.125f, 55.125f, 63.0f, 63.0f, 63.0f, 63.0f,
      59.375f, 59.375f, 71.25f, 71.25f, 71.25f, 71.25f, 71.25f, 71.25f,
      71.25f, 71.25f, 71.25f, 71.25f, 71.25f, 71.25f, 83.125f, 83.125f,
      83.125f, 83.125f, 83.125f, 83.125f, 83.125f, 83.125f, 83.125f, 83.125f,
      83.125f, 83.125f, 95.0f, 95.0f, 95.0f, 95.0f, 95.0f, 95.0f,
      95.25f, 95.25f, 95.25f, 95.25f, 95.25f, 95.25f, 95.25f, 95.25f,
      111.125f, 111.125f, 111.125f, 111.125f, 111.125f, 111.125f, 111.125f, 111.125f,
      111.125f, 111.125f, 111.125f, 111.125f, 111.125f, 111.125f, 111.125f, 111.125f,
      127.0f, 127.0f, 127.0f, 127.0f, 127.0f, 127.0f, 127.0f, 127.0f,
  };
  // clang-format on
  const std::vector<float> x = ramp(128);
  BlockQ4_0 q[4];
  quantize_row_q4_0_ref(x.data(), q, 128);
  EXPECT_EQ(q[0].d, 0xc3c0);  // -31/8 = -3.875
  EXPECT_EQ(q[0].qs[0], 0x48);
  expect_bits_eq(round_trip(GgmlType::Q4_0, x), kWant, "q4_0");
}

TEST(Golden, Q4_1Ramp) {
  // clang-format off
  static const float kWant[128] = {
      0.0f, 0.0f, 2.0664062f, 2.0664062f, 4.1328125f, 4.1328125f, 6.1992188f, 6.1992188f,
      8.265625f, 8.265625f, 10.332031f, 10.332031f, 12.3984375f, 12.3984375f, 14.464844f, 14.464844f,
      16.53125f, 16.53125f, 18.597656f, 18.597656f, 20.664062f, 20.664062f, 22.730469f, 22.730469f,
      24.796875f, 24.796875f, 26.863281f, 26.863281f, 28.929688f, 28.929688f, 30.996094f, 30.996094f,
      32.0f, 32.0f, 34.066406f, 34.066406f, 36.132812f, 36.132812f, 38.19922f, 38.19922f,
      40.265625f, 40.265625f, 42.33203f, 42.33203f, 44.398438f, 44.398438f, 46.464844f, 46.464844f,
      48.53125f, 48.53125f, 50.597656f, 50.597656f, 52.664062f, 52.664062f, 54.73047f, 54.73047f,
      56.796875f, 56.796875f, 58.86328f, 58.86328f, 60.929688f, 60.929688f, 62.996094f, 62.996094f,
      64.0f, 64.0f, 66.06641f, 66.06641f, 68.13281f, 68.13281f, 70.19922f, 70.19922f,
      72.265625f, 72.265625f, 74.33203f, 74.33203f, 76.39844f, 76.39844f, 78.46484f, 78.46484f,
      80.53125f, 80.53125f, 82.59766f, 82.59766f, 84.66406f, 84.66406f, 86.73047f, 86.73047f,
      88.796875f, 88.796875f, 90.86328f, 90.86328f, 92.92969f, 92.92969f, 94.99609f, 94.99609f,
      96.0f, 96.0f, 98.06641f, 98.06641f, 100.13281f, 100.13281f, 102.19922f, 102.19922f,
      104.265625f, 104.265625f, 106.33203f, 106.33203f, 108.39844f, 108.39844f, 110.46484f, 110.46484f,
      112.53125f, 112.53125f, 114.59766f, 114.59766f, 116.66406f, 116.66406f, 118.73047f, 118.73047f,
      120.796875f, 120.796875f, 122.86328f, 122.86328f, 124.92969f, 124.92969f, 126.99609f, 126.99609f,
  };
  // clang-format on
  const std::vector<float> x = ramp(128);
  BlockQ4_1 q[4];
  quantize_row_q4_1_ref(x.data(), q, 128);
  EXPECT_EQ(q[0].d, 0x4022);  // fp16(31/15)
  EXPECT_EQ(q[0].m, 0x0000);
  expect_bits_eq(round_trip(GgmlType::Q4_1, x), kWant, "q4_1");
}

// clang-format off
const float kQ8Ramp[128] = {
    0.0f, 0.9765625f, 1.953125f, 2.9296875f, 3.90625f, 4.8828125f, 6.1035156f, 7.080078f,
    8.056641f, 9.033203f, 10.009766f, 10.986328f, 11.962891f, 12.939453f, 13.916016f, 14.892578f,
    16.113281f, 17.089844f, 18.066406f, 19.042969f, 20.019531f, 20.996094f, 21.972656f, 22.949219f,
    23.925781f, 24.902344f, 26.123047f, 27.09961f, 28.076172f, 29.052734f, 30.029297f, 31.00586f,
    32.246094f, 33.23828f, 34.23047f, 35.222656f, 36.214844f, 37.20703f, 38.19922f, 39.191406f,
    40.183594f, 41.17578f, 42.16797f, 43.160156f, 44.152344f, 45.14453f, 46.13672f, 47.128906f,
    48.121094f, 49.11328f, 50.10547f, 51.097656f, 52.089844f, 53.08203f, 54.07422f, 55.066406f,
    56.058594f, 57.05078f, 58.04297f, 59.035156f, 60.027344f, 61.01953f, 62.01172f, 63.003906f,
    64.33203f, 65.08008f, 65.828125f, 67.32422f, 68.072266f, 68.82031f, 70.31641f, 71.06445f,
    71.8125f, 73.30859f, 74.05664f, 74.80469f, 76.30078f, 77.04883f, 77.796875f, 79.29297f,
    80.041016f, 80.78906f, 82.28516f, 83.0332f, 83.78125f, 85.27734f, 86.02539f, 86.77344f,
    88.26953f, 89.01758f, 89.765625f, 91.26172f, 92.009766f, 92.75781f, 94.25391f, 95.00195f,
    96.0f, 97.0f, 98.0f, 99.0f, 100.0f, 101.0f, 102.0f, 103.0f,
    104.0f, 105.0f, 106.0f, 107.0f, 108.0f, 109.0f, 110.0f, 111.0f,
    112.0f, 113.0f, 114.0f, 115.0f, 116.0f, 117.0f, 118.0f, 119.0f,
    120.0f, 121.0f, 122.0f, 123.0f, 124.0f, 125.0f, 126.0f, 127.0f,
};
// clang-format on

TEST(Golden, Q8_0Ramp) {
  const std::vector<float> x = ramp(128);
  BlockQ8_0 q[4];
  quantize_row_q8_0_ref(x.data(), q, 128);
  EXPECT_EQ(q[0].d, 0x33d0);  // fp16(31/127)
  EXPECT_EQ(q[3].d, 0x3c00);  // 127/127 = 1: the last block is exact
  expect_bits_eq(round_trip(GgmlType::Q8_0, x), kQ8Ramp, "q8_0");
}

TEST(Golden, Q8_1Ramp) {
  const std::vector<float> x = ramp(128);
  BlockQ8_1 q[4];
  quantize_row_q8_1_ref(x.data(), q, 128);
  // qs and d as q8_0; s = fp16(sum(qs) * d) with the f32 d (sums 2032, 3072, 3403, 3568).
  const uint16_t kD[4] = {0x33d0, 0x37f0, 0x39fc, 0x3c00};
  const uint16_t kS[4] = {0x5fc0, 0x65f4, 0x68f9, 0x6af8};
  for (int b = 0; b < 4; ++b) {
    EXPECT_EQ(q[b].d, kD[b]) << b;
    EXPECT_EQ(q[b].s, kS[b]) << b;
  }
  expect_bits_eq(round_trip(GgmlType::Q8_1, x), kQ8Ramp, "q8_1");
}

TEST(Golden, FloatTypesRampIsExact) {
  const std::vector<float> x = ramp(128);
  expect_bits_eq(round_trip(GgmlType::F32, x), x.data(), "f32");
  expect_bits_eq(round_trip(GgmlType::F16, x), x.data(), "f16");
  expect_bits_eq(round_trip(GgmlType::BF16, x), x.data(), "bf16");
}

// q6_K: build a super-block from known 6-bit codes with an encoder written from the layout description,
// so a misread bit position shows up here and not only against gguf.
TEST(Golden, Q6_KLayout) {
  BlockQ6_K b{};
  b.d = fp32_to_fp16(0.5f);
  for (int g = 0; g < 16; ++g) b.scales[g] = static_cast<int8_t>(g - 8);
  auto code = [](int i) { return (i * 7 + 3) % 64; };  // every 6-bit value, scrambled
  for (int i = 0; i < 256; ++i) {
    const int half = i / 128, r = i % 128, quarter = r / 32, l = r % 32;
    const int q = code(i);
    uint8_t& ql = b.ql[half * 64 + l + (quarter & 1) * 32];
    ql = static_cast<uint8_t>(ql | ((q & 0x0f) << (quarter >= 2 ? 4 : 0)));
    uint8_t& qh = b.qh[half * 32 + l];
    qh = static_cast<uint8_t>(qh | ((q >> 4) << (2 * quarter)));
  }
  float y[256];
  dequantize_row_q6_K(&b, y, 256);
  for (int i = 0; i < 256; ++i)
    EXPECT_EQ(y[i], 0.5f * static_cast<float>((i / 16 - 8) * (code(i) - 32))) << i;
}

// ---------------------------------------------------------------------------------------------------
// Round-trip error held in a two-sided band. A step-s quantizer with uniform rounding residue has mean
// squared error s^2/12, so the mean of 12 (err/s)^2 over the elements must be close to 1 (normalized per
// element, so that blocks of every scale count alike). Too small means the values were not really
// quantized at that step (or the test measures the wrong thing); too large means bad rounding or a wrong
// scale. The element that defines a block's scale is exact by construction and is left out of the mean.
// Per element, the error is also bounded from the block's own scale.

// Largest rounding error of storing v as fp16: half an ulp, which is absolute (2^-25) among subnormals.
double fp16_half_ulp(double v) {
  return std::max(std::fabs(v) * 0x1p-11, 0x1p-25);
}

struct Band {
  double sum = 0;
  int64_t count = 0;
  void add(double err, double step) {
    sum += 12.0 * (err / step) * (err / step);
    ++count;
  }
  double ratio() const { return sum / static_cast<double>(count); }
  void expect_within(double lo, double hi, std::string_view what) const {
    std::printf("  %-5s mean 12 (err/step)^2 = %.4f over %lld values (band %.2f..%.2f)\n",
                std::string(what).c_str(), ratio(), static_cast<long long>(count), lo, hi);
    EXPECT_GT(ratio(), lo) << what;
    EXPECT_LT(ratio(), hi) << what;
  }
};

// Index of the first value of largest magnitude in x[0..n): the one that sets q4_0/q8_0/q8_K's scale.
int64_t argmax_abs(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t j = 1; j < n; ++j)
    if (std::fabs(x[j]) > std::fabs(x[best])) best = j;
  return best;
}

TEST(ErrorBand, BlockTypes) {
  SCOPED_TRACE("seed " + std::to_string(kSeed));
  std::mt19937 rng(kSeed + 2);
  const int64_t n = 32 * 8192;
  // Scales 10^-2..10^3 keep every fp16 d normal, so d's own rounding stays relative (<= 2^-11).
  const std::vector<float> x = scaled_normal(rng, n, 32, -2.0f, 3.0f);

  // d (and m) are stored in fp16, whose rounding moves a value with code q by |q| * half-ulp(d).
  {  // q4_0: the side opposite the signed max clips at q = 15, so the error there reaches |d| (and lifts
     // the mean a little above 1).
    std::vector<BlockQ4_0> q(n / 32);
    quantize_row_q4_0_ref(x.data(), q.data(), n);
    std::vector<float> y(static_cast<size_t>(n));
    dequantize_row_q4_0(q.data(), y.data(), n);
    Band band;
    for (int64_t b = 0; b < n / 32; ++b) {
      const double d = std::fabs(fp16_to_fp32(q[static_cast<size_t>(b)].d));
      const int64_t skip = argmax_abs(&x[b * 32], 32);
      for (int64_t j = 0; j < 32; ++j) {
        const int64_t i = b * 32 + j;
        const double err = std::fabs(static_cast<double>(x[i]) - y[i]);
        ASSERT_LE(err, d + 9 * fp16_half_ulp(d)) << "q4_0 element " << i;
        if (j != skip) band.add(err, d);
      }
    }
    band.expect_within(0.97, 1.10, "q4_0");
  }
  {  // q4_1: step d, offset m; min and max both set the scale.
    std::vector<BlockQ4_1> q(n / 32);
    quantize_row_q4_1_ref(x.data(), q.data(), n);
    std::vector<float> y(static_cast<size_t>(n));
    dequantize_row_q4_1(q.data(), y.data(), n);
    Band band;
    for (int64_t b = 0; b < n / 32; ++b) {
      const double d = fp16_to_fp32(q[static_cast<size_t>(b)].d),
                   m = fp16_to_fp32(q[static_cast<size_t>(b)].m);
      const float* xb = &x[b * 32];
      const int64_t lo = std::min_element(xb, xb + 32) - xb, hi = std::max_element(xb, xb + 32) - xb;
      for (int64_t j = 0; j < 32; ++j) {
        const int64_t i = b * 32 + j;
        const double err = std::fabs(static_cast<double>(x[i]) - y[i]);
        ASSERT_LE(err, 0.5 * d + 16 * fp16_half_ulp(d) + fp16_half_ulp(m)) << "q4_1 element " << i;
        if (j != lo && j != hi) band.add(err, d);
      }
    }
    band.expect_within(0.97, 1.03, "q4_1");
  }
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q8_1}) {  // step d
    const std::vector<float> y = round_trip(type, x);
    std::vector<BlockQ8_0> q(n / 32);
    quantize_row_q8_0_ref(x.data(), q.data(), n);
    Band band;
    for (int64_t b = 0; b < n / 32; ++b) {
      const double d = fp16_to_fp32(q[static_cast<size_t>(b)].d);
      const int64_t skip = argmax_abs(&x[b * 32], 32);
      for (int64_t j = 0; j < 32; ++j) {
        const int64_t i = b * 32 + j;
        const double err = std::fabs(static_cast<double>(x[i]) - y[i]);
        ASSERT_LE(err, 0.5 * d + 128 * fp16_half_ulp(d)) << ggml_type_name(type) << " element " << i;
        if (j != skip) band.add(err, d);
      }
    }
    band.expect_within(0.97, 1.03, ggml_type_name(type));
  }
  {  // q8_K: step |d|, kept in f32.
    const std::vector<float> xk = scaled_normal(rng, n, 256, -6.0f, 6.0f);
    std::vector<BlockQ8_K> q(n / 256);
    quantize_row_q8_K_ref(xk.data(), q.data(), n);
    std::vector<float> y(static_cast<size_t>(n));
    dequantize_row_q8_K(q.data(), y.data(), n);
    Band band;
    for (int64_t b = 0; b < n / 256; ++b) {
      const double d = std::fabs(q[static_cast<size_t>(b)].d);
      const int64_t skip = argmax_abs(&xk[b * 256], 256);
      for (int64_t j = 0; j < 256; ++j) {
        const int64_t i = b * 256 + j;
        const double err = std::fabs(static_cast<double>(xk[i]) - y[i]);
        ASSERT_LE(err, 0.5 * d * (1.0 + 0x1p-16)) << "q8_K element " << i;
        if (j != skip) band.add(err, d);
      }
    }
    band.expect_within(0.97, 1.03, "q8_K");
  }
}

TEST(ErrorBand, FloatTypes) {
  SCOPED_TRACE("seed " + std::to_string(kSeed));
  std::mt19937 rng(kSeed + 3);
  const std::vector<float> x = scaled_normal(rng, 1 << 18, 32, -3.0f, 3.0f);  // within fp16's range
  for (auto [type, mant_bits] : {std::pair{GgmlType::F16, 10}, std::pair{GgmlType::BF16, 7}}) {
    const std::vector<float> y = round_trip(type, x);
    Band band;
    for (size_t i = 0; i < x.size(); ++i) {
      if (std::fabs(x[i]) < 0x1p-14f) continue;  // fp16 subnormals have a fixed step; left to the edge tests
      const double ulp = std::ldexp(1.0, std::ilogb(x[i]) - mant_bits);
      const double err = std::fabs(static_cast<double>(x[i]) - y[i]);
      ASSERT_LE(err, 0.5 * ulp) << ggml_type_name(type) << " element " << i;
      band.add(err, ulp);
    }
    band.expect_within(0.97, 1.03, ggml_type_name(type));
  }
}

// ---------------------------------------------------------------------------------------------------
// Edge blocks

TEST(EdgeBlocks, AllZero) {
  const std::vector<float> x(256, 0.0f);
  for (GgmlType type :
       {GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q8_1}) {
    for (float v : round_trip(type, x)) EXPECT_EQ(v, 0.0f) << ggml_type_name(type);
  }
  BlockQ4_0 q4;
  quantize_row_q4_0_ref(x.data(), &q4, 32);
  EXPECT_EQ(q4.d, 0x8000);  // 0 / -8 = -0, as ggml writes it
  // An all -0 block: ggml keeps max = +0 (it replaces only on a strictly larger |x|), so d is -0 again.
  // (gguf.quants takes the -0 itself and writes +0: the one place it and ggml differ; we follow ggml.)
  const std::vector<float> neg(32, -0.0f);
  quantize_row_q4_0_ref(neg.data(), &q4, 32);
  EXPECT_EQ(q4.d, 0x8000);
  BlockQ8_K q8k;
  std::memset(&q8k, 0x55, sizeof q8k);
  quantize_row_q8_K_ref(x.data(), &q8k, 256);
  EXPECT_EQ(q8k.d, 0.0f);
  for (int j = 0; j < 256; ++j) EXPECT_EQ(q8k.qs[j], 0);
  for (int g = 0; g < 16; ++g) EXPECT_EQ(q8k.bsums[g], 0);  // defined here, unlike ggml
}

TEST(EdgeBlocks, Constant) {
  for (float c : {1.5f, -3.0f, 0.125f, 1000.0f}) {  // values fp16 holds exactly
    const std::vector<float> x(32, c);
    for (float v : round_trip(GgmlType::Q4_0, x)) EXPECT_EQ(v, c);  // q = 0 maps back to d * -8 = c
    for (float v : round_trip(GgmlType::Q4_1, x)) EXPECT_EQ(v, c);  // d = 0, m = c
    for (float v : round_trip(GgmlType::Q8_0, x))
      EXPECT_NEAR(v, c, std::fabs(c) * 0x1p-10);  // d = c/127 in fp16
  }
}

TEST(EdgeBlocks, SingleOutlier) {
  for (int pos : {0, 17, 31}) {
    for (float out : {1000.0f, -1000.0f}) {
      std::vector<float> x(32, 0.0f);
      x[static_cast<size_t>(pos)] = out;
      for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q8_1}) {
        const std::vector<float> y = round_trip(type, x);
        for (int j = 0; j < 32; ++j) {
          if (j == pos)
            EXPECT_NEAR(y[j], out, std::fabs(out) * 0x1p-10) << ggml_type_name(type) << " " << pos;
          else if (!(type == GgmlType::Q4_1 && out < 0))  // q4_1 with a negative min: zeros land on a step
            EXPECT_EQ(y[j], 0.0f) << ggml_type_name(type) << " " << pos << " " << j;
          else
            EXPECT_NEAR(y[j], 0.0f, 1000.0f / 15 / 2 * 1.01) << j;
        }
      }
    }
  }
}

TEST(EdgeBlocks, Fp16Extremes) {
  std::vector<float> x(32);
  for (size_t j = 0; j < 32; ++j) x[j] = (j % 2) ? -65504.0f : 65504.0f;
  for (GgmlType type : {GgmlType::F16, GgmlType::BF16, GgmlType::F32}) {
    const std::vector<float> y = round_trip(type, x);
    for (size_t j = 0; j < 32; ++j)
      EXPECT_EQ(y[j], type == GgmlType::BF16 ? std::copysign(65536.0f, x[j]) : x[j]);
  }
  // q4_0: the first extreme (+65504) sets d = -8188 exactly; -65504 lands on 16.5 and clips to 15.
  const std::vector<float> y = round_trip(GgmlType::Q4_0, x);
  for (size_t j = 0; j < 32; ++j) EXPECT_EQ(y[j], (j % 2) ? -57316.0f : 65504.0f) << j;
  for (float v : round_trip(GgmlType::Q8_0, x)) EXPECT_NEAR(std::fabs(v), 65504.0f, 65504.0f * 0x1p-10);
  const std::vector<float> y1 = round_trip(GgmlType::Q4_1, x);  // d = 131008 / 15 fits fp16; m = -65504
  for (size_t j = 0; j < 32; ++j) EXPECT_NEAR(y1[j], x[j], 65504.0f * 0x1p-9) << j;
}

TEST(EdgeBlocks, Subnormals) {
  std::vector<float> x(32);
  for (size_t j = 0; j < 32; ++j) x[j] = static_cast<float>(static_cast<int>(j) - 16) * 37 * 0x1p-24f;
  for (float v : x) EXPECT_EQ(fp16_to_fp32(fp32_to_fp16(v)), v);  // fp16 subnormals are exact
  // q8_0: d = amax/127 underflows fp16 to a subnormal; values come back finite and equal to d16 * q.
  BlockQ8_0 q;
  quantize_row_q8_0_ref(x.data(), &q, 32);
  const float d16 = fp16_to_fp32(q.d);
  float y[32];
  dequantize_row_q8_0(&q, y, 32);
  for (int j = 0; j < 32; ++j) {
    EXPECT_TRUE(std::isfinite(y[j]));
    EXPECT_EQ(y[j], static_cast<float>(q.qs[j]) * d16);
  }
  // f32 subnormals: 1/d overflows to Inf; codes follow x86's float->int (0), never UB.
  const std::vector<float> tiny(32, 1e-40f);
  quantize_row_q8_0_ref(tiny.data(), &q, 32);
  EXPECT_EQ(q.d, 0x0000);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(q.qs[j], 0);
}

TEST(EdgeBlocks, NonFiniteInputsAreDefined) {
  // Not a format promise (no reference agrees across platforms), only that nothing is undefined: run under
  // UBSan, and check the result is deterministic.
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> x(256, 1.0f);
  x[3] = nan;
  x[40] = inf;
  x[77] = -inf;
  x[200] = 1e-40f;
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q8_1}) {
    const std::vector<float> a = round_trip(type, x), b = round_trip(type, x);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  }
  std::vector<BlockQ8_K> q(1);
  quantize_row_q8_K_ref(x.data(), q.data(), 256);
  const std::vector<float> y = round_trip(GgmlType::F16, x);
  EXPECT_TRUE(std::isnan(y[3]));
  EXPECT_EQ(y[40], inf);
  EXPECT_EQ(y[77], -inf);
}

TEST(EdgeBlocks, Q8_KSignedExtremeMapsToMinus127) {
  std::vector<float> x(256);
  for (size_t j = 0; j < 256; ++j) x[j] = static_cast<float>(j % 7) * 0.25f - 0.5f;
  x[5] = 2.0f;
  BlockQ8_K q;
  quantize_row_q8_K_ref(x.data(), &q, 256);
  EXPECT_EQ(q.qs[5], -127);  // iscale = -127 / max
  EXPECT_EQ(q.d, 1.0f / (-127.0f / 2.0f));
  for (int g = 0; g < 16; ++g) {
    int sum = 0;
    for (int j = 0; j < 16; ++j) sum += q.qs[g * 16 + j];
    EXPECT_EQ(q.bsums[g], sum) << g;
  }
}

// ---------------------------------------------------------------------------------------------------
// Rows: any whole number of blocks (0 included), each block independent, nothing written past the end.

TEST(Rows, BlocksAreIndependentAndStayInBounds) {
  SCOPED_TRACE("seed " + std::to_string(kSeed));
  std::mt19937 rng(kSeed + 4);
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                        GgmlType::Q8_0, GgmlType::Q8_1}) {
    const BlockTraits* t = block_traits(type);
    const GgmlTypeInfo info = ggml_type_info(type);
    const int64_t unit =
        type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16 ? 32 : info.block_size;
    for (int64_t blocks : {0, 1, 2, 3, 5, 7, 17}) {
      const int64_t n = blocks * unit;
      const std::vector<float> x = scaled_normal(rng, n, unit);
      const size_t bytes = static_cast<size_t>(n) / info.block_size * info.type_size;
      std::vector<uint8_t> whole(bytes + 16, 0xab);
      t->from_float(x.data(), whole.data(), n);
      for (size_t k = bytes; k < whole.size(); ++k) ASSERT_EQ(whole[k], 0xab) << "overrun";
      const size_t unit_bytes = static_cast<size_t>(unit) / info.block_size * info.type_size;
      for (int64_t b = 0; b < blocks; ++b) {
        std::vector<uint8_t> one(unit_bytes);
        t->from_float(x.data() + b * unit, one.data(), unit);
        ASSERT_EQ(std::memcmp(one.data(), whole.data() + static_cast<size_t>(b) * unit_bytes, unit_bytes), 0);
      }
      std::vector<float> y(static_cast<size_t>(n) + 4, 7.0f);
      t->to_float(whole.data(), y.data(), n);
      for (size_t k = static_cast<size_t>(n); k < y.size(); ++k) ASSERT_EQ(y[k], 7.0f) << "overrun";
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Traits

TEST(Traits, TableMatchesTypeInfoAndStructs) {
  struct Want {
    GgmlType type;
    size_t block_bytes;
    int64_t block_size;
    bool writable;
  };
  const Want kWant[] = {
      {GgmlType::F32, sizeof(float), 1, true},          {GgmlType::F16, sizeof(uint16_t), 1, true},
      {GgmlType::BF16, sizeof(uint16_t), 1, true},      {GgmlType::Q4_0, sizeof(BlockQ4_0), QK4_0, true},
      {GgmlType::Q4_1, sizeof(BlockQ4_1), QK4_1, true}, {GgmlType::Q8_0, sizeof(BlockQ8_0), QK8_0, true},
      {GgmlType::Q8_1, sizeof(BlockQ8_1), QK8_1, true}, {GgmlType::Q2_K, sizeof(BlockQ2_K), QK_K, true},
      {GgmlType::Q3_K, sizeof(BlockQ3_K), QK_K, true},  {GgmlType::Q4_K, sizeof(BlockQ4_K), QK_K, true},
      {GgmlType::Q5_K, sizeof(BlockQ5_K), QK_K, true},  {GgmlType::Q6_K, sizeof(BlockQ6_K), QK_K, true},
  };
  for (const Want& w : kWant) {
    const BlockTraits* t = block_traits(w.type);
    ASSERT_NE(t, nullptr) << ggml_type_name(w.type);
    EXPECT_EQ(t->type, w.type);
    EXPECT_NE(t->to_float, nullptr);
    EXPECT_EQ(t->from_float != nullptr, w.writable) << ggml_type_name(w.type);
    const GgmlTypeInfo info = ggml_type_info(w.type);
    EXPECT_EQ(info.type_size, w.block_bytes) << ggml_type_name(w.type);
    EXPECT_EQ(info.block_size, static_cast<uint32_t>(w.block_size)) << ggml_type_name(w.type);
  }
  EXPECT_EQ(ggml_type_info(GgmlType::Q8_K).type_size, sizeof(BlockQ8_K));
  EXPECT_EQ(ggml_type_info(GgmlType::Q8_K).block_size, static_cast<uint32_t>(QK_K));
  int with_traits = 0;
  for (uint32_t id = 0; id < kGgmlTypeCount; ++id) {
    if (!ggml_type_info(id)) continue;
    if (block_traits(static_cast<GgmlType>(id))) ++with_traits;
  }
  // f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q8_1, q2_K..q6_K, iq4_nl, iq4_xs; everything else (q8_K,
  // the other i-quants, ternary types, integers) has none.
  EXPECT_EQ(with_traits, 16);
  EXPECT_EQ(block_traits(GgmlType::Q8_K), nullptr);
  EXPECT_NE(block_traits(GgmlType::Q4_K), nullptr);
}

TEST(Traits, AgreeWithTheTypedFunctions) {
  SCOPED_TRACE("seed " + std::to_string(kSeed));
  std::mt19937 rng(kSeed + 5);
  const std::vector<float> x = scaled_normal(rng, 256, 32);
  std::vector<BlockQ4_1> q(8);
  quantize_row_q4_1_ref(x.data(), q.data(), 256);
  std::vector<BlockQ4_1> via(8);
  block_traits(GgmlType::Q4_1)->from_float(x.data(), via.data(), 256);
  EXPECT_EQ(std::memcmp(q.data(), via.data(), sizeof(BlockQ4_1) * 8), 0);
  std::vector<uint16_t> h(256);
  quantize_row_f16_ref(x.data(), h.data(), 256);
  std::vector<float> a(256), b(256);
  dequantize_row_f16(h.data(), a.data(), 256);
  block_traits(GgmlType::F16)->to_float(h.data(), b.data(), 256);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), 256 * sizeof(float)), 0);
}

}  // namespace
}  // namespace qe
