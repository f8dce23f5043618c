// Element-wise ops of every SIMD level this CPU runs against the scalar reference, with tolerances
// derived from the inputs (operation count x FLT_EPSILON x magnitude).
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/kernel_table.h"

namespace qe::kernels {
namespace {

constexpr int64_t kSizes[] = {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 67, 127, 129, 255, 1023, 4096};

std::vector<float> randv(uint32_t seed, int64_t n, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

class OpsIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    simd_ = kernel_table(GetParam());
    if (!simd_) GTEST_SKIP() << "skipping " << isa_name(GetParam()) << ": this CPU/build lacks it";
    ref_ = kernel_table(Isa::ref);
  }
  const KernelTable* simd_ = nullptr;
  const KernelTable* ref_ = nullptr;
};

TEST_P(OpsIsa, AddAndScaleAreExact) {
  for (int64_t n : kSizes) {
    const uint32_t seed = static_cast<uint32_t>(n);
    const auto a = randv(seed, n, -4, 4), b = randv(seed + 1, n, -4, 4);
    std::vector<float> ys(a.size()), yr(a.size());
    simd_->add(a.data(), b.data(), ys.data(), n);
    ref_->add(a.data(), b.data(), yr.data(), n);
    ASSERT_EQ(ys, yr) << "add n=" << n << " seed=" << seed;
    simd_->scale(a.data(), 0.37f, ys.data(), n);
    ref_->scale(a.data(), 0.37f, yr.data(), n);
    ASSERT_EQ(ys, yr) << "scale n=" << n << " seed=" << seed;
  }
}

TEST_P(OpsIsa, RmsNorm) {
  for (int64_t n : kSizes) {
    const uint32_t seed = static_cast<uint32_t>(100 + n);
    const auto x = randv(seed, n, -3, 3), w = randv(seed + 1, n, 0.5f, 1.5f);
    std::vector<float> ys(x.size()), yr(x.size());
    simd_->rms_norm(x.data(), w.data(), ys.data(), n, 1e-5f);
    ref_->rms_norm(x.data(), w.data(), yr.data(), n, 1e-5f);
    // The sum of squares carries up to n roundings of relative eps: scale error <= (n/2 + 4) eps.
    for (int64_t i = 0; i < n; ++i)
      ASSERT_NEAR(ys[i], yr[i], (0.5 * static_cast<double>(n) + 4) * FLT_EPSILON * std::fabs(yr[i]))
          << "n=" << n << " i=" << i << " seed=" << seed;
  }
}

TEST_P(OpsIsa, RopeMatchesReferenceAndLlamaCppAngles) {
  for (int64_t head_dim : {64, 128, 18}) {
    for (int64_t n_rot : {head_dim, head_dim / 2}) {
      if (n_rot % 2) continue;
      for (int64_t pos : {0, 1, 7, 4095}) {
        const uint32_t seed = static_cast<uint32_t>(head_dim * 1000 + n_rot * 10 + pos);
        std::vector<float> c(static_cast<size_t>(n_rot / 2)), s(c.size());
        rope_cos_sin(pos, n_rot, 10000.0f, c.data(), s.data());
        auto xs = randv(seed, 3 * head_dim, -2, 2), xr = xs;
        const auto x0 = xs;
        simd_->rope(xs.data(), 3, head_dim, n_rot, c.data(), s.data());
        ref_->rope(xr.data(), 3, head_dim, n_rot, c.data(), s.data());
        for (size_t i = 0; i < xs.size(); ++i) {
          const size_t d = i % static_cast<size_t>(head_dim);
          const size_t pair = d & ~size_t{1};
          // Two products and one add/sub: 3 eps of the operands' magnitude.
          const double mag = std::fabs(x0[i - d + pair]) + std::fabs(x0[i - d + pair + 1]);
          ASSERT_NEAR(xs[i], xr[i], 3 * FLT_EPSILON * mag) << "head_dim=" << head_dim << " n_rot=" << n_rot
                                                           << " pos=" << pos << " i=" << i << " seed=" << seed;
          if (static_cast<int64_t>(d) >= n_rot) {
            ASSERT_EQ(xs[i], x0[i]) << "pass-through dims must not change";
          }
        }
      }
    }
  }
}

TEST(Rope, AnglesFollowGgmlRecurrence) {
  std::vector<float> c(64), s(64);
  rope_cos_sin(3, 128, 10000.0f, c.data(), s.data());
  EXPECT_FLOAT_EQ(c[0], std::cos(3.0f));
  EXPECT_FLOAT_EQ(s[0], std::sin(3.0f));
  // theta_1 = 3 * 10000^(-2/128)
  EXPECT_NEAR(s[1], std::sin(3.0 * std::pow(10000.0, -2.0 / 128)), 4 * FLT_EPSILON);
}

// Linear scaling and llama3's per-pair factors: ggml's rope_yarn angle without extrapolation,
// freq_scale * (theta_i / factor_i) on the float recurrence theta_i = pos * theta_scale^i, bit for bit;
// neutral settings give the unscaled angles' bits.
TEST(Rope, ScaledAnglesFollowGgml) {
  const int64_t n_rot = 64;
  std::vector<float> factors(n_rot / 2);
  for (size_t i = 0; i < factors.size(); ++i) factors[i] = 1.0f + 0.37f * static_cast<float>(i);
  const std::vector<float> ones(n_rot / 2, 1.0f);
  for (int64_t pos : {0, 1, 5, 1000, 8191}) {
    std::vector<float> c(n_rot / 2), s(c.size()), c1(c.size()), s1(c.size());
    rope_cos_sin(pos, n_rot, 500000.0f, 0.25f, factors.data(), c.data(), s.data());
    const float theta_scale = std::pow(500000.0f, -2.0f / static_cast<float>(n_rot));
    float theta = static_cast<float>(pos);
    for (int64_t i = 0; i < n_rot / 2; ++i, theta *= theta_scale) {
      // volatile: the library's cosf/sinf at run time, as rope_cos_sin calls them, not a folded constant
      const volatile float angle = 0.25f * (theta / factors[i]);
      ASSERT_EQ(c[i], std::cos(static_cast<float>(angle))) << "pos=" << pos << " i=" << i;
      ASSERT_EQ(s[i], std::sin(static_cast<float>(angle))) << "pos=" << pos << " i=" << i;
    }
    rope_cos_sin(pos, n_rot, 500000.0f, c.data(), s.data());
    rope_cos_sin(pos, n_rot, 500000.0f, 1.0f, ones.data(), c1.data(), s1.data());
    ASSERT_EQ(0, std::memcmp(c.data(), c1.data(), c.size() * sizeof(float))) << "pos=" << pos;
    ASSERT_EQ(0, std::memcmp(s.data(), s1.data(), s.size() * sizeof(float))) << "pos=" << pos;
  }
}

TEST_P(OpsIsa, Softmax) {
  for (int64_t n : kSizes) {
    const uint32_t seed = static_cast<uint32_t>(200 + n);
    auto xs = randv(seed, n, -30, 10);
    if (n > 4) xs[2] = -INFINITY;  // masked attention position
    auto xr = xs;
    simd_->softmax(xs.data(), n, 1.0f);
    ref_->softmax(xr.data(), n, 1.0f);
    // exp to ~2 ulp, the sum to (sqrt(n) + 8) eps relative, plus values under FLT_MIN that the SIMD exp
    // flushes to zero.
    const double rel = (16 + 2 * std::sqrt(static_cast<double>(n))) * FLT_EPSILON;
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(xs[i], xr[i], rel * xr[i] + FLT_MIN) << "n=" << n << " i=" << i << " seed=" << seed;
      total += xs[i];
    }
    ASSERT_NEAR(total, 1.0, rel * 2) << "n=" << n;
  }
}

// The scale folded into softmax gives the bits of a separate scale pass before an unscaled softmax
// (attention's scores / sqrt(head_dim)), at this level and at the reference.
TEST_P(OpsIsa, SoftmaxScaleIsOneRoundedProduct) {
  for (int64_t n : kSizes)
    for (float scale : {0.125f, 0.0883883476f, 3.0f}) {
      const uint32_t seed = static_cast<uint32_t>(400 + n);
      const auto x = randv(seed, n, -300, 80);
      for (const KernelTable* k : {simd_, ref_}) {
        std::vector<float> fused = x, split(x.size());
        k->softmax(fused.data(), n, scale);
        k->scale(x.data(), scale, split.data(), n);
        k->softmax(split.data(), n, 1.0f);
        ASSERT_EQ(0, std::memcmp(fused.data(), split.data(), fused.size() * sizeof(float)))
            << isa_name(k->isa) << " n=" << n << " scale=" << scale << " seed=" << seed;
      }
    }
}

TEST_P(OpsIsa, SiluMul) {
  for (int64_t n : kSizes) {
    const uint32_t seed = static_cast<uint32_t>(300 + n);
    // |gate| <= 20 keeps exp(-gate) finite in both implementations.
    const auto g = randv(seed, n, -20, 20), u = randv(seed + 1, n, -3, 3);
    std::vector<float> ys(g.size()), yr(g.size());
    simd_->silu_mul(g.data(), u.data(), ys.data(), n);
    ref_->silu_mul(g.data(), u.data(), yr.data(), n);
    // exp (2 ulp) + add + div + mul: 8 eps relative.
    for (int64_t i = 0; i < n; ++i)
      ASSERT_NEAR(ys[i], yr[i], 8 * FLT_EPSILON * std::fabs(yr[i])) << "n=" << n << " i=" << i << " seed=" << seed;
  }
}

// The AVX-512 level's 16-lane silu_mul promises the 256-bit op's bits at every length: the same exp steps
// per lane, and the same 8-wide and scalar tails. Gates reach past -87.3 and 88 so exp's clamps and its
// zero for large negative inputs are crossed too.
TEST(OpsAvx512, SiluMulGivesTheAvx2Bits) {
  const KernelTable* a512 = kernel_table(Isa::avx512);
  const KernelTable* a2 = kernel_table(Isa::avx2);
  if (!a512 || !a2) GTEST_SKIP() << "skipping: this CPU/build lacks AVX-512";
  for (int64_t n : kSizes) {
    for (const int64_t n2 : {n, n + 8, int64_t{1536}}) {
      const uint32_t seed = static_cast<uint32_t>(400 + n2);
      const auto g = randv(seed, n2, -100, 100), u = randv(seed + 1, n2, -3, 3);
      std::vector<float> y512(g.size()), y2(g.size());
      a512->silu_mul(g.data(), u.data(), y512.data(), n2);
      a2->silu_mul(g.data(), u.data(), y2.data(), n2);
      ASSERT_EQ(0, std::memcmp(y512.data(), y2.data(), y2.size() * sizeof(float))) << "n=" << n2;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllLevels, OpsIsa, ::testing::Values(Isa::avx2, Isa::avx512, Isa::neon),
                         [](const auto& p) { return std::string(isa_name(p.param)); });

}  // namespace
}  // namespace qe::kernels
