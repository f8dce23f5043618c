// Flash-attention kernels (kernel_table.h, "attention") on every level this CPU runs against the scalar
// reference: the block step within float rounding of it, the same bits from an f16 cache as from the
// same values in f32, never reading past a row's keys or a head's features, and a row's bits the same in
// any tile (model::attention's invariance rests on that; tests/unit/attention_test.cpp checks the whole).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "formats/blocks.h"
#include "kernels/kernel_table.h"

namespace qe {
namespace {

using kernels::Isa;
using kernels::kAttnBlock;
using kernels::KernelTable;

std::vector<float> randv(uint32_t seed, size_t n, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

bool same_bits(const float* a, const float* b, size_t n) {
  return std::memcmp(a, b, n * sizeof(float)) == 0;
}

class AttentionIsa : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    k_ = kernels::kernel_table(GetParam());
    if (!k_) GTEST_SKIP() << "skipping " << kernels::isa_name(GetParam()) << ": this CPU/build lacks it";
    ref_ = kernels::kernel_table(Isa::ref);
  }
  const KernelTable* k_ = nullptr;
  const KernelTable* ref_ = nullptr;
};

// One key block as the cache holds it: K^T rows of kAttnBlock keys ks elements apart, V rows of d
// features vs elements apart, both wider than needed and NaN there (past the last key any row sees, and
// in V's row padding past d), so a read of anything the contract excludes shows as a NaN. Values are
// f16-exact, so the f16 copies hold the very same numbers.
struct Block {
  int64_t ks = kAttnBlock + 8, vs = 0;
  std::vector<float> kt, v;
  std::vector<uint16_t> kt16, v16;
  std::vector<int32_t> nv;
};

std::vector<uint16_t> to_f16(std::vector<float>& x) {
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    h[i] = fp32_to_fp16(x[i]);
    x[i] = fp16_to_fp32(h[i]);  // NaN stays NaN
  }
  return h;
}

Block make_block(int64_t d, int64_t rows, uint32_t seed, int32_t fixed_nv) {
  Block b;
  b.vs = d + 3;
  b.kt = randv(seed, static_cast<size_t>(d * b.ks), -2, 2);
  b.v = randv(seed + 1, static_cast<size_t>(kAttnBlock * b.vs), -1, 1);
  std::mt19937 rng(seed + 2);
  for (int64_t r = 0; r < rows; ++r)
    b.nv.push_back(fixed_nv > 0 ? fixed_nv : static_cast<int32_t>(1 + rng() % kAttnBlock));
  const int32_t top = *std::max_element(b.nv.begin(), b.nv.end());
  for (int64_t i = 0; i < d; ++i)
    for (int64_t c = top; c < b.ks; ++c) b.kt[static_cast<size_t>(i * b.ks + c)] = NAN;
  for (int64_t c = 0; c < kAttnBlock; ++c)
    for (int64_t j = 0; j < b.vs; ++j)
      if (c >= top || j >= d) b.v[static_cast<size_t>(c * b.vs + j)] = NAN;
  b.kt16 = to_f16(b.kt);
  b.v16 = to_f16(b.v);
  return b;
}

// A few key blocks for n_rows rows of head_dim d through attn_block, state carried between blocks.
struct BlockRun {
  int64_t d, ld, rows;
  std::vector<float> q, m, l, o;
  BlockRun(int64_t d_, int64_t rows_, uint32_t seed) : d(d_), ld((d_ + 15) / 16 * 16), rows(rows_) {
    q = randv(seed, static_cast<size_t>(rows * ld), -1, 1);
    for (int64_t r = 0; r < rows; ++r) std::fill(q.begin() + r * ld + d, q.begin() + (r + 1) * ld, 0.0f);
    m.assign(static_cast<size_t>(rows), -INFINITY);
    l.assign(static_cast<size_t>(rows), 0.0f);
    o.assign(static_cast<size_t>(rows * ld), 0.0f);
  }
  // Rows [r0, r0 + n) through one block, from its f16 or f32 copy; `next`: the block named as the next
  // one (the prefetch hint), if any.
  void step(const KernelTable& k, const Block& b, bool f16, int64_t r0, int64_t n, const Block* next = nullptr) {
    auto kt_of = [&](const Block& x) { return f16 ? static_cast<const void*>(x.kt16.data()) : x.kt.data(); };
    auto v_of = [&](const Block& x) { return f16 ? static_cast<const void*>(x.v16.data()) : x.v.data(); };
    kernels::AttnBlockRef hint;
    if (next != nullptr)
      hint = {kt_of(*next), v_of(*next), *std::max_element(next->nv.begin(), next->nv.end())};
    (f16 ? k.attn_block_f16 : k.attn_block_f32)(n, d, ld, q.data() + r0 * ld, kt_of(b), b.ks, v_of(b), b.vs,
                                                 b.nv.data() + r0, m.data() + r0, l.data() + r0,
                                                 o.data() + r0 * ld, next != nullptr ? &hint : nullptr);
  }
};

TEST_P(AttentionIsa, BlockMatchesReference) {
  for (int64_t d : {7, 16, 64, 80, 128})
    for (int64_t rows : {1, 2, 3, 4, 5, 8, 9, 13, 17})  // 13, 17: a widened f16 block (attn_block)
      for (bool f16 : {false, true}) {
        const uint32_t seed = static_cast<uint32_t>(d * 1000 + rows);
        BlockRun a(d, rows, seed), b(d, rows, seed), w(d, rows, seed);
        // Full blocks, then a ragged one (causal diagonal), as attention() feeds them.
        for (int blk = 0; blk < 3; ++blk) {
          const Block bl = make_block(d, rows, seed + 10 * blk, blk < 2 ? kAttnBlock : 0);
          a.step(*k_, bl, f16, 0, rows);
          b.step(*ref_, bl, f16, 0, rows);
          w.step(*k_, bl, !f16, 0, rows);
        }
        // The same values from an f16 and an f32 cache: the same bits (the widening is exact).
        ASSERT_TRUE(same_bits(a.o.data(), w.o.data(), a.o.size())) << "f16 vs f32 cache, d=" << d << " rows=" << rows;
        ASSERT_TRUE(same_bits(a.l.data(), w.l.data(), a.l.size())) << "f16 vs f32 cache, d=" << d << " rows=" << rows;
        for (int64_t r = 0; r < rows; ++r) {
          ASSERT_NEAR(a.m[r], b.m[r], 1e-5f) << "d=" << d << " rows=" << rows << " seed=" << seed;
          // Sums of up to 192 positive terms (exp to ~2 ulp): relative 1e-5 is ~100 eps.
          ASSERT_NEAR(a.l[r], b.l[r], 1e-5f * b.l[r]) << "d=" << d << " r=" << r << " seed=" << seed;
          for (int64_t j = 0; j < a.ld; ++j) {
            const float x = a.o[r * a.ld + j] / a.l[r], y = b.o[r * b.ld + j] / b.l[r];
            ASSERT_FALSE(std::isnan(x)) << "read past nv or d: d=" << d << " r=" << r << " j=" << j << " seed=" << seed;
            if (j >= d) {
              ASSERT_EQ(a.o[r * a.ld + j], 0.0f) << "features past d are not touched: d=" << d << " j=" << j;
            } else {
              ASSERT_NEAR(x, y, 2e-5f) << "d=" << d << " r=" << r << " j=" << j << " seed=" << seed;
            }
          }
        }
      }
}

// A row's bits do not depend on the rows beside it: every row computed alone equals the tile's.
TEST_P(AttentionIsa, RowsAreIndependentOfTheTile) {
  for (int64_t d : {16, 64, 80})
    for (bool f16 : {false, true}) {
      const int64_t rows = 17;  // more than three tiles at every level: AVX-512 widens an f16 block
      const uint32_t seed = static_cast<uint32_t>(7 * d);
      BlockRun all(d, rows, seed);
      std::vector<Block> blocks;
      for (int blk = 0; blk < 3; ++blk) blocks.push_back(make_block(d, rows, seed + 10 * blk, blk < 2 ? kAttnBlock : 0));
      for (const Block& bl : blocks) all.step(*k_, bl, f16, 0, rows);
      for (int64_t first = 0; first < rows; first += 3) {
        BlockRun part(d, rows, seed);
        const int64_t n = std::min<int64_t>(3, rows - first);
        for (const Block& bl : blocks)
          for (int64_t r = first; r < first + n; ++r) part.step(*k_, bl, f16, r, 1);
        for (int64_t r = first; r < first + n; ++r) {
          ASSERT_TRUE(same_bits(&part.o[r * part.ld], &all.o[r * all.ld], static_cast<size_t>(all.ld)))
              << "d=" << d << " row " << r << " seed=" << seed << " f16=" << f16;
          ASSERT_EQ(part.l[r], all.l[r]);
        }
      }
    }
}

// Naming the next block (a prefetch hint) changes no bit, on any row count or head size.
TEST_P(AttentionIsa, NextBlockHintChangesNoBits) {
  for (int64_t d : {7, 64, 80})
    for (int64_t rows : {1, 3, 5, 9, 17})
      for (bool f16 : {false, true}) {
        const uint32_t seed = static_cast<uint32_t>(31 * d + rows);
        std::vector<Block> blocks;
        for (int blk = 0; blk < 3; ++blk) blocks.push_back(make_block(d, rows, seed + 10 * blk, blk < 2 ? kAttnBlock : 0));
        BlockRun plain(d, rows, seed), hinted(d, rows, seed);
        for (size_t i = 0; i < blocks.size(); ++i) {
          plain.step(*k_, blocks[i], f16, 0, rows);
          hinted.step(*k_, blocks[i], f16, 0, rows, i + 1 < blocks.size() ? &blocks[i + 1] : nullptr);
        }
        ASSERT_TRUE(same_bits(plain.o.data(), hinted.o.data(), plain.o.size())) << "d=" << d << " rows=" << rows;
        ASSERT_TRUE(same_bits(plain.l.data(), hinted.l.data(), plain.l.size())) << "d=" << d << " rows=" << rows;
        ASSERT_TRUE(same_bits(plain.m.data(), hinted.m.data(), plain.m.size())) << "d=" << d << " rows=" << rows;
      }
}

INSTANTIATE_TEST_SUITE_P(AllLevels, AttentionIsa,
                         ::testing::Values(Isa::ref, Isa::avx2, Isa::avx512, Isa::neon),
                         [](const auto& p) { return std::string(kernels::isa_name(p.param)); });

}  // namespace
}  // namespace qe
