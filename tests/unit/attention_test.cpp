// model::attention() (fast numerics, flash-style) on every level this CPU runs: against a
// double-precision softmax(K q / sqrt(d)) V, and with the invariance the engine relies on: a (token,
// head) gets the same bits whatever the batch, its place in it and the thread count,
// and positions the cache does not hold for the step (NaN here) never reach a result.
#include "model/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "formats/blocks.h"
#include "kernels/kernel_table.h"
#include "kernels/matmul.h"
#include "model/kv_cache.h"
#include "model/run_state.h"

namespace qe {
namespace {

using kernels::Isa;
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

struct Shape {
  int64_t n_heads, n_kv_heads, head_dim;
  GgmlType cache;
};

model::Config config_of(const Shape& sh) {
  model::Config c;
  c.n_vocab = 16;
  c.n_layers = 1;
  c.n_heads = sh.n_heads;
  c.n_kv_heads = sh.n_kv_heads;
  c.head_dim = sh.head_dim;
  c.n_rot = sh.head_dim / 2 * 2;
  c.dim = sh.n_heads * sh.head_dim;
  c.n_ff = 16;
  c.n_ctx_train = 512;
  return c;
}

// Runs attention for tokens [pos, pos + n) of a sequence whose k/v rows are `ks`/`vs` and queries `qs`
// (one row per position), after storing their k/v and NaN at every later position of the cache.
void run_step(const KernelTable& k, const model::Config& c, model::KvCache& kv, model::RunState& s,
              const std::vector<float>& qs, const std::vector<float>& ks, const std::vector<float>& vs,
              int64_t pos, int64_t n, std::vector<float>& att) {
  const int64_t kv_dim = c.kv_dim(), q_dim = c.q_dim();
  const std::vector<float> nan(static_cast<size_t>(kv_dim), NAN);
  const model::SeqRun run{&kv, pos, n, true};
  const std::span<const model::SeqRun> runs(&run, 1);
  // The step's own keys and values are in s.k and s.v; where attention stores them itself, the cache
  // holds NaN there before the call, as it does past them.
  const bool attention_stores = model::attention_stores_kv(c, runs, 0, s.n_threads);
  for (int64_t p = 0; p < kv.n_ctx(); ++p)
    if (p < pos || (p < pos + n && !attention_stores))
      kv.store(0, p, &ks[p * kv_dim], &vs[p * kv_dim], k.from_f32_f16);
    else
      kv.store(0, p, nan.data(), nan.data(), k.from_f32_f16);
  std::copy(qs.begin() + pos * q_dim, qs.begin() + (pos + n) * q_dim, s.q.begin());
  std::copy(ks.begin() + pos * kv_dim, ks.begin() + (pos + n) * kv_dim, s.k.begin());
  std::copy(vs.begin() + pos * kv_dim, vs.begin() + (pos + n) * kv_dim, s.v.begin());
  model::attention(k, c, runs, 0, s);
  std::copy(s.att.begin(), s.att.begin() + n * q_dim, att.begin() + pos * q_dim);
}

class AttentionModel : public ::testing::TestWithParam<Isa> {};

TEST_P(AttentionModel, BatchDecodeAndThreadsGiveTheSameBits) {
  const KernelTable* k = kernels::kernel_table(GetParam());
  if (!k) GTEST_SKIP() << "skipping " << kernels::isa_name(GetParam()) << ": this CPU/build lacks it";
  const Shape shapes[] = {{8, 2, 64, GgmlType::F16},
                          {4, 4, 80, GgmlType::F32},
                          {6, 1, 16, GgmlType::F16},
                          {3, 3, 7, GgmlType::F32}};
  const int64_t n_ctx = 150;
  for (const Shape& sh : shapes) {
    const model::Config c = config_of(sh);
    const int64_t q_dim = c.q_dim(), kv_dim = c.kv_dim();
    const uint32_t seed = static_cast<uint32_t>(sh.n_heads * 100 + sh.head_dim);
    const auto qs = randv(seed, static_cast<size_t>(n_ctx * q_dim), -2, 2);
    const auto ks = randv(seed + 1, static_cast<size_t>(n_ctx * kv_dim), -2, 2);
    const auto vs = randv(seed + 2, static_cast<size_t>(n_ctx * kv_dim), -1, 1);
    Result<model::KvCache> kv = model::KvCache::create(c, n_ctx, sh.cache);
    ASSERT_TRUE(kv.ok());
    // One batch of everything, 1 thread: the reference bits.
    std::vector<float> one(static_cast<size_t>(n_ctx * q_dim)), other(one.size());
    Result<model::RunState> s1 = model::RunState::create(c, nullptr, n_ctx, n_ctx, 1, false);
    ASSERT_TRUE(s1.ok());
    run_step(*k, c, *kv, *s1, qs, ks, vs, 0, n_ctx, one);
    // Against softmax(K q / sqrt(d)) V in double (the cache's f16 rounding applied to K and V).
    auto cached = [&](float x) { return sh.cache == GgmlType::F16 ? fp16_to_fp32(fp32_to_fp16(x)) : x; };
    const int64_t group = c.n_heads / c.n_kv_heads;
    for (int64_t t : {int64_t{0}, int64_t{1}, int64_t{63}, int64_t{64}, int64_t{65}, n_ctx - 1})
      for (int64_t h = 0; h < c.n_heads; ++h) {
        const int64_t g = h / group;
        std::vector<double> sc(static_cast<size_t>(t + 1));
        double mx = -INFINITY, sum = 0;
        for (int64_t p = 0; p <= t; ++p) {
          double dot = 0;
          for (int64_t i = 0; i < c.head_dim; ++i)
            dot += double(qs[t * q_dim + h * c.head_dim + i]) * cached(ks[p * kv_dim + g * c.head_dim + i]);
          sc[p] = dot / std::sqrt(double(c.head_dim));
          mx = std::max(mx, sc[p]);
        }
        for (double& x : sc) sum += (x = std::exp(x - mx));
        for (int64_t j = 0; j < c.head_dim; ++j) {
          double o = 0;
          for (int64_t p = 0; p <= t; ++p) o += sc[p] / sum * cached(vs[p * kv_dim + g * c.head_dim + j]);
          ASSERT_NEAR(one[t * q_dim + h * c.head_dim + j], o, 1e-5)
              << "heads " << sh.n_heads << "/" << sh.n_kv_heads << " d=" << sh.head_dim << " t=" << t
              << " h=" << h;
        }
      }
    // Token by token on 1 and 3 threads; then batches of 5 and 37 (ragged against the 64-key blocks) on
    // 2 and 16 threads. One thread, and the batches of 5 with one KV head a query head, give one item a
    // KV head, where attention stores the step's keys and values itself (run_step).
    for (auto [batch, threads] : {std::pair<int64_t, int>{1, 1}, {1, 3}, {5, 2}, {37, 16}}) {
      Result<model::RunState> s = model::RunState::create(c, nullptr, batch, n_ctx, threads, false);
      ASSERT_TRUE(s.ok());
      std::fill(other.begin(), other.end(), 0.0f);
      for (int64_t pos = 0; pos < n_ctx; pos += batch)
        run_step(*k, c, *kv, *s, qs, ks, vs, pos, std::min(batch, n_ctx - pos), other);
      for (int64_t t = 0; t < n_ctx; ++t)
        ASSERT_TRUE(same_bits(&one[t * q_dim], &other[t * q_dim], static_cast<size_t>(q_dim)))
            << "heads " << sh.n_heads << "/" << sh.n_kv_heads << " d=" << sh.head_dim << " batch " << batch
            << " threads " << threads << ": token " << t << " differs";
    }
  }
}

// Decode tokens of several sequences in one step, which attention takes whole (attention_owns_token:
// RoPE, the K/V store, every head, the output row converted for the next matmul), give what each token
// gets alone (RoPE and attention as the forward pass runs them for one sequence), bit for bit: the
// output rows, the K and V the cache then holds, and the converted rows (prepare() of the same rows).
TEST_P(AttentionModel, OwnedDecodeTokensGiveWhatTheyGetAlone) {
  const KernelTable* k = kernels::kernel_table(GetParam());
  if (!k) GTEST_SKIP() << "skipping " << kernels::isa_name(GetParam()) << ": this CPU/build lacks it";
  const Shape shapes[] = {{9, 3, 64, GgmlType::F16}, {4, 4, 32, GgmlType::F32}, {6, 1, 32, GgmlType::F16}};
  for (const Shape& sh : shapes) {
    model::Config c = config_of(sh);
    c.n_rot = sh.head_dim;
    const int64_t q_dim = c.q_dim(), kv_dim = c.kv_dim(), n_ctx = 150, n_seqs = 6;
    for (const int threads : {1, 2, 3}) {
      SCOPED_TRACE(::testing::Message() << "heads " << sh.n_heads << "/" << sh.n_kv_heads
                                        << " d=" << sh.head_dim << ", " << threads << " threads");
      Result<model::RunState> alone = model::RunState::create(c, nullptr, 1, n_ctx, 1, false);
      Result<model::RunState> batch =
          model::RunState::create(c, nullptr, n_seqs, n_ctx, threads, false, n_seqs);
      ASSERT_TRUE(alone.ok() && batch.ok());
      std::vector<model::KvCache> a_kv, b_kv;
      std::vector<model::SeqRun> runs;
      std::vector<float> q0, k0, v0;  // the step's rows before RoPE, sequence by sequence
      for (int64_t i = 0; i < n_seqs; ++i) {
        // Sequence i at position 10 + 23 i (one to three key blocks), its earlier keys random.
        const int64_t pos = 10 + 23 * i;
        const uint32_t seed = static_cast<uint32_t>(1000 * i + threads);
        const auto ks = randv(seed, static_cast<size_t>(pos * kv_dim), -2, 2);
        const auto vs = randv(seed + 1, static_cast<size_t>(pos * kv_dim), -1, 1);
        for (auto* kv : {&a_kv, &b_kv}) {
          kv->push_back(*model::KvCache::create(c, n_ctx, sh.cache));
          for (int64_t p = 0; p < pos; ++p)
            kv->back().store(0, p, &ks[p * kv_dim], &vs[p * kv_dim], k->from_f32_f16);
        }
        const std::vector<float> nan(static_cast<size_t>(kv_dim), NAN);
        b_kv.back().store(0, pos, nan.data(), nan.data(), k->from_f32_f16);  // attention must store it
        const auto q = randv(seed + 2, static_cast<size_t>(q_dim), -2, 2);
        const auto kk = randv(seed + 3, static_cast<size_t>(kv_dim), -2, 2);
        const auto v = randv(seed + 4, static_cast<size_t>(kv_dim), -1, 1);
        q0.insert(q0.end(), q.begin(), q.end());
        k0.insert(k0.end(), kk.begin(), kk.end());
        v0.insert(v0.end(), v.begin(), v.end());
      }
      for (int64_t i = 0; i < n_seqs; ++i)
        runs.push_back({&b_kv[static_cast<size_t>(i)], 10 + 23 * i, 1, true});
      for (int64_t i = 0; i < n_seqs; ++i) ASSERT_TRUE(model::attention_owns_token(c, runs, i, threads));
      // Not with one context longer than a thread's share of the step's keys (the threads would wait for
      // its item), nor with fewer than two runs a thread.
      std::vector<model::SeqRun> long_one = runs;
      for (int64_t i = 0; i < n_seqs; ++i) long_one[static_cast<size_t>(i)].pos = i == 0 ? 140 : i;
      EXPECT_EQ(threads == 1, model::attention_owns_token(c, long_one, 0, threads));
      EXPECT_EQ(threads < 3, model::attention_owns_token(c, std::span(runs).first(4), 0, threads));

      // Alone: RoPE, the store, then attention, as forward() does for one sequence.
      std::vector<float> want(static_cast<size_t>(n_seqs * q_dim));
      for (int64_t i = 0; i < n_seqs; ++i) {
        model::RunState& s = *alone;
        const int64_t pos = runs[static_cast<size_t>(i)].pos;
        std::copy_n(&q0[i * q_dim], q_dim, s.q.begin());
        std::copy_n(&k0[i * kv_dim], kv_dim, s.k.begin());
        std::copy_n(&v0[i * kv_dim], kv_dim, s.v.begin());
        k->rope(s.q.data(), c.n_heads, c.head_dim, c.n_rot, s.rope.cos(pos), s.rope.sin(pos));
        k->rope(s.k.data(), c.n_kv_heads, c.head_dim, c.n_rot, s.rope.cos(pos), s.rope.sin(pos));
        const model::SeqRun run{&a_kv[static_cast<size_t>(i)], pos, 1, true};
        ASSERT_FALSE(model::attention_owns_token(c, std::span(&run, 1), 0, 1));
        if (!model::attention_stores_kv(c, std::span(&run, 1), 0, 1))
          run.kv->store(0, pos, s.k.data(), s.v.data(), k->from_f32_f16);
        model::attention(*k, c, std::span(&run, 1), 0, s);
        std::copy_n(s.att.begin(), q_dim, want.begin() + i * q_dim);
      }
      // Together, from the rows before RoPE, the output rows converted as they are made.
      model::RunState& s = *batch;
      std::copy(q0.begin(), q0.end(), s.q.begin());
      std::copy(k0.begin(), k0.end(), s.k.begin());
      std::copy(v0.begin(), v0.end(), s.v.begin());
      kernels::ActivationBuffer out;
      ASSERT_TRUE(out.shape(GgmlType::Q8_1, n_seqs, q_dim).ok());
      model::attention(*k, c, runs, 0, s, &out);
      EXPECT_TRUE(same_bits(s.att.data(), want.data(), want.size()));
      kernels::ActivationBuffer prepared;
      ASSERT_TRUE(prepared.prepare(GgmlType::Q8_1, want.data(), n_seqs, q_dim, q_dim, 1, *k).ok());
      EXPECT_EQ(0, std::memcmp(out.row(0), prepared.row(0), static_cast<size_t>(n_seqs * out.row_stride())));
      for (int64_t i = 0; i < n_seqs; ++i) {  // the caches: the same K and V at the token's position
        const model::KvCache &a = a_kv[static_cast<size_t>(i)], &b = b_kv[static_cast<size_t>(i)];
        const int64_t pos = runs[static_cast<size_t>(i)].pos, esz = a.elem_bytes(),
                      tile = model::KvCache::kTile;
        for (int64_t f = 0; f < kv_dim; ++f) {
          const int64_t k_at = ((pos / tile * kv_dim + f) * tile + pos % tile) * esz,
                        v_at = (pos * kv_dim + f) * esz;
          EXPECT_EQ(0, std::memcmp(a.k_layer(0) + k_at, b.k_layer(0) + k_at, static_cast<size_t>(esz)))
              << "sequence " << i << " key feature " << f;
          EXPECT_EQ(0, std::memcmp(a.v_layer(0) + v_at, b.v_layer(0) + v_at, static_cast<size_t>(esz)))
              << "sequence " << i << " value feature " << f;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllLevels, AttentionModel,
                         ::testing::Values(Isa::ref, Isa::avx2, Isa::avx512, Isa::neon),
                         [](const auto& p) { return std::string(kernels::isa_name(p.param)); });

}  // namespace
}  // namespace qe
