// llama.cpp's numerics (the Numerics::llamacpp tables, batch and single-token) at every SIMD level this
// CPU runs, bit for bit against the scalar reference: activation quantizers, the q4_0 / q4_1 / q8_0 /
// f16 tiles and dots (tail sizes, padded lengths), softmax, SwiGLU and RoPE, on fixed seeds with inputs
// that reach the exponential's scaled and saturated branches and the quantizers' rounding ties; and
// which entries each table holds. The reference's agreement with llama.cpp itself is tested end to end
// (tests/python/test_llamacpp_parity.py: identical logits).
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "formats/blocks.h"
#include "kernels/kernel_table.h"

namespace qe::kernels {
namespace {

constexpr int64_t kSizes[] = {1,  2,  3,  5,  7,  8,   9,   15,  16,   17,  31,
                              32, 33, 63, 64, 65, 127, 129, 255, 1023, 4096};
constexpr int64_t kRowLengths[] = {32, 64, 96, 576, 1536};

std::vector<float> randv(uint32_t seed, int64_t n, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

// Quantized weight rows of any block type: random quant bytes, scales (and q4_1 minimums) sane f16s.
template <typename Block>
std::vector<Block> weight_rows(uint32_t seed, int64_t rows, int64_t n) {
  std::mt19937 rng(seed);
  std::vector<Block> w(static_cast<size_t>(rows * n / 32));
  for (Block& b : w) {
    for (auto& q : b.qs) q = static_cast<std::remove_reference_t<decltype(q)>>(rng());
    b.d = fp32_to_fp16(
        std::ldexp(static_cast<float>(rng() % 1000 + 1) / 1000.0f, -static_cast<int>(rng() % 10)));
    if constexpr (requires { b.m; })
      b.m = fp32_to_fp16((static_cast<float>(rng() % 2001) - 1000.0f) / 4000.0f);
  }
  return w;
}

class LlamacppIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!kernel_table(GetParam()))
      GTEST_SKIP() << "skipping " << isa_name(GetParam()) << ": this CPU/build lacks it";
    for (bool single : {false, true}) {
      simd_[single] = kernel_table(GetParam(), Numerics::llamacpp, single ? 1 : 64);
      ref_[single] = kernel_table(Isa::ref, Numerics::llamacpp, single ? 1 : 64);
      ASSERT_NE(simd_[single], nullptr);
      ASSERT_NE(ref_[single], nullptr);
    }
  }
  // The batch table (tinyBLAS's f16 paths) and the single-token one (ggml_vec_dot_f16).
  const KernelTable& simd(bool single = false) const { return *simd_[single]; }
  const KernelTable& ref(bool single = false) const { return *ref_[single]; }
  const KernelTable* simd_[2] = {};
  const KernelTable* ref_[2] = {};
};

TEST_P(LlamacppIsa, ActivationQuantizersAreByteIdentical) {
  for (int64_t n : {32, 64, 576, 1536, 4096})
    for (uint32_t seed = 1; seed <= 4; ++seed) {
      std::vector<float> x = randv(seed, n, -3.0f, 3.0f);
      // a zero block, and a block of exact ties: amax 127 makes id 1, so k + 0.5 rounds to even
      if (n >= 64)
        for (int i = 0; i < 32; ++i) {
          x[static_cast<size_t>(i)] = 0.0f;
          x[static_cast<size_t>(32 + i)] = i == 0 ? 127.0f : static_cast<float>(i % 7) - 3.5f;
        }
      for (bool q8_1 : {false, true}) {
        const size_t bytes = static_cast<size_t>(n / 32) * (q8_1 ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0));
        std::vector<uint8_t> a(bytes), b(bytes);
        (q8_1 ? ref().quantize_q8_1 : ref().quantize_q8_0)(x.data(), a.data(), n);
        (q8_1 ? simd().quantize_q8_1 : simd().quantize_q8_0)(x.data(), b.data(), n);
        ASSERT_EQ(a, b) << (q8_1 ? "q8_1" : "q8_0") << " n=" << n << " seed=" << seed;
      }
    }
}

template <typename W, typename A>
void check_tile(MatmulTileFn ref_fn, MatmulTileFn simd_fn, QuantizeRowFn quantize, const char* what) {
  for (int64_t n : kRowLengths)
    for (int64_t nr : {1, 3, 4, 5, 9})
      for (int64_t nc : {1, 2, 3}) {
        const uint32_t seed = static_cast<uint32_t>(n * 131 + nr * 7 + nc);
        const std::vector<W> w = weight_rows<W>(seed, nr, n);
        const std::vector<float> x = randv(seed + 1, nc * n, -2.0f, 2.0f);
        std::vector<A> a(static_cast<size_t>(nc * n / 32));
        for (int64_t c = 0; c < nc; ++c) quantize(x.data() + c * n, a.data() + c * n / 32, n);
        const int64_t w_stride = n / 32 * static_cast<int64_t>(sizeof(W));
        const int64_t a_stride = n / 32 * static_cast<int64_t>(sizeof(A));
        std::vector<float> yr(static_cast<size_t>(nc * nr), -1.0f), ys(yr.size(), -2.0f);
        ref_fn(n, w.data(), w_stride, nr, a.data(), a_stride, nc, yr.data(), nr);
        simd_fn(n, w.data(), w_stride, nr, a.data(), a_stride, nc, ys.data(), nr);
        ASSERT_EQ(0, std::memcmp(yr.data(), ys.data(), yr.size() * sizeof(float)))
            << what << " n=" << n << " nr=" << nr << " nc=" << nc << ": " << yr[0] << " vs " << ys[0];
      }
}

TEST_P(LlamacppIsa, QuantizedTilesAreBitIdentical) {
  for (bool single : {false, true}) {
    SCOPED_TRACE(single ? "single-token table" : "batch table");
    const KernelTable &r = ref(single), &v = simd(single);
    check_tile<BlockQ4_0, BlockQ8_0>(r.tile_q4_0_q8_0, v.tile_q4_0_q8_0, r.quantize_q8_0, "q4_0");
    check_tile<BlockQ4_1, BlockQ8_1>(r.tile_q4_1_q8_1, v.tile_q4_1_q8_1, r.quantize_q8_1, "q4_1");
    check_tile<BlockQ8_0, BlockQ8_0>(r.tile_q8_0_q8_0, v.tile_q8_0_q8_0, r.quantize_q8_0, "q8_0");
  }
}

TEST_P(LlamacppIsa, F16DotsAndTilesAreBitIdentical) {
  for (int64_t n : kSizes) {
    std::vector<uint16_t> a(static_cast<size_t>(n)), b(a.size());
    const std::vector<float> fa = randv(static_cast<uint32_t>(n), n, -4.0f, 4.0f);
    const std::vector<float> fb = randv(static_cast<uint32_t>(n) + 9, n, 0.0f, 1.0f);
    for (int64_t i = 0; i < n; ++i) a[i] = fp32_to_fp16(fa[i]), b[i] = fp32_to_fp16(fb[i]);
    // n real elements; the KV cache's padding to 32 (the single-token dot's lanes depend on it)
    for (int64_t n_pad : {n, (n + 31) / 32 * 32}) {
      // tinyBLAS<8> (the batch table's dot), ggml_vec_dot_f16 (the single-token table's, and both
      // tables' fallback)
      const float r1 = ref().dot_f16(n, n_pad, a.data(), b.data());
      const float s1 = simd().dot_f16(n, n_pad, a.data(), b.data());
      const float r2 = ref(true).dot_f16(n, n_pad, a.data(), b.data());
      const float s2 = simd(true).dot_f16(n, n_pad, a.data(), b.data());
      const float s3 = simd().dot_f16_gemv(n, n_pad, a.data(), b.data());
      ASSERT_EQ(std::memcmp(&r2, &s3, 4), 0)
          << "gemv n=" << n << " pad=" << n_pad << ": " << r2 << " vs " << s3;
      ASSERT_EQ(std::memcmp(&r1, &s1, 4), 0)
          << "batch n=" << n << " pad=" << n_pad << ": " << r1 << " vs " << s1;
      ASSERT_EQ(std::memcmp(&r2, &s2, 4), 0)
          << "single n=" << n << " pad=" << n_pad << ": " << r2 << " vs " << s2;
      double exact = 0;
      for (int64_t i = 0; i < n; ++i) exact += static_cast<double>(fp16_to_fp32(a[i])) * fp16_to_fp32(b[i]);
      ASSERT_NEAR(r1, exact, 1e-5 * static_cast<double>(n));
      ASSERT_NEAR(r2, exact, 1e-5 * static_cast<double>(n));
    }
  }
  for (int64_t n : {8, 64, 72, 100}) {  // f16 weights against f32 activations (rounded to f16 first)
    const int64_t nr = 5, nc = 3;
    std::vector<uint16_t> w(static_cast<size_t>(nr * n));
    const std::vector<float> fw = randv(3, nr * n, -1.0f, 1.0f), x = randv(4, nc * n, -2.0f, 2.0f);
    for (size_t i = 0; i < w.size(); ++i) w[i] = fp32_to_fp16(fw[i]);
    for (bool single : {false, true}) {
      std::vector<float> yr(static_cast<size_t>(nr * nc)), ys(yr.size());
      ref(single).tile_f16_f32(n, w.data(), n * 2, nr, x.data(), n * 4, nc, yr.data(), nr);
      simd(single).tile_f16_f32(n, w.data(), n * 2, nr, x.data(), n * 4, nc, ys.data(), nr);
      ASSERT_EQ(0, std::memcmp(yr.data(), ys.data(), yr.size() * 4))
          << "f16 tile n=" << n << " single=" << single;
      // and the tile is its table's dot on the activations rounded to f16, as ggml converts them
      std::vector<uint16_t> x16(static_cast<size_t>(n));
      for (int64_t c = 0; c < nc; ++c) {
        for (int64_t i = 0; i < n; ++i) x16[i] = fp32_to_fp16(x[c * n + i]);
        for (int64_t r = 0; r < nr; ++r) {
          const float want = simd(single).dot_f16(n, n, w.data() + r * n, x16.data());
          ASSERT_EQ(0, std::memcmp(&want, &ys[c * nr + r], 4))
              << "f16 tile vs dot n=" << n << " single=" << single << " r=" << r << " c=" << c;
        }
      }
    }
  }
}

TEST_P(LlamacppIsa, SoftmaxSiluRopeAreBitIdentical) {
  for (int64_t n : kSizes)
    for (uint32_t seed = 1; seed <= 3; ++seed) {
      // scores up to ~1600 apart: exp arguments below -126 and -192 after the scale (ggml_v_expf's branches)
      std::vector<float> xr = randv(seed, n, -1600.0f, 40.0f), xs = xr;
      ref().softmax(xr.data(), n, 0.125f);
      simd().softmax(xs.data(), n, 0.125f);
      ASSERT_EQ(0, std::memcmp(xr.data(), xs.data(), static_cast<size_t>(n) * 4)) << "softmax n=" << n;
      double sum = 0;
      for (float p : xr) sum += p;
      ASSERT_NEAR(sum, 1.0, 1e-5);

      const std::vector<float> g = randv(seed + 10, n, -120.0f, 120.0f), u = randv(seed + 20, n, -2.0f, 2.0f);
      std::vector<float> yr(static_cast<size_t>(n)), ys(yr.size());
      ref().silu_mul(g.data(), u.data(), yr.data(), n);
      simd().silu_mul(g.data(), u.data(), ys.data(), n);
      ASSERT_EQ(0, std::memcmp(yr.data(), ys.data(), yr.size() * 4)) << "silu_mul n=" << n;
      for (int64_t i = 0; i < n; ++i) {  // and it is SiLU: within a few ulps of the exact value
        const double want = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
        ASSERT_NEAR(yr[i], want, 4 * FLT_EPSILON * std::fabs(want) + 1e-30) << "g=" << g[i];
      }
    }
  const int64_t heads = 3, head_dim = 64, n_rot = 64;
  std::vector<float> cs(n_rot / 2), sn(n_rot / 2);
  rope_cos_sin(37, n_rot, 10000.0f, cs.data(), sn.data());
  std::vector<float> xr = randv(5, heads * head_dim, -3.0f, 3.0f), xs = xr;
  ref().rope(xr.data(), heads, head_dim, n_rot, cs.data(), sn.data());
  simd().rope(xs.data(), heads, head_dim, n_rot, cs.data(), sn.data());
  ASSERT_EQ(0, std::memcmp(xr.data(), xs.data(), xr.size() * 4));
}

// Each table holds llama.cpp's kernels for what its numerics cover and nothing else (the matmul drivers
// then report "no kernel"); the two tables differ only in their f16 paths.
TEST_P(LlamacppIsa, TablesHoldTheLlamacppEntries) {
  const KernelTable &batch = simd(), &single = simd(true), &fast = *kernel_table(GetParam());
  for (const KernelTable* t : {&batch, &single}) {
    EXPECT_EQ(t->isa, GetParam());
    EXPECT_EQ(t->numerics, Numerics::llamacpp);
    for (const void* f :
         {(const void*)t->quantize_q8_0, (const void*)t->quantize_q8_1, (const void*)t->tile_q4_0_q8_0,
          (const void*)t->tile_q4_1_q8_1, (const void*)t->tile_q8_0_q8_0, (const void*)t->tile_f16_f32,
          (const void*)t->dot_f16, (const void*)t->dot_f16_gemv, (const void*)t->rms_norm,
          (const void*)t->rope, (const void*)t->softmax, (const void*)t->silu_mul, (const void*)t->add,
          (const void*)t->scale, (const void*)t->to_f32_f16, (const void*)t->quantize_row_q8_0,
          (const void*)t->error_stats})
      EXPECT_NE(f, nullptr);
    for (const void* f :
         {(const void*)t->quantize_q8_K, (const void*)t->tile_q6_K_q8_K, (const void*)t->tile_bf16_f32,
          (const void*)t->tile_f32_f32, (const void*)t->x16_q4_0_q8_0, (const void*)t->x16_q4_1_q8_1,
          (const void*)t->x16_q8_0_q8_0})
      EXPECT_EQ(f, nullptr);  // not covered
    // llama.cpp's rms_norm is the reference order; its own kernels replace the fast ones
    EXPECT_EQ(t->rms_norm, kernel_table(Isa::ref)->rms_norm);
    EXPECT_NE(t->quantize_q8_0, fast.quantize_q8_0);
    EXPECT_NE(t->softmax, fast.softmax);
    EXPECT_EQ(t->add, fast.add);  // exact in both numerics
  }
  EXPECT_EQ(batch.quantize_q8_1, single.quantize_q8_1);
  EXPECT_EQ(batch.tile_q4_1_q8_1, single.tile_q4_1_q8_1);
  EXPECT_EQ(batch.softmax, single.softmax);
  EXPECT_NE(batch.tile_f16_f32, single.tile_f16_f32);
  EXPECT_NE(batch.dot_f16, single.dot_f16);
  EXPECT_EQ(single.dot_f16, single.dot_f16_gemv);
  EXPECT_EQ(batch.dot_f16_gemv, single.dot_f16_gemv);
  // x86 SIMD levels run llama.cpp's AVX2 code; others the scalar reference
  if (GetParam() == Isa::avx2 || GetParam() == Isa::avx512) {
    EXPECT_NE(batch.tile_q8_0_q8_0, ref().tile_q8_0_q8_0);
    EXPECT_NE(batch.dot_f16, ref().dot_f16);
  }
  // every batch size but one takes the batch table; the fast numerics have one table
  EXPECT_EQ(kernel_table(GetParam(), Numerics::llamacpp, 2), &batch);
  EXPECT_EQ(kernel_table(GetParam(), Numerics::fast, 1), &fast);
  EXPECT_EQ(kernel_table(GetParam(), Numerics::fast, 64), &fast);
}

INSTANTIATE_TEST_SUITE_P(AllLevels, LlamacppIsa,
                         ::testing::Values(Isa::ref, Isa::avx2, Isa::avx512, Isa::neon),
                         [](const auto& p) { return std::string(isa_name(p.param)); });

}  // namespace
}  // namespace qe::kernels
