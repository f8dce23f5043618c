// Matmul drivers: thread counts 1 and 2 give identical bits, GEMM equals GEMV token by token, a fused
// group equals separate calls, and every level stays within an input-derived tolerance of the reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "avx512_variants.h"
#include "formats/blocks.h"
#include "kernels/cpu_features.h"
#include "kernels/interleaved.h"
#include "kernels/matmul.h"

namespace qe::kernels {
namespace {

// The first 64-byte boundary in a buffer of 8-byte words (the caller leaves 64 bytes of room).
uint64_t* align64(uint64_t* p) { return p + (8 - reinterpret_cast<uintptr_t>(p) / 8 % 8) % 8; }

struct Weights {
  std::vector<uint8_t> bytes;
  std::vector<float> deq;  // rows x cols
  WeightView view;
};

Weights make_weights(GgmlType t, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.5f);
  Weights w;
  const int64_t stride = static_cast<int64_t>(ggml_row_bytes(t, static_cast<uint64_t>(cols)));
  w.bytes.resize(static_cast<size_t>(stride * rows));
  w.deq.resize(static_cast<size_t>(rows * cols));
  std::vector<float> f(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = w.bytes.data() + r * stride;
    if (t == GgmlType::Q6_K) {  // no q6_K quantizer here: random quants, sane scales
      std::uniform_int_distribution<int> byte(0, 255);
      for (int64_t i = 0; i < stride; ++i) row[i] = static_cast<uint8_t>(byte(rng));
      for (int64_t b = 0; b < cols / QK_K; ++b) reinterpret_cast<BlockQ6_K*>(row)[b].d = fp32_to_fp16(1e-4f);
    } else {
      for (float& v : f) v = nd(rng);
      if (t == GgmlType::F32) std::memcpy(row, f.data(), f.size() * 4);
      else block_traits(t)->from_float(f.data(), row, cols);
    }
    if (t == GgmlType::F32) std::memcpy(w.deq.data() + r * cols, row, static_cast<size_t>(cols) * 4);
    else block_traits(t)->to_float(row, w.deq.data() + r * cols, cols);
  }
  w.view = WeightView{t, rows, cols, w.bytes.data(), stride};
  return w;
}

std::vector<float> make_input(int64_t n_tokens, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n_tokens * cols));
  for (float& v : x) v = nd(rng);
  return x;
}

constexpr GgmlType kTypes[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q6_K,   GgmlType::Q5_0,
                               GgmlType::Q5_1, GgmlType::IQ4_NL, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K,
                               GgmlType::Q5_K, GgmlType::IQ4_XS, GgmlType::F16,  GgmlType::BF16, GgmlType::F32};

class MatmulIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    k_ = kernel_table(GetParam());
    if (!k_) GTEST_SKIP() << "skipping " << isa_name(GetParam()) << ": this CPU/build lacks it";
  }
  const KernelTable* k_ = nullptr;
};

TEST_P(MatmulIsa, ThreadsGemvGemmAndReferenceAgree) {
  const KernelTable& ref = *kernel_table(Isa::ref);
  for (GgmlType t : kTypes) {
    const bool super = ggml_type_info(t).block_size == QK_K;
    const int64_t blk = super ? QK_K : 32;
    for (int64_t rows : {1, 3, 17, 67, 129}) {
      for (int64_t n_tokens : {1, 2, 7, 67}) {
        const int64_t cols = blk * (super ? 2 : 5);
        const uint32_t seed = static_cast<uint32_t>(rows * 1000 + n_tokens * 10 + static_cast<int>(t));
        SCOPED_TRACE(::testing::Message() << ggml_type_name(t) << " rows=" << rows << " tokens=" << n_tokens
                                          << " cols=" << cols << " seed=" << seed);
        const Weights w = make_weights(t, rows, cols, seed);
        const auto x = make_input(n_tokens, cols, seed + 1);
        ActivationBuffer a;
        ASSERT_TRUE(a.prepare(*activation_type(t), x.data(), n_tokens, cols, cols, 1, *k_).ok());
        std::vector<float> y1(static_cast<size_t>(n_tokens * rows)), y2(y1.size()), yr(y1.size());
        ASSERT_TRUE(matmul(w.view, a, y1.data(), 1, *k_).ok());
        ASSERT_TRUE(matmul(w.view, a, y2.data(), 2, *k_).ok());
        ASSERT_EQ(y1, y2) << "1 vs 2 threads";
        for (int64_t tok = 0; tok < n_tokens; ++tok) {  // GEMV per token
          ActivationBuffer a1;
          ASSERT_TRUE(a1.prepare(*activation_type(t), x.data() + tok * cols, 1, cols, cols, 1, *k_).ok());
          std::vector<float> yv(static_cast<size_t>(rows));
          ASSERT_TRUE(matmul(w.view, a1, yv.data(), 2, *k_).ok());
          for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(yv[r], y1[tok * rows + r]) << "GEMV != GEMM tok=" << tok;
        }
        ActivationBuffer ar;
        ASSERT_TRUE(ar.prepare(*activation_type(t), x.data(), n_tokens, cols, cols, 1, ref).ok());
        ASSERT_TRUE(matmul(w.view, ar, yr.data(), 1, ref).ok());
        // Quantizers are byte-identical, so both sides see the same activations: dequantize them once.
        std::vector<float> af(static_cast<size_t>(cols));
        for (int64_t tok = 0; tok < n_tokens; ++tok) {
          if (t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16)
            std::memcpy(af.data(), x.data() + tok * cols, af.size() * 4);
          else if (*activation_type(t) == GgmlType::Q8_1)
            dequantize_row_q8_1(static_cast<const BlockQ8_1*>(ar.row(tok)), af.data(), cols);
          else if (*activation_type(t) == GgmlType::Q8_K)
            dequantize_row_q8_K(static_cast<const BlockQ8_K*>(ar.row(tok)), af.data(), cols);
          else dequantize_row_q8_0(static_cast<const BlockQ8_0*>(ar.row(tok)), af.data(), cols);
          for (int64_t r = 0; r < rows; ++r) {
            double mag = 0;
            for (int64_t i = 0; i < cols; ++i) mag += std::fabs(static_cast<double>(w.deq[r * cols + i]) * af[i]);
            ASSERT_NEAR(y1[tok * rows + r], yr[tok * rows + r], 20 * mag * FLT_EPSILON) << "r=" << r << " tok=" << tok;
          }
        }
      }
    }
  }
}

TEST_P(MatmulIsa, FusedGroupEqualsSeparateCalls) {
  const int64_t cols = 256, n_tokens = 9;
  const auto x = make_input(n_tokens, cols, 5);
  const Weights q = make_weights(GgmlType::Q4_0, 67, cols, 1), kk = make_weights(GgmlType::Q8_0, 17, cols, 2),
                v0 = make_weights(GgmlType::Q4_0, 48, cols, 3);
  // One x16 job after two plain ones whose row counts are not multiples of 16.
  std::vector<uint8_t> packed(v0.bytes.size());
  Weights v = v0;
  v.view = *interleave_rows(v0.view, packed);
  ActivationBuffer a;
  ASSERT_TRUE(a.prepare(GgmlType::Q8_0, x.data(), n_tokens, cols, cols, 2, *k_).ok());
  std::vector<float> yq(67 * n_tokens), yk(17 * n_tokens), yv(48 * n_tokens);
  const MatmulJob jobs[] = {{q.view, yq.data(), 67}, {kk.view, yk.data(), 17}, {v.view, yv.data(), 48}};
  ASSERT_TRUE(matmul_group(jobs, a, 2, *k_).ok());
  std::vector<float> sq(yq.size()), sk(yk.size()), sv(yv.size());
  ASSERT_TRUE(matmul(q.view, a, sq.data(), 1, *k_).ok());
  ASSERT_TRUE(matmul(kk.view, a, sk.data(), 1, *k_).ok());
  ASSERT_TRUE(matmul(v.view, a, sv.data(), 1, *k_).ok());
  EXPECT_EQ(yq, sq);
  EXPECT_EQ(yk, sk);
  EXPECT_EQ(yv, sv);
}

// A row hook runs once on every token's row before that row is converted, on any thread count: the
// result equals the rows made first and converted after (every activation type, f32 included, token
// counts around the 4-token chunk), and the hook has written x itself.
TEST_P(MatmulIsa, RowHookEqualsRowsMadeFirst) {
  const int64_t cols = 256;
  for (const GgmlType type : {GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K, GgmlType::F32}) {
    for (const int64_t n_tokens : {1, 3, 4, 5, 8, 9, 17}) {
      const auto src = make_input(n_tokens, cols, 11);
      auto make_row = [&](std::vector<float>& x, int64_t t) {  // x = 2 src + 1 (the hook's work)
        for (int64_t i = 0; i < cols; ++i) x[t * cols + i] = 2.0f * src[t * cols + i] + 1.0f;
      };
      std::vector<float> made(src.size());
      for (int64_t t = 0; t < n_tokens; ++t) make_row(made, t);
      ActivationBuffer want;
      ASSERT_TRUE(want.prepare(type, made.data(), n_tokens, cols, cols, 1, *k_).ok());
      for (const int threads : {1, 2}) {
        std::vector<float> x(src.size(), NAN);
        std::vector<int> calls(static_cast<size_t>(n_tokens), 0);
        auto hook = [&](int64_t t) {
          make_row(x, t);
          ++calls[static_cast<size_t>(t)];
        };
        ActivationBuffer got;
        ASSERT_TRUE(got.prepare(type, x.data(), n_tokens, cols, cols, ThreadTeam::for_this_thread(threads), *k_,
                                RowHook::of(hook))
                        .ok());
        const std::string where = std::string(ggml_type_name(type)) + ", " + std::to_string(n_tokens) +
                                  " tokens, " + std::to_string(threads) + " threads";
        EXPECT_EQ(calls, std::vector<int>(static_cast<size_t>(n_tokens), 1)) << where;
        EXPECT_EQ(0, std::memcmp(x.data(), made.data(), made.size() * sizeof(float))) << where;
        ASSERT_EQ(got.row_stride(), want.row_stride()) << where;
        for (int64_t t = 0; t < n_tokens; ++t) {
          const size_t bytes = type == GgmlType::F32 ? cols * sizeof(float) : static_cast<size_t>(want.row_stride());
          EXPECT_EQ(0, std::memcmp(got.row(t), want.row(t), bytes)) << where << ", token " << t;
        }
      }
    }
  }
}

// The x16 layout: every level's kernel equals the scalar x16 reference bit for bit (same integer dots,
// same fma sequence), GEMM equals GEMV, 1 and 2 threads agree, and the result stays within the
// input-derived tolerance of the plain row-major product.
TEST_P(MatmulIsa, InterleavedMatchesReferenceBitForBit) {
  const KernelTable& ref = *kernel_table(Isa::ref);
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0}) {
    for (int64_t rows : {16, 48, 128}) {
      for (int64_t cols : {32, 96, 4096}) {
        for (int64_t n_tokens : {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 67}) {
          // Long rows once per shape family: the scalar reference is slow (and CI also runs this under qemu).
          if (cols == 4096 && (rows != 16 || (n_tokens != 1 && n_tokens != 9))) continue;
          const uint32_t seed = static_cast<uint32_t>(rows * 7919 + cols * 31 + n_tokens * 3 + static_cast<int>(t));
          SCOPED_TRACE(::testing::Message() << ggml_type_name(t) << " rows=" << rows << " cols=" << cols
                                            << " tokens=" << n_tokens << " seed=" << seed);
          const Weights w = make_weights(t, rows, cols, seed);
          ASSERT_TRUE(can_interleave(w.view));
          std::vector<uint8_t> packed(w.bytes.size());
          const Result<WeightView> wx = interleave_rows(w.view, packed, 2);
          ASSERT_TRUE(wx.ok()) << wx.error().message();
          const auto x = make_input(n_tokens, cols, seed + 1);
          ActivationBuffer a;
          ASSERT_TRUE(a.prepare(*activation_type(t), x.data(), n_tokens, cols, cols, 1, *k_).ok());
          std::vector<float> y(static_cast<size_t>(n_tokens * rows)), y2(y.size()), yr(y.size()), yp(y.size());
          ASSERT_TRUE(matmul(*wx, a, y.data(), 1, *k_).ok());
          ASSERT_TRUE(matmul(*wx, a, y2.data(), 2, *k_).ok());
          ASSERT_EQ(y, y2) << "1 vs 2 threads";
          ASSERT_TRUE(matmul(*wx, a, yr.data(), 1, ref).ok());
          ASSERT_EQ(y, yr) << "level vs scalar x16 reference";
          // matmul takes the level's scales-and-run split where it has one: the kernel called alone, and
          // the split with the scales of all tokens made once, give the same bits.
          const X16IntSplit split = t == GgmlType::Q4_0   ? k_->x16_q4_0_split
                                    : t == GgmlType::Q4_1 ? k_->x16_q4_1_split
                                                          : k_->x16_q8_0_split;
          std::vector<float> yd(y.size(), -1.0f), ys(y.size(), -1.0f);
          std::vector<uint64_t> buffer;
          const uint8_t* scales = nullptr;
          if (split) {
            buffer.assign(static_cast<size_t>(split.scale_bytes(cols, n_tokens) / 8 + 8), 0);
            split.scales(cols, a.row(0), a.row_stride(), n_tokens, align64(buffer.data()));
            scales = reinterpret_cast<const uint8_t*>(align64(buffer.data()));
          }
          for (int64_t t0 = 0; t0 < n_tokens; t0 += 64) {
            const int64_t nc = std::min<int64_t>(64, n_tokens - t0);
            x16_kernel(*k_, t)(cols, wx->data, rows / kInterleave, a.row(t0), a.row_stride(), nc,
                               yd.data() + t0 * rows, rows);
            if (split)
              split.run(cols, wx->data, rows / kInterleave, a.row(t0), a.row_stride(), nc,
                        scales + split.scale_bytes(cols, t0),
                        ys.data() + t0 * rows, rows);
          }
          ASSERT_EQ(yd, y) << "the x16 kernel alone vs matmul";
          if (split) {
            ASSERT_EQ(ys, y) << "split vs matmul";
          }
          ActivationBuffer a1;
          ASSERT_TRUE(a1.prepare(*activation_type(t), x.data() + (n_tokens - 1) * cols, 1, cols, cols, 1, *k_).ok());
          std::vector<float> yv(static_cast<size_t>(rows));
          ASSERT_TRUE(matmul(*wx, a1, yv.data(), 1, *k_).ok());
          for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(yv[r], y[(n_tokens - 1) * rows + r]) << "GEMV != GEMM";
          ASSERT_TRUE(matmul(w.view, a, yp.data(), 1, ref).ok());  // plain layout, ggml's order
          for (int64_t tok = 0; tok < n_tokens; ++tok)
            for (int64_t r = 0; r < rows; ++r) {
              double mag = 0;
              for (int64_t i = 0; i < cols; ++i) mag += std::fabs(static_cast<double>(w.deq[r * cols + i]) * x[tok * cols + i]);
              ASSERT_NEAR(y[tok * rows + r], yp[tok * rows + r], 2 * mag * FLT_EPSILON * std::sqrt(cols / 32.0) + 1e-6)
                  << "x16 vs plain, r=" << r << " tok=" << tok;
            }
        }
      }
    }
  }
}

#if defined(__x86_64__)
// The AVX-512 level with the other choice of one-token GEMV software prefetch than this CPU's
// (gemv_software_prefetch): a CPU runs one, the tests run both. nullptr without AVX-512.
const KernelTable* avx512_other_gemv_prefetch() {
  return avx512_x16_variant([](Avx512X16Choices& c) { c.gemv_prefetch = !c.gemv_prefetch; });
}

// Prefetching changes where the weights come from, never a bit: every x16 type, GEMV, a GEMM of one
// slice of 5 tokens (a batched decode step) and one whose last 8-token slice holds one token, the level's
// kernels and the other prefetch's agree exactly (the level's are held to the scalar reference by the tests
// above), on 1 and 2 threads. Long rows, so the prefetches reach past the end of the weights (which never
// faults).
TEST(Matmul, GemvPrefetchChoicesGiveTheSameBits) {
  const KernelTable* other = avx512_other_gemv_prefetch();
  if (!other) GTEST_SKIP() << "no AVX-512 on this CPU";
  const KernelTable& level = *kernel_table(Isa::avx512);
  EXPECT_NE(level.x16_q4_0_q8_0, other->x16_q4_0_q8_0);
  EXPECT_NE(level.x16_q6_K_q8_K, other->x16_q6_K_q8_K);
  EXPECT_NE(level.x16_f16_f32, other->x16_f16_f32);
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q5_K,
                     GgmlType::Q6_K, GgmlType::F16, GgmlType::BF16}) {
    const int64_t blk = ggml_type_info(t).block_size;
    for (int64_t rows : {16, 48}) {
      for (int64_t cols : {blk * (blk == QK_K ? 3 : 9), int64_t{4096}}) {
        const uint32_t seed = static_cast<uint32_t>(rows * 31 + cols + static_cast<int>(t));
        const Weights w = make_weights(t, rows, cols, seed);
        std::vector<uint8_t> packed(w.bytes.size());
        const Result<WeightView> wx = interleave_rows(w.view, packed, 2);
        ASSERT_TRUE(wx.ok()) << wx.error().message();
        for (int64_t n_tokens : {1, 5, 9}) {
          SCOPED_TRACE(::testing::Message() << ggml_type_name(t) << " rows=" << rows << " cols=" << cols
                                            << " tokens=" << n_tokens);
          const auto x = make_input(n_tokens, cols, seed + 1);
          ActivationBuffer a;
          ASSERT_TRUE(a.prepare(*activation_type(t), x.data(), n_tokens, cols, cols, 1, level).ok());
          for (int threads : {1, 2}) {
            std::vector<float> y(static_cast<size_t>(n_tokens * rows)), yo(y.size());
            ASSERT_TRUE(matmul(*wx, a, y.data(), threads, level).ok());
            ASSERT_TRUE(matmul(*wx, a, yo.data(), threads, *other).ok());
            ASSERT_EQ(0, std::memcmp(y.data(), yo.data(), y.size() * sizeof(float))) << threads << " threads";
          }
        }
      }
    }
  }
}
#endif

TEST(Matmul, InterleaveRefusesWhatItCannotDo) {
  // f32 has no x16 layout (f16 and bf16 do: kernels_x16_float_test.cpp).
  const Weights odd = make_weights(GgmlType::Q4_0, 17, 64, 1), f32 = make_weights(GgmlType::F32, 16, 64, 2);
  EXPECT_FALSE(can_interleave(odd.view));
  EXPECT_FALSE(can_interleave(f32.view));
  std::vector<uint8_t> dst(odd.bytes.size());
  EXPECT_FALSE(interleave_rows(odd.view, dst).ok());
  const Weights ok = make_weights(GgmlType::Q8_0, 16, 64, 3);
  std::vector<uint8_t> small(ok.bytes.size() - 1);
  const Result<WeightView> r = interleave_rows(ok.view, small);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("destination"), std::string::npos) << r.error().message();
}

// x16_plain_row is interleave_rows' exact inverse, row by row, for every x16 type: random bytes (every
// bit of every scale field set somewhere), an odd column count for the float types.
TEST(Matmul, PlainRowUndoesInterleave) {
  struct Case {
    GgmlType type;
    int64_t cols;
  };
  for (const Case c : {Case{GgmlType::Q4_0, 96}, Case{GgmlType::Q4_1, 96}, Case{GgmlType::Q8_0, 96},
                       Case{GgmlType::Q4_K, 512}, Case{GgmlType::Q5_K, 512}, Case{GgmlType::Q6_K, 512},
                       Case{GgmlType::F16, 33}, Case{GgmlType::BF16, 33}, Case{GgmlType::BF16, 34}}) {
    SCOPED_TRACE(std::string(ggml_type_name(c.type)) + " x " + std::to_string(c.cols));
    const int64_t rows = 48, stride = static_cast<int64_t>(ggml_row_bytes(c.type, static_cast<uint64_t>(c.cols)));
    std::mt19937 rng(static_cast<uint32_t>(c.cols) * 7 + static_cast<uint32_t>(c.type));
    std::vector<uint8_t> plain(static_cast<size_t>(rows * stride)), x16(plain.size()), row(static_cast<size_t>(stride));
    for (uint8_t& b : plain) b = static_cast<uint8_t>(rng());
    const Result<WeightView> v = interleave_rows(WeightView{c.type, rows, c.cols, plain.data(), stride}, x16, 2);
    ASSERT_TRUE(v.ok()) << v.error().message();
    ASSERT_NE(std::memcmp(x16.data(), plain.data(), plain.size()), 0);  // it did move bytes
    for (int64_t r = 0; r < rows; ++r) {
      std::fill(row.begin(), row.end(), uint8_t{0xEE});
      x16_plain_row(*v, r, row.data());
      ASSERT_EQ(std::memcmp(row.data(), plain.data() + r * stride, row.size()), 0) << "row " << r;
    }
  }
}

TEST(Matmul, MismatchesAreErrors) {
  const Weights w = make_weights(GgmlType::Q4_1, 4, 64, 9);
  const auto x = make_input(2, 64, 1);
  ActivationBuffer a;
  ASSERT_TRUE(a.prepare(GgmlType::Q8_0, x.data(), 2, 64, 64).ok());
  std::vector<float> y(8);
  const Status wrong_type = matmul(w.view, a, y.data());
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_NE(wrong_type.error().message().find("q8_1"), std::string::npos) << wrong_type.error().message();
  ActivationBuffer b;
  ASSERT_TRUE(b.prepare(GgmlType::Q8_1, x.data(), 2, 32, 64).ok());
  EXPECT_FALSE(matmul(w.view, b, y.data()).ok());                           // cols differ
  EXPECT_FALSE(a.prepare(GgmlType::Q8_0, x.data(), 1, 48, 48).ok());        // not a block multiple
  EXPECT_FALSE(a.prepare(GgmlType::Q4_0, x.data(), 1, 64, 64).ok());        // not an activation type
  EXPECT_FALSE(activation_type(GgmlType::IQ2_XXS).has_value());
}

INSTANTIATE_TEST_SUITE_P(AllLevels, MatmulIsa, ::testing::Values(Isa::ref, Isa::avx2, Isa::avx512, Isa::neon),
                         [](const auto& p) { return std::string(isa_name(p.param)); });

}  // namespace
}  // namespace qe::kernels
