// The x16 layouts of f16 / bf16 (kernels/interleaved.h): interleave_rows is a lossless rearrangement
// (checked against the documented index formulas), the scalar x16 kernel is within an input-derived
// bound of the exact dot, every SIMD level equals the reference of its contract bit for bit (the exact
// widened contract, or the bf16 dot contract on AVX512_BF16), GEMM equals GEMV, special values
// (NaN, Inf, subnormals) take the same path everywhere, and matmul() routes x16 f16/bf16 weights.
#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "avx512_variants.h"
#include "formats/blocks.h"
#include "kernels/cpu_features.h"
#include "kernels/interleaved.h"
#include "kernels/matmul.h"

namespace qe::kernels {
namespace {

// 300 and 513: two and three of the blocked product's 256-column blocks (x16f_blocked), the last odd.
constexpr int64_t kCols[] = {1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33, 63, 67, 127, 129, 300, 513};
constexpr int64_t kTokens[] = {1, 2, 3, 5, 12, 13, 25, 64};

float widen(GgmlType t, uint16_t v) { return t == GgmlType::F16 ? fp16_to_fp32(v) : bf16_to_fp32(v); }
uint16_t narrow(GgmlType t, float v) { return t == GgmlType::F16 ? fp32_to_fp16(v) : fp32_to_bf16(v); }

struct FWeights {
  GgmlType type;
  int64_t rows, cols;
  std::vector<uint16_t> plain, packed;
  WeightView x16;
};

// N(0, 0.05) weights; `specials` salts in NaN, +-Inf, subnormals and signed zeros.
FWeights make_weights(GgmlType t, int64_t rows, int64_t cols, uint32_t seed, bool specials = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  FWeights w{t, rows, cols, std::vector<uint16_t>(static_cast<size_t>(rows * cols)), {}, {}};
  for (uint16_t& v : w.plain) v = narrow(t, nd(rng));
  if (specials) {
    const uint16_t sub = t == GgmlType::F16 ? 0x0003 : 0x0005, inf = t == GgmlType::F16 ? 0x7c00 : 0x7f80,
                   nan = t == GgmlType::F16 ? 0x7e00 : 0x7fc0;
    const uint16_t s[] = {sub, static_cast<uint16_t>(sub | 0x8000), inf, static_cast<uint16_t>(inf | 0x8000), nan,
                          0x8000, 0x0000};
    std::uniform_int_distribution<size_t> at(0, w.plain.size() - 1);
    for (uint16_t v : s) w.plain[at(rng)] = v;
    for (int i = 0; i < 8; ++i) w.plain[at(rng)] = s[i % 2];  // more subnormals
  }
  w.packed.resize(w.plain.size());
  const WeightView plain{t, rows, cols, w.plain.data(), cols * 2};
  auto x = interleave_rows(plain, std::span<uint8_t>(reinterpret_cast<uint8_t*>(w.packed.data()), w.packed.size() * 2), 2);
  EXPECT_TRUE(x.ok());
  w.x16 = *x;
  return w;
}

std::vector<float> make_acts(int64_t nc, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> a(static_cast<size_t>(nc * cols));
  for (float& v : a) v = nd(rng);
  return a;
}

bool same_bits(float a, float b) {
  return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b) || (std::isnan(a) && std::isnan(b));
}

#if defined(__x86_64__)
// On a CPU with AVX512_BF16, the AVX-512 level with the other bf16 choice than this CPU's (bf16_dot_pays):
// vdpbf16ps where the level keeps f32 FMAs, or the reverse, so both are tested wherever they can run.
const KernelTable* avx512_other_bf16() {
  if (!cpu_features().avx512bf16) return nullptr;
  return avx512_x16_variant([](Avx512X16Choices& c) { c.bf16_dot = !c.bf16_dot; });
}
// The AVX-512 level with the other GEMM than this CPU's (widen_once_pays): the blocked product where
// each panel widens its own weights, or the reverse.
const KernelTable* avx512_other_widening() {
  return avx512_x16_variant([](Avx512X16Choices& c) { c.widen_once = !c.widen_once; });
}
// The same for the AVX2 level.
const KernelTable* avx2_other_widening() {
  const KernelTable* k = kernel_table(Isa::avx2);
  if (!k) return nullptr;
  static const KernelTable t = [&] {
    KernelTable c = *k;
    avx2::fill_x16_float(c, !widen_once_pays(cpu_features()));
    return c;
  }();
  return &t;
}
#else
const KernelTable* avx512_other_bf16() {
  return nullptr;
}
const KernelTable* avx512_other_widening() {
  return nullptr;
}
const KernelTable* avx2_other_widening() {
  return nullptr;
}
#endif

std::vector<const KernelTable*> levels() {
  std::vector<const KernelTable*> out;
  for (Isa i : {Isa::ref, Isa::avx2, Isa::avx512, Isa::neon})
    if (const KernelTable* k = kernel_table(i)) out.push_back(k);
  if (const KernelTable* k = avx512_other_bf16()) out.push_back(k);
  if (const KernelTable* k = avx512_other_widening()) out.push_back(k);
  if (const KernelTable* k = avx2_other_widening()) out.push_back(k);
  return out;
}

// The reference of the contract a level's bf16 kernel computes.
MatmulX16Fn bf16_reference(const KernelTable& k) {
  return k.bf16_dot ? x16_bf16_dot_ref : kernel_table(Isa::ref)->x16_bf16_f32;
}

std::vector<float> run(MatmulX16Fn fn, const FWeights& w, const std::vector<float>& a, int64_t nc) {
  std::vector<float> y(static_cast<size_t>(nc * w.rows), -1.0f);
  fn(w.cols, w.x16.data, w.rows / kInterleave, a.data(), w.cols * 4, nc, y.data(), w.rows);
  return y;
}

TEST(X16Float, LayoutFollowsTheDocumentedIndices) {
  for (GgmlType t : {GgmlType::F16, GgmlType::BF16})
    for (int64_t cols : {1, 2, 7, 8, 33}) {
      const FWeights w = make_weights(t, 32, cols, 5);
      for (int64_t g = 0; g < 2; ++g)
        for (int64_t r = 0; r < 16; ++r)
          for (int64_t k = 0; k < cols; ++k) {
            const int64_t i = t == GgmlType::F16 || k >= (cols & ~int64_t{1}) ? 16 * k + r : 32 * (k / 2) + 2 * r + k % 2;
            ASSERT_EQ(w.packed[static_cast<size_t>(g * 16 * cols + i)], w.plain[static_cast<size_t>((16 * g + r) * cols + k)])
                << ggml_type_name(t) << " cols=" << cols << " g=" << g << " r=" << r << " k=" << k;
          }
    }
}

TEST(X16Float, CanInterleaveOnlyWhole16RowGroups) {
  std::vector<uint16_t> buf(48 * 8);
  for (int64_t rows : {1, 15, 17, 40}) EXPECT_FALSE(can_interleave(WeightView{GgmlType::F16, rows, 8, buf.data(), 16}));
  EXPECT_TRUE(can_interleave(WeightView{GgmlType::F16, 48, 8, buf.data(), 16}));
  EXPECT_TRUE(can_interleave(WeightView{GgmlType::BF16, 16, 3, buf.data(), 6}));
  EXPECT_FALSE(can_interleave(WeightView{GgmlType::F16, 16, 8, buf.data(), 32}));  // not dense
}

TEST(X16Float, F16AsBf16RoundsEveryValue) {
  const FWeights w = make_weights(GgmlType::F16, 16, 9, 11, /*specials=*/true);
  std::vector<uint16_t> out(w.plain.size());
  const WeightView plain{GgmlType::F16, 16, 9, w.plain.data(), 18};
  auto x = interleave_rows(plain, std::span<uint8_t>(reinterpret_cast<uint8_t*>(out.data()), out.size() * 2), 1, true);
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x->type, GgmlType::BF16);
  for (int64_t r = 0; r < 16; ++r)
    for (int64_t k = 0; k < 9; ++k) {
      const int64_t i = k < 8 ? 32 * (k / 2) + 2 * r + k % 2 : 16 * k + r;
      EXPECT_EQ(out[static_cast<size_t>(i)], fp32_to_bf16(fp16_to_fp32(w.plain[static_cast<size_t>(r * 9 + k)])));
    }
}

// The reference against the exact dot (doubles): the two-part f32 sum errs by at most about
// (n / 2 + 1) * eps * sum |w a| (each partial sum's roundings, then the final add).
TEST(X16Float, ReferenceIsCloseToTheExactDot) {
  const KernelTable& ref = *kernel_table(Isa::ref);
  for (GgmlType t : {GgmlType::F16, GgmlType::BF16})
    for (int64_t cols : kCols) {
      const uint32_t seed = static_cast<uint32_t>(cols * 7 + static_cast<int>(t));
      SCOPED_TRACE(::testing::Message() << ggml_type_name(t) << " cols=" << cols << " seed=" << seed);
      const FWeights w = make_weights(t, 32, cols, seed);
      const auto a = make_acts(3, cols, seed + 1);
      const auto y = run(t == GgmlType::F16 ? ref.x16_f16_f32 : ref.x16_bf16_f32, w, a, 3);
      const auto yd = run(x16_bf16_dot_ref, w, a, 3);
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t r = 0; r < 32; ++r) {
          double exact = 0, mag = 0;
          for (int64_t k = 0; k < cols; ++k) {
            const double p = double(widen(t, w.plain[static_cast<size_t>(r * cols + k)])) * a[static_cast<size_t>(c * cols + k)];
            exact += p;
            mag += std::fabs(p);
          }
          const double v = y[static_cast<size_t>(c * 32 + r)];
          EXPECT_LE(std::fabs(v - exact), (static_cast<double>(cols) / 2 + 2) * FLT_EPSILON * mag) << "r=" << r << " c=" << c;
          if (t == GgmlType::BF16) {
            // The bf16 dot contract also rounds each activation to bf16: relative 2^-9 per product.
            const double vd = yd[static_cast<size_t>(c * 32 + r)];
            EXPECT_LE(std::fabs(vd - exact), (std::ldexp(1.0, -8) + (static_cast<double>(cols) + 4) * FLT_EPSILON) * mag)
                << "dot r=" << r << " c=" << c;
          }
        }
    }
}

// Every level against its contract's reference, bit for bit; and GEMM (nc tokens at once) against
// GEMV (one token per call) at the level itself.
void check_levels(bool specials) {
  for (const KernelTable* k : levels())
    for (GgmlType t : {GgmlType::F16, GgmlType::BF16})
      for (int64_t cols : kCols)
        for (int64_t rows : {16, 48, 144}) {  // 144: 9 groups, one more than a blocked batch holds
          if (rows == 144 && cols < 256) continue;
          const uint32_t seed = static_cast<uint32_t>(cols * 131 + rows + static_cast<int>(t) + (specials ? 7 : 0));
          SCOPED_TRACE(::testing::Message() << isa_name(k->isa) << " " << ggml_type_name(t) << " rows=" << rows
                                            << " cols=" << cols << " seed=" << seed);
          const FWeights w = make_weights(t, rows, cols, seed, specials);
          const MatmulX16Fn fn = t == GgmlType::F16 ? k->x16_f16_f32 : k->x16_bf16_f32;
          const MatmulX16Fn want = t == GgmlType::F16 ? kernel_table(Isa::ref)->x16_f16_f32 : bf16_reference(*k);
          ASSERT_NE(fn, nullptr);
          for (int64_t nc : kTokens) {
            if ((rows == 48 && nc > 5) || (rows == 144 && nc > 13))
              continue;  // keeps the scalar reference fast
            auto a = make_acts(nc, cols, seed + static_cast<uint32_t>(nc));
            if (specials && cols > 2) a[1] = 1e-40f, a[static_cast<size_t>(cols - 1)] = -0.0f;  // subnormal, -0
            const auto y = run(fn, w, a, nc), y_ref = run(want, w, a, nc);
            for (size_t i = 0; i < y.size(); ++i)
              ASSERT_TRUE(same_bits(y[i], y_ref[i])) << "nc=" << nc << " i=" << i << ": " << y[i] << " vs " << y_ref[i];
            // The split: activations packed once (into exactly the nc * cols words it may use), then run.
            if (const X16FloatSplit split = t == GgmlType::F16 ? k->x16_f16_split : k->x16_bf16_split) {
              std::vector<float> panels(static_cast<size_t>(nc * cols));
              split.pack(cols, a.data(), cols * 4, nc, panels.data());
              std::vector<float> ys(y.size(), -1.0f);
              split.run(cols, w.x16.data, rows / kInterleave, panels.data(), nc, ys.data(), rows);
              for (size_t i = 0; i < y.size(); ++i)
                ASSERT_TRUE(same_bits(ys[i], y[i]))
                    << "split, nc=" << nc << " i=" << i << ": " << ys[i] << " vs " << y[i];
            }
            for (int64_t c = 0; c < nc; ++c) {
              const std::vector<float> one(a.begin() + c * cols, a.begin() + (c + 1) * cols);
              const auto y1 = run(fn, w, one, 1);
              for (int64_t r = 0; r < rows; ++r)
                ASSERT_TRUE(same_bits(y1[static_cast<size_t>(r)], y[static_cast<size_t>(c * rows + r)]))
                    << "GEMV != GEMM at nc=" << nc << " c=" << c << " r=" << r;
            }
          }
        }
}

TEST(X16Float, EveryLevelMatchesItsReferenceAndGemmEqualsGemv) { check_levels(false); }
TEST(X16Float, SpecialValuesTakeTheSamePathEverywhere) { check_levels(true); }

// On AVX512_BF16 the emulation holds vdpbf16ps's flushes: a subnormal weight reads as zero, where the
// exact contract keeps it.
TEST(X16Float, Bf16DotFlushesSubnormalWeights) {
  std::vector<uint16_t> wv(32, 0);
  wv[0] = 0x0040;  // row 0, column 0: a bf16 subnormal (2^-127)
  float a[2] = {1.0f, 0.0f}, y[16];
  x16_bf16_dot_ref(2, wv.data(), 1, a, 8, 1, y, 16);
  EXPECT_EQ(y[0], 0.0f);
  kernel_table(Isa::ref)->x16_bf16_f32(2, wv.data(), 1, a, 8, 1, y, 16);
  EXPECT_EQ(y[0], std::ldexp(1.0f, -127));
}

// matmul() on x16 f16 / bf16 weights (which packs the activations once per call for all threads where
// the level splits its kernel) gives the one-step kernel's bits: one token chunk and several (70
// tokens), 1 and 2 threads, and an f16 and a bf16 weight in one group (two packed regions).
TEST(X16Float, MatmulRoutesX16FloatWeights) {
  for (const KernelTable* k : levels())
    for (int64_t nc : {7, 70})
      for (int threads : {1, 2}) {
        SCOPED_TRACE(::testing::Message() << isa_name(k->isa) << " nc=" << nc << " threads=" << threads);
        const FWeights wf = make_weights(GgmlType::F16, 64, 40, 3);
        const FWeights wb = make_weights(GgmlType::BF16, 48, 40, 5);
        const auto a = make_acts(nc, 40, 4);
        ActivationBuffer ab;
        ASSERT_TRUE(ab.prepare(GgmlType::F32, a.data(), nc, 40, 40, threads, *k).ok());
        std::vector<float> y(static_cast<size_t>(nc * 64));
        ASSERT_TRUE(matmul(wf.x16, ab, y.data(), threads, *k).ok());
        const auto want_f = run(x16_kernel(*k, GgmlType::F16), wf, a, nc);
        for (size_t i = 0; i < y.size(); ++i) ASSERT_TRUE(same_bits(y[i], want_f[i])) << "f16 alone " << i;

        std::vector<float> yf(static_cast<size_t>(nc * 64)), yb(static_cast<size_t>(nc * 48));
        const MatmulJob jobs[] = {{wf.x16, yf.data(), 64}, {wb.x16, yb.data(), 48}};
        ASSERT_TRUE(matmul_group(jobs, ab, threads, *k).ok());
        const auto want_b = run(x16_kernel(*k, GgmlType::BF16), wb, a, nc);
        for (size_t i = 0; i < yf.size(); ++i) ASSERT_TRUE(same_bits(yf[i], want_f[i])) << "f16, group " << i;
        for (size_t i = 0; i < yb.size(); ++i) ASSERT_TRUE(same_bits(yb[i], want_b[i])) << "bf16, group " << i;
      }
}

}  // namespace
}  // namespace qe::kernels
