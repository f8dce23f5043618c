// llama.cpp's numerics (the Numerics::llamacpp tables, batch and single-token) at every SIMD level this
// CPU runs, bit for bit against the scalar reference: activation quantizers, the q4_0 / q4_1 / q8_0 /
// q5_0 / q5_1 / iq4_nl / q2_K..q6_K / iq4_xs / f16 tiles and dots (tail sizes, padded lengths), softmax,
// SwiGLU and RoPE, on fixed seeds with inputs
// that reach the exponential's scaled and saturated branches and the quantizers' rounding ties; and
// which entries each table holds. The reference's agreement with llama.cpp itself is tested end to end
// (tests/python/test_llamacpp_parity.py: identical logits).
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <type_traits>
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

// Any block type with every byte random, then its f16 scale fields (d, and q4_1/q5_1's m or the
// k-quants' dmin) set to sane values: quants, high bits and packed sub-block scales cover their ranges.
template <typename Block, int kElems>
std::vector<Block> random_blocks(uint32_t seed, int64_t rows, int64_t n) {
  std::mt19937 rng(seed);
  std::vector<Block> w(static_cast<size_t>(rows * n / kElems));
  for (Block& b : w) {
    auto* raw = reinterpret_cast<uint8_t*>(&b);
    for (size_t i = 0; i < sizeof(Block); ++i) raw[i] = static_cast<uint8_t>(rng());
    b.d = fp32_to_fp16(std::ldexp(static_cast<float>(rng() % 1000 + 1) / 1000.0f,
                                  -static_cast<int>(rng() % 10) - (kElems > 32 ? 6 : 0)));
    if constexpr (requires { b.m; })
      b.m = fp32_to_fp16((static_cast<float>(rng() % 2001) - 1000.0f) / 4000.0f);
    if constexpr (requires { b.dmin; })
      b.dmin = fp32_to_fp16(
          std::ldexp(static_cast<float>(rng() % 1000) / 1000.0f, -static_cast<int>(rng() % 8) - 6));
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

template <typename W, typename A, int kElems = 32>
void check_tile(MatmulTileFn ref_fn, MatmulTileFn simd_fn, QuantizeRowFn quantize, const char* what) {
  ASSERT_NE(ref_fn, nullptr) << what;
  ASSERT_NE(simd_fn, nullptr) << what;
  constexpr int64_t kKRowLengths[] = {256, 512, 768, 1536};
  const std::span<const int64_t> lengths =
      kElems == 32 ? std::span<const int64_t>(kRowLengths) : std::span<const int64_t>(kKRowLengths);
  for (int64_t n : lengths)
    for (int64_t nr : {1, 3, 4, 5, 9})
      for (int64_t nc : {1, 2, 3, 4, 5, 9}) {
        const uint32_t seed = static_cast<uint32_t>(n * 131 + nr * 7 + nc);
        std::vector<W> w;
        if constexpr (std::is_same_v<W, BlockQ4_0> || std::is_same_v<W, BlockQ4_1> ||
                      std::is_same_v<W, BlockQ8_0>)
          w = weight_rows<W>(seed, nr, n);
        else
          w = random_blocks<W, kElems>(seed, nr, n);
        const std::vector<float> x = randv(seed + 1, nc * n, -2.0f, 2.0f);
        std::vector<A> a(static_cast<size_t>(nc * n / kElems));
        for (int64_t c = 0; c < nc; ++c) quantize(x.data() + c * n, a.data() + c * n / kElems, n);
        const int64_t w_stride = n / kElems * static_cast<int64_t>(sizeof(W));
        const int64_t a_stride = n / kElems * static_cast<int64_t>(sizeof(A));
        std::vector<float> yr(static_cast<size_t>(nc * nr), -1.0f), ys(yr.size(), -2.0f);
        ref_fn(n, w.data(), w_stride, nr, a.data(), a_stride, nc, yr.data(), nr);
        simd_fn(n, w.data(), w_stride, nr, a.data(), a_stride, nc, ys.data(), nr);
        ASSERT_EQ(0, std::memcmp(yr.data(), ys.data(), yr.size() * sizeof(float)))
            << what << " n=" << n << " nr=" << nr << " nc=" << nc << " seed=" << seed << ": " << yr[0]
            << " vs " << ys[0];
        for (float v : yr) ASSERT_TRUE(std::isfinite(v)) << what << " n=" << n << " seed=" << seed;
      }
}

TEST_P(LlamacppIsa, QuantizedTilesAreBitIdentical) {
  for (bool single : {false, true}) {
    SCOPED_TRACE(single ? "single-token table" : "batch table");
    const KernelTable &r = ref(single), &v = simd(single);
    check_tile<BlockQ4_0, BlockQ8_0>(r.tile_q4_0_q8_0, v.tile_q4_0_q8_0, r.quantize_q8_0, "q4_0");
    check_tile<BlockQ4_1, BlockQ8_1>(r.tile_q4_1_q8_1, v.tile_q4_1_q8_1, r.quantize_q8_1, "q4_1");
    check_tile<BlockQ8_0, BlockQ8_0>(r.tile_q8_0_q8_0, v.tile_q8_0_q8_0, r.quantize_q8_0, "q8_0");
    check_tile<BlockQ5_0, BlockQ8_0>(r.tile_q5_0_q8_0, v.tile_q5_0_q8_0, r.quantize_q8_0, "q5_0");
    check_tile<BlockQ5_1, BlockQ8_1>(r.tile_q5_1_q8_1, v.tile_q5_1_q8_1, r.quantize_q8_1, "q5_1");
    check_tile<BlockIQ4_NL, BlockQ8_0>(r.tile_iq4_nl_q8_0, v.tile_iq4_nl_q8_0, r.quantize_q8_0, "iq4_nl");
    check_tile<BlockQ4_K, BlockQ8_K, QK_K>(r.tile_q4_K_q8_K, v.tile_q4_K_q8_K, r.quantize_q8_K, "q4_K");
    check_tile<BlockQ5_K, BlockQ8_K, QK_K>(r.tile_q5_K_q8_K, v.tile_q5_K_q8_K, r.quantize_q8_K, "q5_K");
    check_tile<BlockQ6_K, BlockQ8_K, QK_K>(r.tile_q6_K_q8_K, v.tile_q6_K_q8_K, r.quantize_q8_K, "q6_K");
    check_tile<BlockQ3_K, BlockQ8_K, QK_K>(r.tile_q3_K_q8_K, v.tile_q3_K_q8_K, r.quantize_q8_K, "q3_K");
    check_tile<BlockQ2_K, BlockQ8_K, QK_K>(r.tile_q2_K_q8_K, v.tile_q2_K_q8_K, r.quantize_q8_K, "q2_K");
    check_tile<BlockIQ4_XS, BlockQ8_K, QK_K>(r.tile_iq4_xs_q8_K, v.tile_iq4_xs_q8_K, r.quantize_q8_K,
                                             "iq4_xs");
  }
}

// q8_K activations are ggml's quantize_row_q8_K (its x86 build calls the reference) at every level.
TEST_P(LlamacppIsa, Q8KQuantizerIsGgmlReference) {
  for (int64_t n : {256, 512, 1536})
    for (uint32_t seed = 1; seed <= 3; ++seed) {
      std::vector<float> x = randv(seed, n, -3.0f, 3.0f);
      if (n >= 512) std::fill(x.begin(), x.begin() + 256, 0.0f);  // an all-zero super-block
      std::vector<BlockQ8_K> want(static_cast<size_t>(n / QK_K)), got(want.size());
      quantize_row_q8_K_ref(x.data(), want.data(), n);
      simd().quantize_q8_K(x.data(), got.data(), n);
      ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(BlockQ8_K)))
          << "n=" << n << " seed=" << seed;
    }
}

// q4_K as llama.cpp's repacked kernels compute it: a batch's first n - n % 4 tokens through the GEMM
// (rounding per pair of sub-blocks), the rest through the GEMV (per super-block). So a tile's column
// depends on its place: in a 6-column call columns 0-3 are the GEMM's (as in a 4-column call) and 4-5
// the GEMV's (as in a 1-column call); and the two chains do differ on some inputs.
TEST_P(LlamacppIsa, Q4KTileTakesGemmForWholeGroupsOfFourTokens) {
  const int64_t n = 1536, nr = 8, nc = 6;
  const auto w = random_blocks<BlockQ4_K, QK_K>(77, nr, n);
  const std::vector<float> x = randv(78, nc * n, -2.0f, 2.0f);
  std::vector<BlockQ8_K> a(static_cast<size_t>(nc * n / QK_K));
  for (int64_t c = 0; c < nc; ++c) simd().quantize_q8_K(x.data() + c * n, a.data() + c * n / QK_K, n);
  const int64_t ws = n / QK_K * static_cast<int64_t>(sizeof(BlockQ4_K)),
                as = n / QK_K * static_cast<int64_t>(sizeof(BlockQ8_K));
  for (bool single : {false, true}) {
    const MatmulTileFn f = simd(single).tile_q4_K_q8_K;
    std::vector<float> all(static_cast<size_t>(nr * nc)), four(static_cast<size_t>(nr * 4)),
        one(static_cast<size_t>(nr));
    f(n, w.data(), ws, nr, a.data(), as, nc, all.data(), nr);
    f(n, w.data(), ws, nr, a.data(), as, 4, four.data(), nr);
    ASSERT_EQ(0, std::memcmp(all.data(), four.data(), four.size() * 4)) << "GEMM columns";
    int differ = 0;
    for (int64_t c = 0; c < nc; ++c) {
      f(n, w.data(), ws, nr, a.data() + c * n / QK_K, as, 1, one.data(), nr);
      if (c >= 4)
        ASSERT_EQ(0, std::memcmp(one.data(), all.data() + c * nr, one.size() * 4)) << "GEMV column " << c;
      else
        differ += std::memcmp(one.data(), all.data() + c * nr, one.size() * 4) != 0;
    }
    EXPECT_GT(differ, 0) << "the GEMM and GEMV chains gave the same bits on every column";
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
    for (const void* f : {(const void*)t->quantize_q8_0,
                          (const void*)t->quantize_q8_1,
                          (const void*)t->tile_q4_0_q8_0,
                          (const void*)t->tile_q4_1_q8_1,
                          (const void*)t->tile_q8_0_q8_0,
                          (const void*)t->tile_f16_f32,
                          (const void*)t->dot_f16,
                          (const void*)t->dot_f16_gemv,
                          (const void*)t->rms_norm,
                          (const void*)t->rope,
                          (const void*)t->softmax,
                          (const void*)t->silu_mul,
                          (const void*)t->add,
                          (const void*)t->scale,
                          (const void*)t->to_f32_f16,
                          (const void*)t->quantize_row_q8_0,
                          (const void*)t->error_stats,
                          (const void*)t->quantize_q8_K,
                          (const void*)t->tile_q5_0_q8_0,
                          (const void*)t->tile_q5_1_q8_1,
                          (const void*)t->tile_iq4_nl_q8_0,
                          (const void*)t->tile_q4_K_q8_K,
                          (const void*)t->tile_q5_K_q8_K,
                          (const void*)t->tile_q6_K_q8_K,
                          (const void*)t->tile_q2_K_q8_K,
                          (const void*)t->tile_q3_K_q8_K,
                          (const void*)t->tile_iq4_xs_q8_K})
      EXPECT_NE(f, nullptr);
    for (const void* f :
         {(const void*)t->x16_q4_K_q8_K, (const void*)t->x16_q5_K_q8_K, (const void*)t->x16_q6_K_q8_K,
          (const void*)t->tile_bf16_f32, (const void*)t->tile_f32_f32, (const void*)t->x16_q4_0_q8_0,
          (const void*)t->x16_q4_1_q8_1, (const void*)t->x16_q8_0_q8_0})
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
    EXPECT_NE(batch.tile_q6_K_q8_K, ref().tile_q6_K_q8_K);
    EXPECT_NE(batch.tile_q4_K_q8_K, ref().tile_q4_K_q8_K);
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
