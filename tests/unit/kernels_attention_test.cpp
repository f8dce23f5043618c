// Flash-attention kernels (kernel_table.h, "attention") on every level this CPU runs against the scalar
// reference: the widening row copy is exact, the block step within float rounding of it, never reads past a row's
// keys, and gives a row the same bits in any tile (model::attention's invariance rests on that;
// tests/unit/attention_test.cpp checks the whole).
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

// Rows: a widening copy, so every level gives the reference's bits, zeros to nc_out included, and
// writes nothing past nc_out or nr.
TEST_P(AttentionIsa, RowsAreExact) {
  for (int64_t nr : {1, 3, 16, 64})
    for (int64_t nc : {1, 5, 16, 33, 64}) {
      const uint32_t seed = static_cast<uint32_t>(nr * 100 + nc + 7);
      const int64_t stride = nc + 3, nc_out = (nc + 15) / 16 * 16, ldd = nc_out + 16;
      const auto x = randv(seed, static_cast<size_t>(nr * stride), -3, 3);
      std::vector<uint16_t> h(x.size());
      for (size_t i = 0; i < x.size(); ++i) h[i] = fp32_to_fp16(x[i]);
      for (int f16 = 0; f16 < 2; ++f16) {
        std::vector<float> a(static_cast<size_t>((nr + 1) * ldd), 7.0f), b = a;
        const void* src = f16 ? static_cast<const void*>(h.data()) : x.data();
        const int64_t sb = stride * (f16 ? 2 : 4);
        (f16 ? k_->attn_rows_f16 : k_->attn_rows_f32)(src, sb, nr, nc, nc_out, a.data(), ldd);
        (f16 ? ref_->attn_rows_f16 : ref_->attn_rows_f32)(src, sb, nr, nc, nc_out, b.data(), ldd);
        ASSERT_TRUE(same_bits(a.data(), b.data(), a.size())) << "nr=" << nr << " nc=" << nc << " f16=" << f16;
        const float last = f16 ? fp16_to_fp32(h[static_cast<size_t>((nr - 1) * stride + nc - 1)])
                               : x[static_cast<size_t>((nr - 1) * stride + nc - 1)];
        EXPECT_EQ(a[static_cast<size_t>((nr - 1) * ldd + nc - 1)], last);
        if (nc < nc_out) {
          EXPECT_EQ(a[static_cast<size_t>((nr - 1) * ldd + nc_out - 1)], 0.0f);
        }
        EXPECT_EQ(a[static_cast<size_t>(nc_out)], 7.0f) << "nothing past nc_out";
        EXPECT_EQ(a[static_cast<size_t>(nr * ldd)], 7.0f) << "nothing past nr";
      }
    }
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
  // One block; kt (d, 64) and v (64, ld) hold NaN past max(nv) so that a read of them shows.
  void step(const KernelTable& k, const std::vector<float>& kt, const std::vector<float>& v,
            const std::vector<int32_t>& nv, int64_t r0, int64_t n) {
    k.attn_block(n, d, ld, q.data() + r0 * ld, kt.data(), v.data(), nv.data() + r0, m.data() + r0,
                 l.data() + r0, o.data() + r0 * ld);
  }
};

struct Block {
  std::vector<float> kt, v;
  std::vector<int32_t> nv;
};

Block make_block(int64_t d, int64_t ld, int64_t rows, uint32_t seed, int32_t fixed_nv) {
  Block b;
  b.kt = randv(seed, static_cast<size_t>(d * kAttnBlock), -2, 2);
  b.v = randv(seed + 1, static_cast<size_t>(kAttnBlock * ld), -1, 1);
  std::mt19937 rng(seed + 2);
  for (int64_t r = 0; r < rows; ++r)
    b.nv.push_back(fixed_nv > 0 ? fixed_nv : static_cast<int32_t>(1 + rng() % kAttnBlock));
  const int32_t top = *std::max_element(b.nv.begin(), b.nv.end());
  for (int64_t i = 0; i < d; ++i)
    for (int64_t c = top; c < kAttnBlock; ++c) b.kt[static_cast<size_t>(i * kAttnBlock + c)] = NAN;
  for (int64_t c = 0; c < kAttnBlock; ++c)
    for (int64_t j = 0; j < ld; ++j)
      if (c >= top || j >= d) b.v[static_cast<size_t>(c * ld + j)] = c >= top ? NAN : 0.0f;
  return b;
}

TEST_P(AttentionIsa, BlockMatchesReference) {
  for (int64_t d : {7, 16, 64, 80, 128})
    for (int64_t rows : {1, 2, 3, 4, 5, 8, 9}) {
      const uint32_t seed = static_cast<uint32_t>(d * 1000 + rows);
      BlockRun a(d, rows, seed), b(d, rows, seed);
      // Full blocks, then a ragged one (causal diagonal), as attention() feeds them.
      for (int blk = 0; blk < 3; ++blk) {
        const Block bl = make_block(d, a.ld, rows, seed + 10 * blk, blk < 2 ? kAttnBlock : 0);
        a.step(*k_, bl.kt, bl.v, bl.nv, 0, rows);
        b.step(*ref_, bl.kt, bl.v, bl.nv, 0, rows);
      }
      for (int64_t r = 0; r < rows; ++r) {
        ASSERT_NEAR(a.m[r], b.m[r], 1e-5f) << "d=" << d << " rows=" << rows << " seed=" << seed;
        // Sums of up to 192 positive terms (exp to ~2 ulp): relative 1e-5 is ~100 eps.
        ASSERT_NEAR(a.l[r], b.l[r], 1e-5f * b.l[r]) << "d=" << d << " r=" << r << " seed=" << seed;
        for (int64_t j = 0; j < a.ld; ++j) {
          const float x = a.o[r * a.ld + j] / a.l[r], y = b.o[r * b.ld + j] / b.l[r];
          ASSERT_FALSE(std::isnan(x))
              << "read past nv: d=" << d << " r=" << r << " j=" << j << " seed=" << seed;
          ASSERT_NEAR(x, y, 2e-5f) << "d=" << d << " r=" << r << " j=" << j << " seed=" << seed;
        }
      }
    }
}

// A row's bits do not depend on the rows beside it: every row computed alone equals the tile's.
TEST_P(AttentionIsa, RowsAreIndependentOfTheTile) {
  for (int64_t d : {16, 64, 80}) {
    const int64_t rows = 11;
    const uint32_t seed = static_cast<uint32_t>(7 * d);
    BlockRun all(d, rows, seed);
    std::vector<Block> blocks;
    for (int blk = 0; blk < 3; ++blk)
      blocks.push_back(make_block(d, all.ld, rows, seed + 10 * blk, blk < 2 ? kAttnBlock : 0));
    for (const Block& bl : blocks) all.step(*k_, bl.kt, bl.v, bl.nv, 0, rows);
    for (int64_t first = 0; first < rows; first += 3) {
      BlockRun part(d, rows, seed);
      const int64_t n = std::min<int64_t>(3, rows - first);
      for (const Block& bl : blocks)
        for (int64_t r = first; r < first + n; ++r) part.step(*k_, bl.kt, bl.v, bl.nv, r, 1);
      for (int64_t r = first; r < first + n; ++r) {
        ASSERT_TRUE(same_bits(&part.o[r * part.ld], &all.o[r * all.ld], static_cast<size_t>(all.ld)))
            << "d=" << d << " row " << r << " seed=" << seed;
        ASSERT_EQ(part.l[r], all.l[r]);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllLevels, AttentionIsa,
                         ::testing::Values(Isa::ref, Isa::avx2, Isa::avx512, Isa::neon),
                         [](const auto& p) { return std::string(kernels::isa_name(p.param)); });

}  // namespace
}  // namespace qe
