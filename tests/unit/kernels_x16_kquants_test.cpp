// The x16 layout of q4_K / q5_K / q6_K (kernels/interleaved.h): interleave_rows is a lossless
// rearrangement of the plain super-blocks (rebuilt here from the documented layout), the scalar x16
// kernel is within an input-derived bound of the exact dot of the dequantized values, every SIMD level
// equals it bit for bit, GEMM equals GEMV, and the integer paths survive extreme quants.
#include <gtest/gtest.h>

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

constexpr GgmlType kTypes[] = {GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};

// ggml's get_scale_min_k4, written out again from ggml-common.h for the test's own decoding.
void scale_min(const uint8_t* q, int s, int* sc, int* m) {
  *sc = s < 4 ? q[s] & 63 : (q[s + 4] & 0xF) | ((q[s - 4] >> 6) << 4);
  *m = s < 4 ? q[s + 4] & 63 : (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
}

// One plain super-block as exact doubles, split into the scale part (d * sc * q) and the min part
// (dmin * m, subtracted), so tolerances can bound |scale part| + |min part| rather than their difference.
void split_block(GgmlType t, const uint8_t* blk, double* scaled, double* mins) {
  if (t == GgmlType::Q6_K) {
    const auto& x = *reinterpret_cast<const BlockQ6_K*>(blk);
    const double d = fp16_to_fp32(x.d);
    for (int v = 0; v < QK_K; ++v) {
      const int h = v / 128, p = (v % 128) / 32, l = v % 32;
      const int lo = (x.ql[64 * h + 32 * (p & 1) + l] >> (4 * (p >> 1))) & 15;
      const int hi = (x.qh[32 * h + l] >> (2 * p)) & 3;
      scaled[v] = d * x.scales[8 * h + 2 * p + l / 16] * ((lo | hi << 4) - 32);
      mins[v] = 0;
    }
    return;
  }
  const bool q5 = t == GgmlType::Q5_K;
  const auto& x4 = *reinterpret_cast<const BlockQ4_K*>(blk);
  const auto& x5 = *reinterpret_cast<const BlockQ5_K*>(blk);
  const double d = fp16_to_fp32(q5 ? x5.d : x4.d), dmin = fp16_to_fp32(q5 ? x5.dmin : x4.dmin);
  const uint8_t* scales = q5 ? x5.scales : x4.scales;
  const uint8_t* qs = q5 ? x5.qs : x4.qs;
  for (int v = 0; v < QK_K; ++v) {
    const int s = v / 32, l = v % 32;
    int sc = 0, m = 0;
    scale_min(scales, s, &sc, &m);
    int q = (qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 15;
    if (q5) q |= ((x5.qh[l] >> s) & 1) << 4;
    scaled[v] = d * sc * q;
    mins[v] = dmin * m;
  }
}

struct KWeights {
  GgmlType type;
  int64_t rows, cols, stride;
  std::vector<uint8_t> bytes, packed;
  std::vector<double> scaled, mins;  // rows x cols
  WeightView plain, x16;
};

// Random quant bytes with sane fp16 scales (d, dmin in [1e-3, 1e-2), any sign for q6_K's d).
KWeights make_kweights(GgmlType t, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(1e-3f, 1e-2f);
  KWeights w{t, rows, cols, static_cast<int64_t>(ggml_row_bytes(t, static_cast<uint64_t>(cols))), {}, {}, {}, {}, {}, {}};
  w.bytes.resize(static_cast<size_t>(w.stride * rows));
  for (uint8_t& b : w.bytes) b = static_cast<uint8_t>(byte(rng));
  const int64_t bsize = w.stride / (cols / QK_K);
  for (int64_t i = 0; i < rows * (cols / QK_K); ++i) {
    uint8_t* blk = w.bytes.data() + i * bsize;
    if (t == GgmlType::Q6_K) {
      reinterpret_cast<BlockQ6_K*>(blk)->d = fp32_to_fp16(byte(rng) & 1 ? scale(rng) : -scale(rng));
    } else {
      auto* x = reinterpret_cast<BlockQ4_K*>(blk);  // d, dmin lead q5_K as well
      x->d = fp32_to_fp16(scale(rng));
      x->dmin = fp32_to_fp16(scale(rng));
    }
  }
  w.scaled.resize(static_cast<size_t>(rows * cols));
  w.mins.resize(w.scaled.size());
  for (int64_t i = 0; i < rows * (cols / QK_K); ++i)
    split_block(t, w.bytes.data() + i * bsize, w.scaled.data() + i * QK_K, w.mins.data() + i * QK_K);
  w.plain = WeightView{t, rows, cols, w.bytes.data(), w.stride};
  w.packed.resize(w.bytes.size());
  const Result<WeightView> x = interleave_rows(w.plain, w.packed, 2);
  EXPECT_TRUE(x.ok()) << x.error().message();
  if (x.ok()) w.x16 = *x;
  return w;
}

// The plain super-block of (group g, row r, block b) rebuilt from the documented x16 layout.
void deinterleave(GgmlType t, const uint8_t* grp_blk, int64_t r, uint8_t* out) {
  auto dwords = [&](const uint8_t* x16, int n, uint8_t* plain) {
    for (int j = 0; j < n; ++j) std::memcpy(plain + 4 * j, x16 + 64 * j + 4 * r, 4);
  };
  if (t == GgmlType::Q6_K) {
    const auto& x = *reinterpret_cast<const BlockQ6_Kx16*>(grp_blk);
    auto& o = *reinterpret_cast<BlockQ6_K*>(out);
    for (int h = 0; h < 2; ++h)  // the three dwords of chunk 8h + l4 (interleaved.h)
      for (int l4 = 0; l4 < 8; ++l4) {
        dwords(x.q + 192 * (8 * h + l4), 1, o.ql + 4 * (16 * h + l4));
        dwords(x.q + 192 * (8 * h + l4) + 64, 1, o.ql + 4 * (16 * h + 8 + l4));
        dwords(x.q + 192 * (8 * h + l4) + 128, 1, o.qh + 4 * (8 * h + l4));
      }
    for (int g = 0; g < 16; ++g) o.scales[g] = x.scales[32 * (g / 2) + 2 * r + g % 2];
    o.d = x.d[r];
    return;
  }
  // Both k45 x16 types lead with d, dmin, scales_lo, scales_hi; q5_K's qh follows, then qs.
  const auto& x = *reinterpret_cast<const BlockQ5_Kx16*>(grp_blk);
  int sc[8], m[8];
  for (int s = 0; s < 8; ++s) {
    const int lo = x.scales_lo[16 * s + r], hi = x.scales_hi[16 * (s % 4) + r] >> (2 * (s / 4));
    sc[s] = (lo & 15) | (hi & 3) << 4;
    m[s] = (lo >> 4) | ((hi >> 4) & 3) << 4;
  }
  uint8_t scales[12];  // ggml's 12-byte packing (the inverse of get_scale_min_k4)
  for (int s = 0; s < 4; ++s) {
    scales[s] = static_cast<uint8_t>(sc[s] | (sc[s + 4] >> 4) << 6);
    scales[s + 4] = static_cast<uint8_t>(m[s] | (m[s + 4] >> 4) << 6);
    scales[s + 8] = static_cast<uint8_t>((sc[s + 4] & 15) | (m[s + 4] & 15) << 4);
  }
  if (t == GgmlType::Q5_K) {
    auto& o = *reinterpret_cast<BlockQ5_K*>(out);
    o.d = x.d[r];
    o.dmin = x.dmin[r];
    std::memcpy(o.scales, scales, 12);
    dwords(x.qh, 8, o.qh);
    dwords(x.qs, 32, o.qs);
  } else {
    const auto& x4 = *reinterpret_cast<const BlockQ4_Kx16*>(grp_blk);
    auto& o = *reinterpret_cast<BlockQ4_K*>(out);
    o.d = x4.d[r];
    o.dmin = x4.dmin[r];
    std::memcpy(o.scales, scales, 12);
    dwords(x4.qs, 32, o.qs);
  }
}

#if defined(__x86_64__)
// The AVX-512 level as a CPU without GFNI runs it: where this CPU has GFNI, the level's table holds the
// GFNI q5_K kernel (kernel_tables_x86.cpp), and this copy the plain one. nullptr without both.
const KernelTable* avx512_without_gfni() {
  if (!cpu_features().gfni) return nullptr;
  return avx512_x16_variant([](Avx512X16Choices& c) { c.gfni = false; });
}
#else
const KernelTable* avx512_without_gfni() { return nullptr; }
#endif

// Every SIMD level this CPU runs, and the AVX-512 level's kernels without GFNI where it has GFNI.
std::vector<const KernelTable*> simd_levels() {
  std::vector<const KernelTable*> out;
  for (Isa i : {Isa::avx2, Isa::avx512, Isa::neon})
    if (const KernelTable* k = kernel_table(i)) out.push_back(k);
  if (const KernelTable* k = avx512_without_gfni()) out.push_back(k);
  return out;
}

TEST(X16KQuants, GfniTakesQ5KWhereTheCpuHasIt) {
  const KernelTable* plain = avx512_without_gfni();
  if (!plain) GTEST_SKIP() << "no AVX-512 with GFNI on this CPU";
  EXPECT_NE(kernel_table(Isa::avx512)->x16_q5_K_q8_K, plain->x16_q5_K_q8_K);
  EXPECT_EQ(kernel_table(Isa::avx512)->x16_q4_K_q8_K, plain->x16_q4_K_q8_K);
  EXPECT_EQ(kernel_table(Isa::avx512)->x16_q6_K_q8_K, plain->x16_q6_K_q8_K);
}

TEST(X16KQuants, InterleaveIsALosslessRearrangement) {
  for (GgmlType t : kTypes)
    for (int64_t rows : {16, 48})
      for (int64_t cols : {256, 768}) {
        const uint32_t seed = static_cast<uint32_t>(rows * 131 + cols + static_cast<int>(t));
        SCOPED_TRACE(::testing::Message() << ggml_type_name(t) << " rows=" << rows << " cols=" << cols << " seed=" << seed);
        const KWeights w = make_kweights(t, rows, cols, seed);
        ASSERT_TRUE(can_interleave(w.plain));
        EXPECT_EQ(w.x16.interleave, kInterleave);
        EXPECT_EQ(w.x16.row_stride, w.stride);
        EXPECT_EQ(w.x16.data, w.packed.data());
        const int64_t nb = cols / QK_K, bsize = w.stride / nb, gsize = kInterleave * bsize;
        std::vector<uint8_t> rebuilt(w.bytes.size());
        for (int64_t g = 0; g < rows / kInterleave; ++g)
          for (int64_t b = 0; b < nb; ++b)
            for (int64_t r = 0; r < kInterleave; ++r)
              deinterleave(t, w.packed.data() + (g * nb + b) * gsize, r,
                           rebuilt.data() + (g * kInterleave + r) * w.stride + b * bsize);
        EXPECT_EQ(rebuilt, w.bytes);
        // The test's decoding agrees with the library's dequantizer (independent code, same format).
        std::vector<float> f(static_cast<size_t>(cols));
        for (int64_t r = 0; r < rows; ++r) {
          block_traits(t)->to_float(w.bytes.data() + r * w.stride, f.data(), cols);
          for (int64_t i = 0; i < cols; ++i) {
            const double s = w.scaled[r * cols + i], m = w.mins[r * cols + i];
            ASSERT_NEAR(f[i], s - m, 4 * FLT_EPSILON * (std::fabs(s) + std::fabs(m))) << "r=" << r << " i=" << i;
          }
        }
      }
}

TEST(X16KQuants, InterleaveRejects) {
  const KWeights ok = make_kweights(GgmlType::Q4_K, 16, 256, 1);
  WeightView v = ok.plain;
  v.rows = 17;  // not a whole group
  EXPECT_FALSE(can_interleave(v));
  v = ok.plain;
  v.cols = 128;  // not a whole super-block
  v.row_stride = ok.stride / 2;
  EXPECT_FALSE(can_interleave(v));
  v = ok.plain;
  v.rows = 8;  // half a group
  EXPECT_FALSE(can_interleave(v));
  v = ok.plain;
  v.rows = 8;  // padded rows: 8 rows two row-lengths apart in the same bytes
  v.row_stride = 2 * ok.stride;
  EXPECT_FALSE(can_interleave(v));
  v = ok.x16;  // already interleaved
  EXPECT_FALSE(can_interleave(v));
  v = ok.plain;
  v.type = GgmlType::Q3_K;  // no x16 layout
  v.row_stride = static_cast<int64_t>(ggml_row_bytes(GgmlType::Q3_K, 256));
  EXPECT_FALSE(can_interleave(v));
  std::vector<uint8_t> dst(ok.bytes.size() - 1);
  const Result<WeightView> r = interleave_rows(ok.plain, dst);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("destination"), std::string::npos) << r.error().message();
  WeightView odd = ok.plain;
  odd.rows = 17;
  EXPECT_FALSE(interleave_rows(odd, dst).ok());
  for (GgmlType t : kTypes) {
    const KWeights w = make_kweights(t, 32, 512, 2);
    EXPECT_TRUE(can_interleave(w.plain)) << ggml_type_name(t);
  }
}

std::vector<float> make_input(int64_t n_tokens, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n_tokens * cols));
  for (float& v : x) v = nd(rng);
  return x;
}

// One shape: the scalar x16 kernel against the exact dot (double) of the dequantized values, every SIMD
// level bit for bit against it, 1 vs 2 threads, and GEMV (one token at a time) against GEMM.
void check_shape(GgmlType t, int64_t rows, int64_t cols, int64_t n_tokens) {
  const uint32_t seed = static_cast<uint32_t>(rows * 7919 + cols * 31 + n_tokens * 3 + static_cast<int>(t));
  SCOPED_TRACE(::testing::Message() << ggml_type_name(t) << " rows=" << rows << " cols=" << cols << " tokens=" << n_tokens
                                    << " seed=" << seed);
  const KernelTable& ref = *kernel_table(Isa::ref);
  const KWeights w = make_kweights(t, rows, cols, seed);
  const auto x = make_input(n_tokens, cols, seed + 1);
  ActivationBuffer a;
  ASSERT_TRUE(a.prepare(GgmlType::Q8_K, x.data(), n_tokens, cols, cols, 1, ref).ok());
  std::vector<float> yr(static_cast<size_t>(n_tokens * rows));
  ASSERT_TRUE(matmul(w.x16, a, yr.data(), 1, ref).ok());

  // Error of the contract's float steps: per super-block float(IS) and the scale products round once
  // each, the fmas once each, over 2 * nb accumulation steps: within (2 nb + 4) eps of the sum of
  // |scale part| + |min part| of every product.
  const int64_t nb = cols / QK_K;
  std::vector<float> af(static_cast<size_t>(cols));
  for (int64_t tok = 0; tok < n_tokens; ++tok) {
    dequantize_row_q8_K(static_cast<const BlockQ8_K*>(a.row(tok)), af.data(), cols);
    for (int64_t r = 0; r < rows; ++r) {
      double exact = 0, mag = 0;
      for (int64_t i = 0; i < cols; ++i) {
        const double s = w.scaled[r * cols + i], m = w.mins[r * cols + i];
        exact += (s - m) * af[i];
        mag += (std::fabs(s) + std::fabs(m)) * std::fabs(af[i]);
      }
      ASSERT_NEAR(yr[tok * rows + r], exact, (2 * nb + 4) * FLT_EPSILON * mag) << "ref x16 vs exact, r=" << r << " tok=" << tok;
    }
  }
  // The reference's GEMV: first and last token (the scalar kernel is slow under qemu).
  for (int64_t tok : {int64_t{0}, n_tokens - 1}) {
    ActivationBuffer a1;
    ASSERT_TRUE(a1.prepare(GgmlType::Q8_K, x.data() + tok * cols, 1, cols, cols, 1, ref).ok());
    std::vector<float> yv(static_cast<size_t>(rows));
    ASSERT_TRUE(matmul(w.x16, a1, yv.data(), 1, ref).ok());
    for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(yv[r], yr[tok * rows + r]) << "ref GEMV != GEMM tok=" << tok;
  }

  for (const KernelTable* k : simd_levels()) {
    SCOPED_TRACE(::testing::Message() << isa_name(k->isa) << (k == avx512_without_gfni() ? " without GFNI" : ""));
    ASSERT_NE(x16_kernel(*k, t), x16_kernel(ref, t)) << "the level has no kernel of its own";
    std::vector<float> y(yr.size()), y2(yr.size());
    ASSERT_TRUE(matmul(w.x16, a, y.data(), 1, *k).ok());
    ASSERT_TRUE(matmul(w.x16, a, y2.data(), 2, *k).ok());
    for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], yr[i]) << "level vs scalar x16, tok=" << i / rows << " r=" << i % rows;
    ASSERT_EQ(y, y2) << "1 vs 2 threads";
    for (int64_t tok = 0; tok < n_tokens; ++tok) {
      ActivationBuffer a1;
      ASSERT_TRUE(a1.prepare(GgmlType::Q8_K, x.data() + tok * cols, 1, cols, cols, 1, *k).ok());
      std::vector<float> yv(static_cast<size_t>(rows));
      ASSERT_TRUE(matmul(w.x16, a1, yv.data(), 1, *k).ok());
      for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(yv[r], y[tok * rows + r]) << "GEMV != GEMM tok=" << tok;
    }
  }
}

TEST(X16KQuants, TokenTails) {
  for (GgmlType t : kTypes)
    for (int64_t cols : {256, 512})
      for (int64_t n_tokens = 1; n_tokens <= 20; ++n_tokens) check_shape(t, 16, cols, n_tokens);
}

TEST(X16KQuants, ShapesAndChunks) {
  for (GgmlType t : kTypes) {
    check_shape(t, 32, 1024, 9);
    check_shape(t, 48, 1280, 3);
    check_shape(t, 16, 256, 64);
    check_shape(t, 48, 512, 67);  // past matmul's 64-token chunk
  }
}

// Extreme quants, hand-built q8_K rows with -128 (which quantize_q8_K never writes) and 127: the widest
// integer sums any level forms, so a 16-bit intermediate that could overflow shows here. Called on the
// kernels directly (no ActivationBuffer), 16 rows, 2 super-blocks, 3 tokens.
TEST(X16KQuants, ExtremeQuantsStayExact) {
  const int64_t cols = 512, nb = cols / QK_K, n_tokens = 3;
  std::vector<BlockQ8_K> act(static_cast<size_t>(n_tokens * nb));
  for (int64_t i = 0; i < n_tokens * nb; ++i) {
    BlockQ8_K& q = act[i];
    q.d = 1.0f / 64;
    for (int j = 0; j < QK_K; ++j) q.qs[j] = static_cast<int8_t>(i % 3 == 0 ? -128 : i % 3 == 1 ? 127 : (j % 2 ? 127 : -128));
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += q.qs[16 * g + j];
      q.bsums[g] = static_cast<int16_t>(s);
    }
  }
  for (GgmlType t : kTypes) {
    for (int fill : {0x00, 0xFF, 0x80, 0x7F}) {  // quants and scale bytes all equal (0xFF: every max)
      SCOPED_TRACE(::testing::Message() << ggml_type_name(t) << " fill=" << fill);
      KWeights w = make_kweights(t, 16, cols, 3);
      const int64_t bsize = w.stride / nb;
      for (int64_t i = 0; i < 16 * nb; ++i) {
        uint8_t* blk = w.bytes.data() + i * bsize;
        const uint16_t d = fp32_to_fp16(0.25f);
        std::memset(blk, fill, static_cast<size_t>(bsize));
        if (t == GgmlType::Q6_K) reinterpret_cast<BlockQ6_K*>(blk)->d = d;
        else reinterpret_cast<BlockQ4_K*>(blk)->d = reinterpret_cast<BlockQ4_K*>(blk)->dmin = d;
        split_block(t, blk, w.scaled.data() + i * QK_K, w.mins.data() + i * QK_K);
      }
      ASSERT_TRUE(interleave_rows(w.plain, w.packed, 1).ok());
      std::vector<float> yr(static_cast<size_t>(n_tokens * 16));
      const MatmulX16Fn fr = x16_kernel(*kernel_table(Isa::ref), t);
      fr(cols, w.packed.data(), 1, act.data(), nb * static_cast<int64_t>(sizeof(BlockQ8_K)), n_tokens, yr.data(), 16);
      for (int64_t tok = 0; tok < n_tokens; ++tok)
        for (int64_t r = 0; r < 16; ++r) {
          double exact = 0, mag = 0;
          for (int64_t i = 0; i < cols; ++i) {
            const double a = act[tok * nb + i / QK_K].qs[i % QK_K] / 64.0;
            const double s = w.scaled[r * cols + i], m = w.mins[r * cols + i];
            exact += (s - m) * a;
            mag += (std::fabs(s) + std::fabs(m)) * std::fabs(a);
          }
          ASSERT_NEAR(yr[tok * 16 + r], exact, (2 * nb + 4) * FLT_EPSILON * mag) << "tok=" << tok << " r=" << r;
        }
      for (const KernelTable* k : simd_levels()) {
        std::vector<float> y(yr.size());
        x16_kernel(*k, t)(cols, w.packed.data(), 1, act.data(), nb * static_cast<int64_t>(sizeof(BlockQ8_K)), n_tokens,
                          y.data(), 16);
        EXPECT_EQ(y, yr) << isa_name(k->isa);
      }
    }
  }
}

}  // namespace
}  // namespace qe::kernels
